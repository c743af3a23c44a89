"""Cluster reduced embeddings with HDBSCAN; small days use agglomerative clustering instead."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import numpy as np
from pydantic import Field

NOISE = -1


class ClusterParams(dg.Config):
    """HDBSCAN settings and the small-day fallback."""

    min_cluster_size: int | None = Field(
        default=None,
        description=(
            "Smallest group HDBSCAN calls a cluster (default: auto = sqrt(items)/2, between 3 and 50). A day of 40 items "
            "holds stories of 3 or 4 items, a day of 2,000 holds topics of dozens, so a fixed size fits neither."
        ),
    )
    min_samples: int | None = Field(
        default=None,
        description=(
            "How conservative HDBSCAN is (default: auto = half of min_cluster_size, at least 2). Lower values call "
            "fewer items noise; HDBSCAN's own default (= min_cluster_size) leaves too many news items unclustered."
        ),
    )
    cluster_selection_method: str = Field(
        default="eom",
        description="'eom' (default) favours the most persistent clusters; 'leaf' gives many small, homogeneous ones.",
    )
    cluster_selection_epsilon: float = Field(
        default=0.0,
        description="Merge clusters closer than this in UMAP space (default 0.0: no merging).",
    )
    fallback_distance: float = Field(
        default=0.55,
        description=(
            "Small days (below ReduceParams.min_items): items whose average cosine distance is under this (default "
            "0.55, about similarity 0.45 in all-MiniLM-L6-v2, where same-story headlines sit) join one cluster."
        ),
    )


@dataclass(frozen=True)
class Clustering:
    """Per item a cluster id (NOISE = -1) and membership probability; how it was made."""

    labels: np.ndarray
    probabilities: np.ndarray
    method: str
    settings: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {NOISE})


def auto_min_cluster_size(n_items: int) -> int:
    return int(min(50, max(3, round(np.sqrt(n_items) / 2))))


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest; ties go to the cluster whose first item comes first."""
    clusters = [c for c in dict.fromkeys(labels.tolist()) if c != NOISE]
    order = sorted(clusters, key=lambda c: (-int((labels == c).sum()), int(np.argmax(labels == c))))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(c, NOISE) for c in labels.tolist()], dtype=np.int64)


def _hdbscan(coords: np.ndarray, params: ClusterParams) -> Clustering:
    import hdbscan

    min_cluster_size = params.min_cluster_size or auto_min_cluster_size(len(coords))
    min_samples = params.min_samples or max(2, min_cluster_size // 2)
    model = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        metric="euclidean",  # UMAP output is Euclidean even when the input metric is cosine
        cluster_selection_method=params.cluster_selection_method,
        cluster_selection_epsilon=params.cluster_selection_epsilon,
    ).fit(coords)
    settings = {
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
        "cluster_selection_method": params.cluster_selection_method,
        "cluster_selection_epsilon": params.cluster_selection_epsilon,
    }
    return Clustering(renumber_by_size(model.labels_), model.probabilities_.astype(np.float32), "hdbscan", settings)


def _agglomerative(embeddings: np.ndarray, params: ClusterParams) -> Clustering:
    settings = {"linkage": "average", "metric": "cosine", "distance_threshold": params.fallback_distance, "min_size": 2}
    n = len(embeddings)
    if n < 2:
        return Clustering(np.full(n, NOISE, dtype=np.int64), np.zeros(n, dtype=np.float32), "agglomerative", settings)
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=params.fallback_distance
    ).fit_predict(embeddings)
    # A singleton is not a story: it is noise, as HDBSCAN would call it.
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= 2, labels, NOISE)
    labels = renumber_by_size(labels)
    return Clustering(labels, (labels != NOISE).astype(np.float32), "agglomerative", settings)


def cluster_items(embeddings: np.ndarray, coords: np.ndarray, reduction_method: str, params: ClusterParams | None = None) -> Clustering:
    """HDBSCAN on UMAP coordinates; after the small-day reduction, agglomerative on the embeddings."""
    params = params or ClusterParams()
    if reduction_method == "umap":
        return _hdbscan(coords, params)
    return _agglomerative(embeddings, params)
