"""Stories across days on the one set labelled by story: the Wikipedia Current Events Portal, September 2015.

The pipeline's own steps run one day at a time, as the daily schedule runs them: the day's items are embedded
(the quality benchmark's cache), reduced and clustered with the defaults, and `stories.tracking` continues the
stories of the days before from the state the day before left. Each item's story is its cluster's story id; an
item left as noise has none and counts as a story of its own, as does every event the portal files under no story.
Scored across the month against the `story` labels: ARI, NMI and the number of story ids. The offline reference
sees the whole month at once (average-linkage agglomerative clustering of all embeddings at cosine distance 0.6):
a yardstick, not a method the pipeline could use, since a day only sees its past. The first half of the month is
where parameters may be tuned; the second half is reported beside it and not tuned on.

    .venv/bin/python -m benchmarks.stories
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.cluster import AgglomerativeClustering

from benchmarks.quality_data import DATASETS, cached_embeddings
from newsletter_pipeline.clustering import cluster, reduce
from newsletter_pipeline.defs.params import ClusterParams, ReduceParams, StoryParams
from newsletter_pipeline.embedding.embed import item_texts
from newsletter_pipeline.items.parse import ITEM_COLUMNS, normalize_record
from newsletter_pipeline.stories import tracking

WCEP = DATASETS / "wcep_2015-09_stories.jsonl"
TARGET_ARI = 0.30
HALVES = {
    "1-15 September (tuning)": ("2015-09-01", "2015-09-15"),
    "16-30 September (held out)": ("2015-09-16", "2015-09-30"),
}


def load() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The month's items as the pipeline parses them, their story labels (an unlabelled event its own story) and
    their embeddings."""
    records = [json.loads(line) for line in WCEP.open(encoding="utf-8")]
    for record in records:
        # Several events cite one article: a link of their own keeps them apart (the pipeline would drop the copies).
        record["link"] = f"{record['link']}#{record['id']}"
    rows = [normalize_record(record, "wcep", f"wcep:{n}") for n, record in enumerate(records)]
    items = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    truth = np.array([record["story"] or f"unlabelled:{record['id']}" for record in records])
    return items, truth, cached_embeddings(item_texts(items))


def pipeline_stories(items: pd.DataFrame, embeddings: np.ndarray) -> np.ndarray:
    """Each item's story id, day by day through the pipeline's clustering and story tracking."""
    story_of = np.array([f"none:{n}" for n in range(len(items))], dtype=object)
    state = None
    reduce_params, cluster_params = ReduceParams().model_dump(), ClusterParams().model_dump()
    for day in sorted(items["day"].unique()):
        rows = np.flatnonzero(items["day"].to_numpy() == day)
        vectors = embeddings[rows]
        reduction = reduce.reduce_embeddings(vectors, **reduce_params, with_plot=False)
        labels = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **cluster_params).labels
        ids = items["item_id"].to_numpy()[rows]
        assignments = pd.DataFrame({"item_id": ids, "cluster_id": labels})
        centroids = tracking.cluster_centroids(assignments, assignments["item_id"], vectors)
        tracked = tracking.track_stories(state, day, centroids, **StoryParams().model_dump())
        state = tracked.state
        by_cluster = dict(zip(tracked.stories["cluster_id"], tracked.stories["story_id"], strict=True))
        for row, label in zip(rows, labels, strict=True):
            if label != cluster.NOISE:
                story_of[row] = by_cluster[label]
    return story_of


def reference_stories(embeddings: np.ndarray) -> np.ndarray:
    """The offline yardstick: the whole month clustered at once."""
    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average", distance_threshold=0.6)
    return model.fit_predict(embeddings)


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    return {
        "ARI": metrics.adjusted_rand_score(truth, predicted),
        "NMI": metrics.normalized_mutual_info_score(truth, predicted),
        "story ids": len(set(predicted.tolist())),
        "stories (labels)": len(set(truth.tolist())),
    }


def table(items: pd.DataFrame, truth: np.ndarray, predicted: dict[str, np.ndarray]) -> list[str]:
    """A row per method and part of the month (each half scored on its own items)."""
    lines = ["| part | items | method | ARI | NMI | story ids | stories (labels) |", "|---|---|---|---|---|---|---|"]
    days = items["day"].to_numpy()
    parts = {"the month": (days.min(), days.max()), **HALVES}
    for part, (first, last) in parts.items():
        rows = (days >= first) & (days <= last)
        for method, labels in predicted.items():
            figures = scores(truth[rows], labels[rows])
            lines.append(
                f"| {part} | {rows.sum()} | {method} | {figures['ARI']:.3f} | {figures['NMI']:.3f} | "
                f"{figures['story ids']} | {figures['stories (labels)']} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    if not WCEP.exists():
        print(f"{WCEP} is absent: the story benchmark needs ../shared/datasets beside the repo")
        return 2
    items, truth, embeddings = load()
    predicted = {"pipeline": pipeline_stories(items, embeddings), "offline reference": reference_stories(embeddings)}
    print("\n".join(table(items, truth, predicted)))
    month = scores(truth, predicted["pipeline"])
    met = month["ARI"] >= TARGET_ARI
    print(
        f"\n| target | measured | met |\n|---|---|---|\n| story ARI across the month >= {TARGET_ARI} | "
        f"{month['ARI']:.3f} | {'yes' if met else '**no**'} |"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
