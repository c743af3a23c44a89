"""Step 4, item_embeddings -> umap_coordinates -> clusters: UMAP, HDBSCAN with its second stage, labels, plots."""

import dagster as dg
import pandas as pd
import pyarrow as pa

from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, label, plot, reduce
from newsletter_pipeline.defs import checks
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


def _size_table(summaries: pd.DataFrame, noise: int) -> dg.MetadataValue:
    rows = [(r.cluster_id, r.size, r.n_sources, r.label) for r in summaries.itertuples()]
    return markdown([*rows, ("noise", noise, "", "")], ("cluster", "items", "sources", "label"))


@dg.asset(**DAILY, kinds={"python", "parquet"}, io_manager_key="store", check_specs=check_specs("clusters"))
def clusters(
    context: dg.AssetExecutionContext,
    raw_items,
    item_embeddings,
    umap_coordinates,
    clustering: ClusteringResource,
    store: dg.ResourceParam[OutputStore],
):
    """HDBSCAN clusters per item (-1 is noise) with membership probability and plot position; its side table
    `cluster_summaries` labels each cluster."""
    embedded_by_day, reduced_by_day = by_day(context, item_embeddings), by_day(context, umap_coordinates)
    written, per_day, judged = {}, {}, {}
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
        timings: dict = {}
        with timed(timings, "cluster_seconds"):
            result = cluster.cluster_items(
                vectors, coords, reduced.attrs["method"], **clustering.cluster.model_dump(), gpu=clustering.gpu
            )
        with timed(timings, "label_seconds"):
            summaries = label.summarize_clusters(items, vectors, result.labels)
        assignments = pd.DataFrame(
            {
                "item_id": items["item_id"],
                "source_id": items["source_id"],
                "cluster_id": result.labels,
                "probability": result.probabilities,
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )
        written[day] = {"clusters": assignments, "cluster_summaries": summaries}
        judged[day] = (day_items, vectors, result.method != "hdbscan")
        noise = int((result.labels == cluster.NOISE).sum())
        figures = quality.cluster_figures(vectors, result.labels)
        per_day[day] = {
            "items": len(day_items),
            "clusters": result.n_clusters,
            "noise_items": noise,
            "noise_share": round(figures["noise_share"], 4),
            "silhouette": None if figures["silhouette"] is None else round(figures["silhouette"], 4),
            "method": result.method,
            **timings,
            "cluster_sizes": _size_table(summaries, noise),
            "settings": dg.MetadataValue.json({"method": result.method, **result.settings}),
        }
        if len(items):
            title = f"{day}: {result.n_clusters} clusters, {len(items)} items"
            per_day[day]["plot"] = png_markdown(
                f"clusters of {day}", plot.cluster_scatter_png(xy, result.labels, summaries, title)
            )
    yield from materialized(
        context, "clusters", written, {d: {k: v for k, v in m.items() if v is not None} for d, m in per_day.items()}
    )
    outcomes = {}
    for day, (day_items, vectors, small_day) in judged.items():
        stored = store.parquet.read("clusters", day)  # judged as stored
        figures = quality.cluster_figures(vectors, stored["cluster_id"].to_numpy())
        outcomes[day] = [
            checks.EVERY_ITEM_ASSIGNED.evaluate(stored, day_items),
            *checks.judge_clusters(figures, clustering.quality, small_day=small_day),
        ]
    yield from checked(context, "clusters", outcomes)
