"""Cluster a day: HDBSCAN on the UMAP coordinates, then a second stage in the embedding space.

HDBSCAN ('leaf', small min_cluster_size) finds many small dense groups, which is where news stories sit.
The second stage then (1) merges groups whose centroids are similar, so one topic is one cluster, and (2)
gives a noise item to the nearest cluster when it is similar enough, so the day is not half noise while
true outliers stay out. Small days skip UMAP and use agglomerative clustering on the embeddings instead.
Every default is set by the quality benchmark (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NOISE = -1


@dataclass(frozen=True)
class Clustering:
    """Per item a cluster id (NOISE = -1) and membership probability; how it was made."""

    labels: np.ndarray
    probabilities: np.ndarray
    method: str
    settings: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        """Clusters found, noise not counted."""
        return len(set(self.labels.tolist()) - {NOISE})


def auto_min_cluster_size(n_items: int) -> int:
    """HDBSCAN's min_cluster_size for a day of `n_items`: sqrt(n) / 4, between 3 and 50 (ClusterParams says why)."""
    return int(min(50, max(3, round(np.sqrt(n_items) / 4))))


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest; ties go to the cluster whose first item comes first."""
    clusters = [c for c in dict.fromkeys(labels.tolist()) if c != NOISE]
    order = sorted(clusters, key=lambda c: (-int((labels == c).sum()), int(np.argmax(labels == c))))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(c, NOISE) for c in labels.tolist()], dtype=np.int64)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero), in the rows' dtype."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def unit_centroids(embeddings: np.ndarray, labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The clusters' ids in order and their centroids (mean embeddings scaled to unit length), one row each."""
    ids = sorted(set(labels.tolist()) - {NOISE})
    if not ids:
        return [], np.zeros((0, embeddings.shape[1]), dtype=np.float64)
    centroids = np.stack([embeddings[labels == c].astype(np.float64).mean(axis=0) for c in ids])
    return ids, unit_rows(centroids)


def merge_similar(embeddings: np.ndarray, labels: np.ndarray, similarity: float) -> np.ndarray:
    """Join clusters whose centroids are more similar than `similarity` (average linkage on cosine distance)."""
    ids, centroids = unit_centroids(embeddings, labels)
    if len(ids) < 2:
        return labels
    from scipy.cluster.hierarchy import fcluster, linkage

    groups = fcluster(linkage(centroids, method="average", metric="cosine"), t=1 - similarity, criterion="distance")
    mapping = dict(zip(ids, groups.tolist(), strict=True))
    return np.array([mapping.get(c, NOISE) for c in labels.tolist()], dtype=np.int64)


