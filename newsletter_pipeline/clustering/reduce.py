"""Reduce embeddings with UMAP: a few dimensions for clustering, and from that layout two for plots."""

from __future__ import annotations

import functools
import sys
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reduction:
    """Coordinates per item: `cluster` for clustering, `plot` (n x 2) for pictures."""

    cluster: np.ndarray
    plot: np.ndarray
    method: str  # "umap"; or "small-day" below ReduceParams.min_items: `cluster` is the embeddings, `plot` is PCA
    library: str = "numpy"  # what computed the layouts: umap-learn, cuml, or numpy (the small-day PCA)


# From EXACT_KNN_MIN_ITEMS to EXACT_KNN_MAX_ITEMS the pipeline hands UMAP exact cosine neighbours, one matrix product
# per block. Left to itself, umap-learn computes every pairwise distance below 4,096 items by calling its numba metric
# once per pair from Python (3.3 s of its 5.4 s at 2,000 items, 0.2 s at 500: below 1,000 items the gain is too small
# to change those days' layouts for), and above that uses NN-descent, which is approximate, seeded, and compiles for
# tens of seconds in every new process.
EXACT_KNN_MIN_ITEMS = 1_000
EXACT_KNN_MAX_ITEMS = 50_000
_KNN_BLOCK = 256  # rows per matrix product: about 30 bytes x items each, so 10,000 items take ~80 MB at a time


