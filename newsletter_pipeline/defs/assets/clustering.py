"""Step 4, item_embeddings -> umap_coordinates -> clusters: UMAP, HDBSCAN with its second stage, labels, plots."""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, hold, label, plot, reduce
from newsletter_pipeline.defs import checks, reuse
from newsletter_pipeline.defs.assets.common import DAILY, timed, vectors_of
from newsletter_pipeline.defs.checks import check_specs
from newsletter_pipeline.defs.io_manager import KEEP, OutputStore, Stored, by_day
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.defs.results import checked, markdown, materialized, png_markdown
from newsletter_pipeline.storage import code_fingerprint, fingerprint, vectors_to_arrow_column

# What UMAP's result depends on besides its input and settings: a stored result made by other code (the step, this
# module, which lays out the stored table, or other library versions) is not reused.
_REDUCE_CODE = (
    ("newsletter_pipeline.clustering.reduce", "newsletter_pipeline.clustering.gpu", __name__),
    ("umap-learn", "pynndescent", "numba", "scikit-learn", "numpy", "cuml-cu12"),
)


@dg.asset(**DAILY, kinds={"python", "parquet"}, io_manager_key="store")
def umap_coordinates(
    context: dg.AssetExecutionContext,
    item_embeddings,
    clustering: ClusteringResource,
    store: dg.ResourceParam[OutputStore],
):
    """UMAP coordinates per item: a few dimensions for clustering (`coords`) and two for plots (`x`, `y`), with a
    fixed seed; method, library and dimension in the file's metadata."""
    written, per_day = {}, {}
    for day, frame in by_day(context, item_embeddings).items():
        vectors, gpu = vectors_of(frame, "embedding"), clustering.gpu
        inputs = fingerprint(
            frame["item_id"], vectors, clustering.reduce.model_dump(), gpu, code_fingerprint(*_REDUCE_CODE)
        )
        timings: dict = {}
        reused = store.parquet.made_from("umap_coordinates", day, inputs)  # its own earlier output
        if reused:
            # The same embeddings, settings and code made the stored coordinates, and UMAP with a fixed seed would
            # only make them again: a re-run of an unchanged day skips it (the largest cost once vectors are cached).
            written[day] = KEEP
            stored = store.parquet.read_metadata("umap_coordinates", day)
            method, library, dimension = stored["method"], stored["library"], int(stored["dimension"])
        else:
            with timed(timings, "umap_seconds"):
                reduction = reduce.reduce_embeddings(vectors, **clustering.reduce.model_dump(), gpu=gpu)
            table = pa.table(
                {
                    "item_id": pa.array(frame["item_id"], pa.string()),
                    "coords": vectors_to_arrow_column(reduction.cluster),
                    "x": pa.array(reduction.plot[:, 0], pa.float32()),
                    "y": pa.array(reduction.plot[:, 1], pa.float32()),
                }
            )
            method, library, dimension = reduction.method, reduction.library, reduction.cluster.shape[1]
            metadata = {"method": method, "library": library, "dimension": str(dimension), "inputs": inputs}
            written[day] = {"umap_coordinates": Stored(table, metadata)}
        per_day[day] = {
            "items": len(frame),
            "method": method,
            "library": library,
            "dimensions": dimension,
            "reused": reused,
            **timings,
        }
        if method != "umap" and len(frame) and not reused:
            context.log.info(
                f"{day}: {len(frame)} items, fewer than {clustering.reduce.min_items}: UMAP skipped, small-day fallback"
            )
    yield from materialized(
        context, "umap_coordinates", written, per_day, params=dg.MetadataValue.json(clustering.reduce.model_dump())
    )


# What clusters, labels, the plot and the checks depend on besides the day's inputs and settings.
_CLUSTER_CODE = (
    (
        "newsletter_pipeline.clustering.cluster",
        "newsletter_pipeline.clustering.hold",
        "newsletter_pipeline.clustering.label",
        "newsletter_pipeline.clustering.plot",
        "newsletter_pipeline.quality",
        "newsletter_pipeline.defs.checks",
        __name__,
    ),
    ("hdbscan", "scikit-learn", "scipy", "numpy", "pandas", "matplotlib", "cuml-cu12"),
)


