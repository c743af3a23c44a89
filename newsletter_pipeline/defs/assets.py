"""The daily assets: raw items -> embeddings -> UMAP coordinates -> clusters -> sheet export.

Each asset handles every day of its run (one day, or a range in a single-run backfill) and writes one
Parquet file per day through the OutputStore, so a range run leaves the same files as per-day runs.
"""

import base64
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from newsletter_pipeline.defs.checks import check_results, check_specs
from newsletter_pipeline.defs.partitions import daily_partitions
from newsletter_pipeline.defs.resources import ClusteringResource, EmbeddingResource, LandingFolder, OutputStore, SheetsResource
from newsletter_pipeline.stages import cluster, embed, export, label, parse, plot, quality, reduce
from newsletter_pipeline.storage import column_to_vectors, vectors_to_arrow_column

GROUP = "newsletter"
# A range of days runs as one run: the model loads once and every day is written on its own.
DAILY = {"partitions_def": daily_partitions, "backfill_policy": dg.BackfillPolicy.single_run(), "group_name": GROUP}


@contextmanager
def _timed(timings: dict, key: str):
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 3)


def _day_metadata(per_day: dict[str, dict]) -> dict:
    """A one-day run shows the day's figures; a range shows totals and a row per day."""
    if len(per_day) == 1:
        return next(iter(per_day.values()))
    scalars = {k for figures in per_day.values() for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    columns = sorted(scalars)
    table = "| day | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    table += "\n".join(f"| {day} | " + " | ".join(str(f.get(c, "")) for c in columns) + " |" for day, f in per_day.items())
    return {"days": len(per_day), "first_day": min(per_day), "last_day": max(per_day), "per_day": dg.MetadataValue.md(table)}


def _read_vectors(store, table: str, column: str, day: str) -> tuple[pd.DataFrame, np.ndarray]:
    frame = store.read(table, day)
    dimension = int(store.read_metadata(table, day).get("dimension", 0))
    return frame, column_to_vectors(frame[column], dimension)


@dg.asset(**DAILY, kinds={"parquet"}, check_specs=check_specs("raw_items"))
def raw_items(context: dg.AssetExecutionContext, landing: LandingFolder, store: OutputStore) -> dg.MaterializeResult:
    """The day's newsletter items from the landing folder, normalized to one table."""
    parsed = parse.parse_landing(Path(landing.path))
    undated = parsed.rejects[parsed.rejects["day"].isna()]
    for reject in undated.itertuples():
        context.log.warning(f"{reject.file}, record {reject.position}: {reject.reason}; fix the record to include it")
    per_day, outcomes = {}, {}
    for day in context.partition_keys:
        today = parse.items_for_day(parsed, day)
        store.store.write("raw_items", day, today.items)
        store.store.write("quarantine", day, today.rejects)
        for reject in today.rejects.itertuples():
            context.log.warning(f"{reject.file}, record {reject.position}: {reject.reason}")
        written = store.store.read("raw_items", day)
        outcomes[day] = [quality.judge_unique_ids(written)]
        per_day[day] = {
            "items": len(written),
            "sources": int(written["source"].nunique()),
            "quarantined": len(today.rejects),
            "repeats_dropped": len(today.repeats),
            "path": store.store.path("raw_items", day),
        }
    metadata = _day_metadata(per_day) | {"landing_files": len(parse.landing_files(Path(landing.path))), "records_without_a_day": len(undated)}
    return dg.MaterializeResult(metadata=metadata, check_results=check_results("raw_items", outcomes))


@dg.asset(**DAILY, deps=[raw_items], kinds={"pytorch", "parquet"}, pool="gpu", check_specs=check_specs("item_embeddings"))
def item_embeddings(context: dg.AssetExecutionContext, embedder: EmbeddingResource, store: OutputStore) -> dg.MaterializeResult:
    """One float32 sentence embedding per item, computed on the GPU resource (CPU when there is none)."""
    items = {day: store.store.read("raw_items", day) for day in context.partition_keys}
    texts = [text for day in items for text in embed.item_texts(items[day])]
    timings: dict = {}
    # Every day of the run in one encode call: larger batches, and the model is loaded once.
    with _timed(timings, "embed_seconds"):
        vectors = embedder.embed(texts)
    # The dimension comes from the model even on an empty run, so every day's file has the same schema.
    dimension = embedder.dimension
    model_meta = {"model": embedder.model, "dimension": str(dimension)}
    per_day, outcomes, offset = {}, {}, 0
    for day, day_items in items.items():
        day_vectors = vectors[offset : offset + len(day_items)]
        offset += len(day_items)
        table = pa.table({"item_id": pa.array(day_items["item_id"], pa.string()), "embedding": vectors_to_arrow_column(day_vectors)})
        store.store.write("item_embeddings", day, table, metadata=model_meta)
        stored_items, stored = _read_vectors(store.store, "item_embeddings", "embedding", day)
        outcomes[day] = [quality.judge_embeddings(stored_items["item_id"], stored, day_items["item_id"], dimension)]
        per_day[day] = {"items": len(day_items), "path": store.store.path("item_embeddings", day)}
    metadata = _day_metadata(per_day) | {"model": embedder.model, "dimension": dimension, "device": embedder.device_used, **timings}
    if texts:
        metadata["items_per_second"] = round(len(texts) / max(timings["embed_seconds"], 1e-9), 1)
    return dg.MaterializeResult(metadata=metadata, check_results=check_results("item_embeddings", outcomes))


@dg.asset(**DAILY, deps=[item_embeddings], kinds={"python", "parquet"})
def umap_coordinates(context: dg.AssetExecutionContext, clustering: ClusteringResource, store: OutputStore) -> dg.MaterializeResult:
    """UMAP coordinates per item: a few dimensions for clustering and two for plots, with a fixed seed."""
    per_day = {}
    for day in context.partition_keys:
        frame, vectors = _read_vectors(store.store, "item_embeddings", "embedding", day)
        timings: dict = {}
        with _timed(timings, "umap_seconds"):
            reduction = reduce.reduce_embeddings(vectors, clustering.reduce)
        table = pa.table(
            {
                "item_id": pa.array(frame["item_id"], pa.string()),
                "coords": vectors_to_arrow_column(reduction.cluster),
                "x": pa.array(reduction.plot[:, 0], pa.float32()),
                "y": pa.array(reduction.plot[:, 1], pa.float32()),
            }
        )
        dimension = reduction.cluster.shape[1] if reduction.cluster.ndim == 2 else 0
        store.store.write("umap_coordinates", day, table, metadata={"method": reduction.method, "dimension": str(dimension)})
        per_day[day] = {"items": len(frame), "method": reduction.method, "dimensions": dimension, **timings, "path": store.store.path("umap_coordinates", day)}
        if reduction.method != "umap" and len(frame):
            context.log.info(f"{day}: {len(frame)} items, fewer than {clustering.reduce.min_items}: UMAP skipped, small-day fallback")
    return dg.MaterializeResult(metadata=_day_metadata(per_day) | {"params": dg.MetadataValue.json(clustering.reduce.model_dump())})


def _size_table(summaries: pd.DataFrame, noise: int) -> str:
    rows = [f"| {r.cluster_id} | {r.size} | {r.n_sources} | {r.label} |" for r in summaries.itertuples()]
    return "| cluster | items | sources | label |\n|---|---|---|---|\n" + "\n".join([*rows, f"| noise | {noise} | | |"])


@dg.asset(**DAILY, deps=[umap_coordinates], kinds={"python", "parquet"}, check_specs=check_specs("clusters"))
def clusters(context: dg.AssetExecutionContext, clustering: ClusteringResource, store: OutputStore) -> dg.MaterializeResult:
    """HDBSCAN clusters per item (-1 is noise) with membership probability, and a labelled summary per cluster."""
    per_day, outcomes, plots = {}, {}, {}
    for day in context.partition_keys:
        items = store.store.read("raw_items", day)
        _, vectors = _read_vectors(store.store, "item_embeddings", "embedding", day)
        coords_frame, coords = _read_vectors(store.store, "umap_coordinates", "coords", day)
        method = store.store.read_metadata("umap_coordinates", day)["method"]
        timings: dict = {}
        with _timed(timings, "cluster_seconds"):
            result = cluster.cluster_items(vectors, coords, method, clustering.cluster)
        with _timed(timings, "label_seconds"):
            summaries = label.summarize_clusters(items, vectors, result.labels)
        assignments = pd.DataFrame(
            {
                "item_id": items["item_id"],
                "source_id": items["source_id"],
                "cluster_id": result.labels,
                "probability": result.probabilities,
                "x": coords_frame["x"],
                "y": coords_frame["y"],
            }
        )
        store.store.write("clusters", day, assignments)
        store.store.write("cluster_summaries", day, summaries)
        stored = store.store.read("clusters", day)
        figures = quality.cluster_figures(vectors, stored["cluster_id"].to_numpy())
        outcomes[day] = [quality.judge_assignment(stored, items), *quality.judge_clusters(figures, clustering.quality, small_day=result.method != "hdbscan")]
        noise = int((result.labels == cluster.NOISE).sum())
        per_day[day] = {
            "items": len(items),
            "clusters": result.n_clusters,
            "noise_items": noise,
            "noise_share": round(figures["noise_share"], 4),
            "silhouette": None if figures["silhouette"] is None else round(figures["silhouette"], 4),
            "method": result.method,
            **timings,
        }
        if len(items):
            xy = stored[["x", "y"]].to_numpy()
            plots[day] = plot.cluster_scatter_png(xy, result.labels, summaries, f"{day}: {result.n_clusters} clusters, {len(items)} items")
        if len(per_day) == 1 or len(context.partition_keys) == 1:
            per_day[day]["cluster_sizes"] = dg.MetadataValue.md(_size_table(summaries, noise))
            per_day[day]["settings"] = dg.MetadataValue.json({"method": result.method, **result.settings})
            per_day[day]["path"] = store.store.path("clusters", day)
    metadata = _day_metadata({d: {k: v for k, v in f.items() if v is not None} for d, f in per_day.items()})
    if plots:
        # One picture per run keeps the event log small: the last day of a range.
        day, png = max(plots.items())
        metadata["plot"] = dg.MetadataValue.md(f"**{day}**\n\n![clusters of {day}](data:image/png;base64,{base64.b64encode(png).decode()})")
    return dg.MaterializeResult(metadata=metadata, check_results=check_results("clusters", outcomes))


# The `sheets` pool (limit 1 in dagster.yaml) serializes exports: a tab is rewritten whole, and two runs
# writing different days at once would otherwise lose one run's rows.
@dg.asset(**DAILY, deps=[clusters], kinds={"googlesheets"}, pool="sheets")
def sheet_export(context: dg.AssetExecutionContext, sheets: SheetsResource, store: OutputStore) -> dg.MaterializeResult:
    """The day's clusters and items in the sheet layout; a re-run replaces the day's rows."""
    per_day = {}
    for day in context.partition_keys:
        tables = export.sheet_tables(
            day, store.store.read("raw_items", day), store.store.read("clusters", day), store.store.read("cluster_summaries", day)
        )
        totals = sheets.write(day, tables)
        per_day[day] = {"cluster_rows": len(tables["clusters"]), "item_rows": len(tables["items"])}
        context.log.info(f"{day}: wrote {len(tables['clusters'])} cluster rows and {len(tables['items'])} item rows; sheet totals {totals}")
    return dg.MaterializeResult(metadata=_day_metadata(per_day) | {"destination": sheets.destination, "layout_version": export.LAYOUT_VERSION})