def exact_cosine_knn(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest rows by cosine distance (itself first), as UMAP's (indices, distances); deterministic."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    unit = unit.astype(np.float32)
    n = len(unit)
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _KNN_BLOCK):
        block = unit[start : start + _KNN_BLOCK] @ unit.T
        rows = np.arange(len(block))
        block[rows, start + rows] = 2.0  # itself first, whatever rounding says
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        order = np.lexsort((top, -np.take_along_axis(block, top, axis=1)), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        indices[start : start + len(block)] = top
        distances[start : start + len(block)] = np.clip(1.0 - np.take_along_axis(block, top, axis=1), 0.0, 2.0)
    return indices, distances


def _import_umap():
    """umap-learn, with numba's on-disk cache turned on for its compiled functions (see enable_numba_cache)."""
    import umap  # numba compiles on first use: keep it off the import path

    enable_numba_cache()
    return umap


@functools.cache
def enable_numba_cache() -> int:
    """Let numba keep umap-learn's compiled functions on disk, so only the first process ever compiles them.

    umap-learn declares most of its numba functions without `cache=True`, so every new process (each run of a
    backfill, every `dagster` command) spent about 12 seconds compiling before its first UMAP call; with the cache
    it spends about half a second loading. This does what `cache=True` does, before anything is compiled. The
    cache sits beside umap's source (or in NUMBA_CACHE_DIR where that is read-only) and is keyed by source file
    and numba version, so an upgrade recompiles. Returns how many functions were switched over.
    """
    from numba.core.dispatcher import Dispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("umap") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and type(value._cache).__name__ == "NullCache" and not value.overloads:
                try:
                    value.enable_caching()
                except RuntimeError:  # no writable cache location (read-only install, no home): compile as before
                    return switched
                switched += 1
    return switched


def _umap(
    embeddings: np.ndarray,
    *,
    n_neighbors: int,
    n_components: int,
    min_dist: float,
    metric: str,
    random_state: int,
    knn=None,
    gpu: bool = False,
):
    """UMAP's layout and its fuzzy neighbour graph (None from cuML, which does not keep one)."""
    settings = {
        "n_neighbors": min(n_neighbors, len(embeddings) - 1),
        "n_components": n_components,
        "min_dist": min_dist,
        "metric": metric,
        "random_state": random_state,
    }
    if gpu:
        from cuml.manifold import UMAP

        return np.asarray(UMAP(**settings, output_type="numpy").fit_transform(embeddings), dtype=np.float32), None
    umap = _import_umap()
    # A fixed random_state already forces one thread; saying so silences UMAP's warning about it.
    # force_approximation_algorithm: take the neighbours given, also on a day under 4,096 items.
    given = {"precomputed_knn": (*knn, None), "force_approximation_algorithm": True} if knn is not None else {}
    model = umap.UMAP(**settings, n_jobs=1, **given)
    with warnings.catch_warnings():
        # "no transform without a search index": the pipeline never calls transform.
        warnings.filterwarnings("ignore", message=r".*precomputed_knn\[2\].*")
        layout = model.fit_transform(embeddings).astype(np.float32)
    return layout, model.graph_


# The plot pass's optimisation costs about epochs x items: a day of up to 2,000 items gets BUDGET // items epochs (500,
# UMAP's own number for small data, at most), so a small day is laid out as carefully as before for the same ~0.3 s;
# larger days get ReduceParams.plot_epochs.
PLOT_EPOCH_BUDGET, MAX_PLOT_EPOCHS = 200_000, 500


def plot_epochs_for(n_items: int, fewest: int) -> int:
    """Epochs of the plot pass for a day of `n_items`: PLOT_EPOCH_BUDGET // n_items, between `fewest` and 500."""
    return int(min(MAX_PLOT_EPOCHS, max(fewest, PLOT_EPOCH_BUDGET // max(n_items, 1))))


def plot_layout_from(graph, layout: np.ndarray, *, min_dist: float, epochs: int, random_state: int) -> np.ndarray:
    """A 2-D layout for the plot from the clustering layout's own UMAP graph, started from the PCA of that layout.

    A second full UMAP run for the plot cost as much as the clustering layout (5.2 s of 10.6 s at 2,000 items); this
    pass skips its neighbour search, graph and spectral start and runs `epochs` of UMAP's optimisation (0.3 s):
    benchmarks/README.md ("One layout") compares the pictures. Deterministic: one thread, a seeded generator.
    """
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    _import_umap()
    a, b = find_ab_params(1.0, min_dist)
    xy, _ = simplicial_set_embedding(
        data=None,  # only the "spectral" start reads it; this one starts from an array
        graph=graph.copy(),  # the optimiser prunes the graph's weakest edges in place
        n_components=2,
        initial_alpha=1.0,
        a=a,
        b=b,
        gamma=1.0,
        negative_sample_rate=5,
        n_epochs=epochs,
        init=plot_layout_small(layout).astype(np.float64),
        random_state=np.random.RandomState(random_state),
        metric="euclidean",
        metric_kwds={},
        densmap=False,
        densmap_kwds={},
        output_dens=False,
    )
    return xy.astype(np.float32)


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


def reduce_embeddings(
    embeddings: np.ndarray,
    *,
    n_neighbors: int,
    n_components: int,
    min_dist: float,
    metric: str,
    plot_min_dist: float,
    plot_epochs: int,
    random_state: int,
    min_items: int,
    with_plot: bool = True,
    gpu: bool = False,
) -> Reduction:
    """UMAP to `n_components` dimensions for clustering, then 2 for plots; a day of fewer than `min_items` skips UMAP.

    Args:
        embeddings: one row per item.
        n_neighbors: UMAP's neighbours per point, capped at items - 1.
        n_components: dimensions of the coordinates for clustering.
        min_dist: how tightly UMAP packs points in those coordinates.
        metric: the distance between embeddings (cosine).
        plot_min_dist: min_dist of the 2-D layout for plots.
        plot_epochs: the fewest optimisation epochs of the 2-D layout, which starts from the clustering layout and its
            graph; smaller days get more (plot_epochs_for).
        random_state: UMAP's seed; fixed, so a day gives the same coordinates again.
        min_items: below this many items (or n_components + 2) the cluster coordinates are the embeddings themselves
            and the plot layout is PCA (method "small-day").
        with_plot: False leaves `plot` empty (n x 0), for callers that only cluster.
        gpu: run cuML's UMAP (clustering/gpu.py decides when); its layouts differ from umap-learn's, so clusters do too.
            cuML keeps no graph to start the plot from, so there the plot is a second (fast, GPU) UMAP run.

    Returns:
        The Reduction: coordinates for clustering and for the plot, and which method and library made them.

    defs/params.py (ReduceParams) gives each parameter's default and the reason for it.
    """
    n = len(embeddings)
    if n < max(min_items, n_components + 2):
        return Reduction(cluster=embeddings.astype(np.float32), plot=plot_layout_small(embeddings), method="small-day")
    knn = None
    if not gpu and metric == "cosine" and EXACT_KNN_MIN_ITEMS <= n <= EXACT_KNN_MAX_ITEMS:
        knn = exact_cosine_knn(embeddings, min(n_neighbors, n - 1))
    umap = {"n_neighbors": n_neighbors, "metric": metric, "random_state": random_state, "knn": knn, "gpu": gpu}
    cluster, graph = _umap(embeddings, n_components=n_components, min_dist=min_dist, **umap)
    if not with_plot:
        plot = np.zeros((n, 0), np.float32)
    elif graph is None:
        plot, _ = _umap(embeddings, n_components=2, min_dist=plot_min_dist, **umap)
    else:
        epochs = plot_epochs_for(n, plot_epochs)
        plot = plot_layout_from(graph, cluster, min_dist=plot_min_dist, epochs=epochs, random_state=random_state)
    return Reduction(cluster=cluster, plot=plot, method="umap", library="cuml" if gpu else "umap-learn")