def _size_table(summaries: pd.DataFrame, noise: int) -> dg.MetadataValue:
    rows = [(r.cluster_id, r.size, r.n_sources, r.label) for r in summaries.itertuples()]
    return markdown([*rows, ("noise", noise, "", "")], ("cluster", "items", "sources", "label"))


class ClustersConfig(dg.Config):
    """Run config of clusters (launchpad: ops.clusters.config)."""

    recluster: bool = Field(
        default=False,
        description="Cluster the day afresh even when it could hold still (its stored clusters kept, late items placed "
        "in them): after a restore, or to take a day's clusters from its items alone.",
    )


def _held(stored: pd.DataFrame, items: pd.DataFrame, vectors: np.ndarray, assign_similarity: float | None):
    """The day's stored clusters, probabilities and plot positions kept; new items placed by hold.place_new_items
    (joining a cluster as a noise item would: at assign_similarity; never when that is off)."""
    old = stored.set_index("item_id").loc[items["item_id"][items["item_id"].isin(stored["item_id"])]]
    is_old = items["item_id"].isin(stored["item_id"]).to_numpy()
    labels = np.full(len(items), cluster.NOISE, dtype=np.int64)
    probabilities = np.zeros(len(items), dtype=np.float32)
    xy = np.zeros((len(items), 2), dtype=np.float32)
    labels[is_old] = old["cluster_id"].to_numpy()
    probabilities[is_old] = old["probability"].to_numpy()
    xy[is_old] = old[["x", "y"]].to_numpy()
    threshold = np.inf if assign_similarity is None else assign_similarity
    new_labels, similarity, nearest = hold.place_new_items(vectors[is_old], labels[is_old], vectors[~is_old], threshold)
    labels[~is_old], probabilities[~is_old] = new_labels, similarity
    xy[~is_old] = xy[is_old][nearest] if is_old.any() else 0.0  # beside the stored item most like it
    return labels, probabilities, xy


