"""Label clusters: c-TF-IDF keywords, a title headline, and the most representative items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.embedding.embed import item_texts

SUMMARY_COLUMNS = [
    "cluster_id",
    "label",
    "title",
    "keywords",
    "size",
    "n_sources",
    "sources",
    "top_headlines",
    "top_links",
]

# Label is the top keywords; readers scan it, so keep it short.
LABEL_KEYWORDS = 3
TOP_KEYWORDS = 8
TOP_ITEMS = 3


def ctfidf_keywords(docs_by_cluster: dict[int, str], top_n: int = TOP_KEYWORDS) -> dict[int, list[str]]:
    """Class-based TF-IDF (BERTopic's): terms frequent in a cluster and rare in the others."""
    from sklearn.feature_extraction.text import CountVectorizer

    cluster_ids = list(docs_by_cluster)
    if not cluster_ids:
        return {}
    vectorizer = CountVectorizer(
        stop_words="english", ngram_range=(1, 2), token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9'-]+\b"
    )
    try:
        counts = vectorizer.fit_transform([docs_by_cluster[c] for c in cluster_ids]).toarray().astype(np.float64)
    except ValueError:  # nothing but stop words
        return {c: [] for c in cluster_ids}
    terms = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    average_words = counts.sum() / len(cluster_ids)
    idf = np.log(1 + average_words / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    keywords = {}
    for row, cluster_id in enumerate(cluster_ids):
        # Ties go to the bigram (more specific), then alphabetically, so labels are deterministic.
        order = sorted(np.flatnonzero(scores[row]), key=lambda j: (-scores[row, j], -terms[j].count(" "), terms[j]))
        keywords[cluster_id] = _drop_overlaps([terms[j] for j in order], top_n)
    return keywords


def _drop_overlaps(terms: list[str], top_n: int) -> list[str]:
    """Skip a term already said by a better-ranked one ('storm' after 'storm odile', and the reverse)."""
    chosen: list[str] = []
    for term in terms:
        words = set(term.split())
        if any(words <= set(c.split()) or set(c.split()) <= words for c in chosen):
            continue
        chosen.append(term)
        if len(chosen) == top_n:
            break
    return chosen


def summarize_clusters(items: pd.DataFrame, embeddings: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per cluster (noise excluded): keywords, title, size, sources, top headlines and links."""
    texts = item_texts(items) if len(items) else []
    cluster_ids = sorted(set(labels.tolist()) - {NOISE})
    # Noise takes part in c-TF-IDF as its own class, so words common to all news don't label a cluster.
    docs = {
        c: " ".join(t for t, lab in zip(texts, labels, strict=True) if lab == c)
        for c in [*cluster_ids, NOISE]
        if (labels == c).any()
    }
    keywords = ctfidf_keywords(docs)
    rows = []
    for cluster_id in cluster_ids:
        members = np.flatnonzero(labels == cluster_id)
        centroid = embeddings[members].mean(axis=0)
        # Most central first; equal scores keep item order so the result is deterministic.
        centrality = embeddings[members] @ centroid
        ranked = members[np.argsort(-centrality, kind="stable")][:TOP_ITEMS]
        cluster_items = items.iloc[members]
        sources = sorted(cluster_items["source"].unique())
        words = keywords.get(cluster_id, [])
        rows.append(
            {
                "cluster_id": cluster_id,
                "label": " / ".join(words[:LABEL_KEYWORDS]) or items.iloc[ranked[0]]["headline"],
                "title": items.iloc[ranked[0]]["headline"],
                "keywords": ", ".join(words),
                "size": len(members),
                "n_sources": len(sources),
                "sources": ", ".join(sources),
                "top_headlines": "\n".join(items.iloc[ranked]["headline"]),
                "top_links": "\n".join(link for link in items.iloc[ranked]["link"] if link),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
