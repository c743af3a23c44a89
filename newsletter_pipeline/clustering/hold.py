"""A published day holds still: late items join the day's stored clusters instead of re-clustering the whole day.

UMAP's layout moves when a day's items change, so clustering a day again after a few late items reshuffles it
(benchmarks/README.md, "Late items"). Instead the stored clustering of the day is the state: its items keep their
clusters and plot positions, and a new item joins the cluster whose centroid is most similar to it when that
similarity reaches the threshold (as a noise item joins one in the second stage), else stays noise. The whole day
is clustered again only when that is what the data or the user asks for (`decide`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from newsletter_pipeline.clustering.cluster import nearest_cluster, unit_centroids


@dataclass(frozen=True)
class Decision:
    """Whether to keep the stored clustering (placing the new items in it), and why, in words for the metadata."""

    keep: bool
    reason: str


def decide(
    stored_ids: set[str] | None,
    current_ids: set[str],
    *,
    settings_changed: bool,
    items_at_full: int,
    recluster_share: float,
    asked: bool = False,
) -> Decision:
    """Keep the day's stored clustering, or cluster the day again.

    Args:
        stored_ids: the item ids of the stored clustering; None when the day has none.
        current_ids: the day's item ids now.
        settings_changed: whether the clustering settings differ from those the stored clustering was made with.
        items_at_full: how many items the day had at its last full clustering.
        recluster_share: the share of the day's items, added since its last full clustering, past which the day is
            clustered again.
        asked: the run asks for a full clustering (run config `recluster`).

    Returns:
        The Decision: a full clustering when asked, when there is no stored clustering, when the settings changed,
        when items were removed, or when more than `recluster_share` of the day is new since the last full one.
    """
    if asked:
        return Decision(False, "the run asked for it (recluster: true)")
    if stored_ids is None:
        return Decision(False, "first clustering of the day")
    if settings_changed:
        return Decision(False, "the clustering settings changed since the stored clustering")
    removed = stored_ids - current_ids
    if removed:
        return Decision(False, f"{len(removed)} items were removed since the stored clustering")
    added = len(current_ids - stored_ids)
    share = (len(current_ids) - items_at_full) / len(current_ids) if current_ids else 0.0
    if share > recluster_share:
        return Decision(
            False,
            f"{share:.0%} of the day's items are new since its last full clustering (limit {recluster_share:.0%})",
        )
    if not added:
        return Decision(True, "no new items: the stored clustering stands")
    return Decision(True, f"{added} new items placed in the stored clusters ({share:.0%} new since the last full one)")


def place_new_items(
    stored_vectors: np.ndarray, stored_labels: np.ndarray, new_vectors: np.ndarray, min_similarity: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored clusters' places for new items.

    Args:
        stored_vectors: the embeddings of the items already clustered (unit length, one row each).
        stored_labels: their cluster ids (NOISE for noise).
        new_vectors: the embeddings of the new items.
        min_similarity: the least cosine similarity to a cluster's centroid for a new item to join it.

    Returns:
        For each new item: its cluster id (NOISE when no centroid is close enough), its similarity to that cluster
        (its membership probability; 0 for noise), and the row of the stored item most similar to it (whose plot
        position it takes).
    """
    labels, joined = nearest_cluster(new_vectors, *unit_centroids(stored_vectors, stored_labels), min_similarity)
    similarity = np.nan_to_num(joined, nan=0.0)
    nearest = (
        (new_vectors.astype(np.float64) @ stored_vectors.astype(np.float64).T).argmax(axis=1)
        if len(stored_vectors) and len(new_vectors)
        else np.zeros(len(new_vectors), dtype=np.int64)
    )
    return labels, similarity, nearest