@dg.asset(**DAILY, kinds={"python", "parquet"}, io_manager_key="store", check_specs=check_specs("clusters"))
def clusters(
    context: dg.AssetExecutionContext,
    config: ClustersConfig,
    raw_items,
    item_embeddings,
    umap_coordinates,
    clustering: ClusteringResource,
    store: dg.ResourceParam[OutputStore],
):
    """HDBSCAN clusters per item (-1 is noise) with membership probability and plot position; its side table
    `cluster_summaries` labels each cluster."""
    embedded_by_day, reduced_by_day = by_day(context, item_embeddings), by_day(context, umap_coordinates)
    written, per_day, judged, inputs_of, outcomes = {}, {}, {}, {}, {}
    for day, day_items in by_day(context, raw_items).items():
        embedded, reduced = embedded_by_day[day], reduced_by_day[day]
        all_vectors, all_coords = vectors_of(embedded, "embedding"), vectors_of(reduced, "coords")
        # Join on item_id, never by position: upstream files made before the day's items changed lack the new
        # ones, which stay unassigned so that the every_item_assigned check stops the export and says so.
        items = day_items[
            day_items["item_id"].isin(embedded["item_id"]) & day_items["item_id"].isin(reduced["item_id"])
        ].reset_index(drop=True)
        vectors = all_vectors[pd.Index(embedded["item_id"]).get_indexer(items["item_id"])]
        reduced_rows = pd.Index(reduced["item_id"]).get_indexer(items["item_id"])
        coords, xy = all_coords[reduced_rows], reduced[["x", "y"]].to_numpy()[reduced_rows]
        inputs_of[day] = fingerprint(
            day_items,
            embedded["item_id"],
            all_vectors,
            reduced[["item_id", "x", "y"]],
            all_coords,
            clustering.cluster.model_dump(),
            clustering.reduce.model_dump(),
            clustering.quality.model_dump(),
            clustering.recluster_share,
            clustering.gpu,
            code_fingerprint(*_CLUSTER_CODE),
        )
        report = (
            None
            if config.recluster
            else reuse.saved(store.parquet, "clusters", day, inputs_of[day], ("cluster_summaries",))
        )
        if report:  # the same inputs made the stored clusters: they, their labels, plot and checks stand
            written[day], outcomes[day] = KEEP, report.outcomes
            per_day[day] = {**report.metadata, "clustering": "kept", "clustering_reason": reuse.REASON, "reused": True}
            continue
        timings: dict = {}
        # The day's stored clustering (its own earlier output) is the state that a re-run with late items keeps.
        stored = store.parquet.read("clusters", day) if store.parquet.exists("clusters", day) else None
        # plot_epochs moves only the plot's points (kept with the day), so it is left out: a day holds across it.
        reduce_settings = clustering.reduce.model_dump(exclude={"plot_epochs"})
        settings = fingerprint(clustering.cluster.model_dump(), reduce_settings, clustering.gpu)
        decision = hold.decide(
            None if stored is None else set(stored["item_id"]),
            set(items["item_id"]),
            settings_changed=stored is not None and stored.attrs.get("settings") != settings,
            items_at_full=int(stored.attrs.get("items_at_full", 0)) if stored is not None else 0,
            recluster_share=clustering.recluster_share,
            asked=config.recluster,
        )
        with timed(timings, "cluster_seconds"):
            if decision.keep:
                labels, probabilities, xy = _held(stored, items, vectors, clustering.cluster.assign_similarity)
                method, items_at_full = stored.attrs.get("method", "hdbscan"), int(stored.attrs["items_at_full"])
                settings_shown = {"method": method, "kept": True}
            else:
                result = cluster.cluster_items(
                    vectors, coords, reduced.attrs["method"], **clustering.cluster.model_dump(), gpu=clustering.gpu
                )
                labels, probabilities, method, items_at_full = (
                    result.labels,
                    result.probabilities,
                    result.method,
                    len(items),
                )
                settings_shown = {"method": method, **result.settings}
        n_clusters = len(set(labels.tolist()) - {cluster.NOISE})
        with timed(timings, "label_seconds"):
            summaries = label.summarize_clusters(items, vectors, labels)
        assignments = pd.DataFrame(
            {
                "item_id": items["item_id"],
                "source_id": items["source_id"],
                "cluster_id": labels,
                "probability": probabilities,
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )
        state = {"settings": settings, "items_at_full": str(items_at_full), "method": method, "inputs": inputs_of[day]}
        written[day] = {
            "clusters": Stored(assignments, state),
            "cluster_summaries": Stored(summaries, {"inputs": inputs_of[day]}),
        }
        judged[day] = (day_items, vectors, method != "hdbscan")
        noise = int((labels == cluster.NOISE).sum())
        figures = quality.cluster_figures(vectors, labels)
        per_day[day] = {
            "items": len(day_items),
            "clusters": n_clusters,
            "clustering": "kept" if decision.keep else "full",
            "clustering_reason": decision.reason,
            "noise_items": noise,
            "noise_share": round(figures["noise_share"], 4),
            "silhouette": None if figures["silhouette"] is None else round(figures["silhouette"], 4),
            "method": method,
            **timings,
            "cluster_sizes": _size_table(summaries, noise),
            "settings": dg.MetadataValue.json(settings_shown),
        }
        if len(items):
            title = f"{day}: {n_clusters} clusters, {len(items)} items"
            per_day[day]["plot"] = png_markdown(
                f"clusters of {day}", plot.cluster_scatter_png(xy, labels, summaries, title)
            )
    yield from materialized(
        context, "clusters", written, {d: {k: v for k, v in m.items() if v is not None} for d, m in per_day.items()}
    )
    for day, (day_items, vectors, small_day) in judged.items():
        stored = store.parquet.read("clusters", day)  # judged as stored
        figures = quality.cluster_figures(vectors, stored["cluster_id"].to_numpy())
        outcomes[day] = [
            checks.EVERY_ITEM_ASSIGNED.evaluate(stored, day_items),
            *checks.judge_clusters(figures, clustering.quality, small_day=small_day),
        ]
        reuse.save(store.parquet, "clusters", day, inputs_of[day], per_day[day], outcomes[day])
    yield from checked(context, "clusters", dict(sorted(outcomes.items())))
