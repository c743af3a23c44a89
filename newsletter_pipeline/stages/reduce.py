"""Reduce embeddings with UMAP: a few dimensions for clustering, two for plots."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import numpy as np
from pydantic import Field


class ReduceParams(dg.Config):
    """UMAP settings; the defaults are BERTopic's (the quality benchmark tried n_neighbors 30: benchmarks/README.md)."""

    n_neighbors: int = Field(
        default=15,
        description=(
            "Neighbours per point (default 15); capped at items - 1. On the quality benchmark, 30 "
            "scored the same or lower (HuffPost weeks NMI 0.363 vs 0.366, ARI 0.238 vs 0.242) and was less stable across "
            "seeds (ARI 0.60 vs 0.72)."
        ),
    )
    n_components: int = Field(
        default=5,
        description="Dimensions handed to HDBSCAN (default 5). Few enough for density estimates to work, enough to keep topics apart.",
    )
    min_dist: float = Field(
        default=0.0,
        description="How tightly UMAP may pack points (default 0.0): tight packing is what density clustering wants.",
    )
    metric: str = Field(
        default="cosine",
        description="Distance between embeddings (default cosine): sentence embeddings are compared by angle.",
    )
    plot_min_dist: float = Field(
        default=0.1,
        description="min_dist of the 2-D layout for plots (default 0.1): a little spread makes clusters readable.",
    )
    random_state: int = Field(
        default=42,
        description="Seed (default 42). A fixed seed makes UMAP deterministic, so the same day gives the same clusters.",
    )
    min_items: int = Field(
        default=20,
        description=(
            "Below this many items (default 20) UMAP's neighbourhood graph is too thin to trust: the day skips UMAP and "
            "is clustered by the small-day fallback on the embeddings themselves."
        ),
    )


@dataclass(frozen=True)
class Reduction:
    """Coordinates per item: `cluster` for clustering, `plot` (n x 2) for pictures."""

    cluster: np.ndarray
    plot: np.ndarray
    method: str  # "umap"; or "small-day" below ReduceParams.min_items: `cluster` is the embeddings, `plot` is PCA


def _umap(embeddings: np.ndarray, params: ReduceParams, n_components: int, min_dist: float) -> np.ndarray:
    import umap  # numba compiles on first use: keep it off the import path

    model = umap.UMAP(
        n_neighbors=min(params.n_neighbors, len(embeddings) - 1),
        n_components=n_components,
        min_dist=min_dist,
        metric=params.metric,
        random_state=params.random_state,
        # A fixed random_state already forces one thread; saying so silences UMAP's warning about it.
        n_jobs=1,
    )
    return model.fit_transform(embeddings).astype(np.float32)


def plot_layout_small(embeddings: np.ndarray) -> np.ndarray:
    """A 2-D layout for a small day: PCA of the embeddings (deterministic, no fitting to tune)."""
    n = len(embeddings)
    if n < 3:
        return np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)])
    centred = embeddings - embeddings.mean(axis=0)
    # SVD signs are arbitrary; fix them so the picture does not flip between runs.
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[:2].sum(axis=1, keepdims=True))
    signs[signs == 0] = 1
    return (centred @ (vt[:2] * signs).T).astype(np.float32)


def reduce_embeddings(embeddings: np.ndarray, params: ReduceParams | None = None, with_plot: bool = True) -> Reduction:
    """UMAP to `n_components` dimensions for clustering and to 2 for plots (left empty without `with_plot`); small days skip UMAP."""
    params = params or ReduceParams()
    n = len(embeddings)
    if n < max(params.min_items, params.n_components + 2):
        return Reduction(cluster=embeddings.astype(np.float32), plot=plot_layout_small(embeddings), method="small-day")
    cluster = _umap(embeddings, params, params.n_components, params.min_dist)
    plot = _umap(embeddings, params, 2, params.plot_min_dist) if with_plot else np.zeros((n, 0), dtype=np.float32)
    return Reduction(cluster=cluster, plot=plot, method="umap")