def nearest_cluster(
    vectors: np.ndarray, ids: list[int], centroids: np.ndarray, similarity: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each vector, the id of its most similar centroid when at least `similarity`, else NOISE.

    Args:
        vectors: the items to place, one row each (unit length).
        ids: the clusters' ids, in the order of `centroids` (unit_centroids gives both).
        centroids: the clusters' unit centroids, one row each.
        similarity: the least cosine similarity to join a cluster.

    Returns:
        The cluster id per vector (NOISE for none), and the similarity by which it joined (NaN for none).
    """
    labels = np.full(len(vectors), NOISE, dtype=np.int64)
    joined = np.full(len(vectors), np.nan, dtype=np.float32)
    if not ids or not len(vectors):
        return labels, joined
    scores = vectors.astype(np.float64) @ centroids.T
    best = scores.argmax(axis=1)  # ties go to the lower cluster id: deterministic
    top = scores[np.arange(len(vectors)), best]
    close = top >= similarity
    labels[close] = np.asarray(ids)[best[close]]
    joined[close] = top[close]
    return labels, joined


def assign_noise(embeddings: np.ndarray, labels: np.ndarray, similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Give each noise item to its most similar cluster centroid when at least `similarity`.

    Also returns, per item, the similarity by which it joined (NaN for items not joined this way)."""
    noise = np.flatnonzero(labels == NOISE)
    placed, similarities = nearest_cluster(embeddings[noise], *unit_centroids(embeddings, labels), similarity)
    out, joined = labels.copy(), np.full(len(labels), np.nan, dtype=np.float32)
    out[noise], joined[noise] = np.where(placed == NOISE, labels[noise], placed), similarities
    return out, joined


def _hdbscan(
    embeddings: np.ndarray,
    coords: np.ndarray,
    *,
    min_cluster_size: int | None,
    min_samples: int | None,
    cluster_selection_method: str,
    cluster_selection_epsilon: float,
    merge_similarity: float | None,
    assign_similarity: float | None,
    gpu: bool = False,
) -> Clustering:
    min_cluster_size = min_cluster_size or auto_min_cluster_size(len(coords))
    min_samples = min_samples or max(1, min_cluster_size // 2)
    settings = {
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
        "metric": "euclidean",  # UMAP output is Euclidean even when the input metric is cosine
        "cluster_selection_method": cluster_selection_method,
        "cluster_selection_epsilon": cluster_selection_epsilon,
    }
    if gpu:
        from cuml.cluster.hdbscan import HDBSCAN

        model = HDBSCAN(**settings, output_type="numpy").fit(coords)
    else:
        import hdbscan

        model = hdbscan.HDBSCAN(**settings).fit(coords)
    labels, probabilities = (
        np.asarray(model.labels_).astype(np.int64),
        np.asarray(model.probabilities_).astype(np.float32),
    )
    settings = {
        "library": "cuml" if gpu else "hdbscan",
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
        "cluster_selection_method": cluster_selection_method,
        "cluster_selection_epsilon": cluster_selection_epsilon,
        "hdbscan_clusters": len(set(labels.tolist()) - {NOISE}),
        "hdbscan_noise": int((labels == NOISE).sum()),
        "merge_similarity": merge_similarity,
        "assign_similarity": assign_similarity,
    }
    if merge_similarity is not None:
        labels = merge_similar(embeddings, labels, merge_similarity)
    if assign_similarity is not None:
        labels, similarity = assign_noise(embeddings, labels, assign_similarity)
        # An item joined by similarity is not part of HDBSCAN's dense core: its probability is that similarity.
        probabilities = np.where(np.isnan(similarity), probabilities, similarity).astype(np.float32)
        settings["assigned_from_noise"] = int((~np.isnan(similarity)).sum())
    return Clustering(renumber_by_size(labels), probabilities, "hdbscan", settings)


def _agglomerative(embeddings: np.ndarray, fallback_distance: float) -> Clustering:
    settings = {"linkage": "average", "metric": "cosine", "distance_threshold": fallback_distance, "min_size": 2}
    n = len(embeddings)
    if n < 2:
        return Clustering(np.full(n, NOISE, dtype=np.int64), np.zeros(n, dtype=np.float32), "agglomerative", settings)
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=fallback_distance
    ).fit_predict(embeddings)
    # A singleton is not a story: it is noise, as HDBSCAN would call it.
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= 2, labels, NOISE)
    labels = renumber_by_size(labels)
    return Clustering(labels, (labels != NOISE).astype(np.float32), "agglomerative", settings)


def cluster_items(
    embeddings: np.ndarray,
    coords: np.ndarray,
    reduction_method: str,
    *,
    min_cluster_size: int | None,
    min_samples: int | None,
    cluster_selection_method: str,
    cluster_selection_epsilon: float,
    merge_similarity: float | None,
    assign_similarity: float | None,
    fallback_distance: float,
    gpu: bool = False,
) -> Clustering:
    """HDBSCAN on UMAP coordinates plus the merge and assign stage; after the small-day reduction, agglomerative
    clustering on the embeddings.

    Args:
        embeddings: one row per item, in the model's space: the second stage and the fallback compare these.
        coords: the same items' UMAP coordinates (Reduction.cluster), which HDBSCAN clusters.
        reduction_method: the Reduction's method: "umap", or "small-day" for the fallback.
        min_cluster_size: HDBSCAN's smallest cluster; None: auto_min_cluster_size.
        min_samples: how conservative HDBSCAN is; None: half of min_cluster_size.
        cluster_selection_method: 'leaf' or 'eom'.
        cluster_selection_epsilon: HDBSCAN merges clusters closer than this in UMAP space.
        merge_similarity: second stage, groups whose centroids are this similar become one; None skips it.
        assign_similarity: second stage, a noise item this similar to a centroid joins it; None skips it.
        fallback_distance: the small-day fallback's average-linkage cosine distance.
        gpu: run cuML's HDBSCAN (clustering/gpu.py decides when); the second stage is numpy either way.

    defs/params.py (ClusterParams) gives each parameter's default and the reason for it.

    Returns:
        The Clustering: a label per item (NOISE = -1), membership probabilities, the method and its settings.
    """
    if reduction_method == "umap":
        return _hdbscan(
            embeddings,
            coords,
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_method=cluster_selection_method,
            cluster_selection_epsilon=cluster_selection_epsilon,
            merge_similarity=merge_similarity,
            assign_similarity=assign_similarity,
            gpu=gpu,
        )
    return _agglomerative(embeddings, fallback_distance)
