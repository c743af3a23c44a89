"""The daily assets: raw items -> embeddings -> UMAP coordinates -> clusters -> stories -> sheet export.

Each asset takes its upstream tables as arguments and returns its own tables for every day of its run (one day, or
a range in a single-run backfill); the OutputStore IO manager (io_manager.py) writes one Parquet file per table and
day, so a range run leaves the same files as per-day runs. Check results are judged on the tables as stored.
"""

import base64
import datetime as dt
import hashlib
import time
from contextlib import contextmanager

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, label, plot, reduce
from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.checks import check_specs
from newsletter_pipeline.defs.io_manager import KEEP, UNASSIGNED, OutputStore, Stored, by_day
from newsletter_pipeline.defs.partitions import daily_partitions
from newsletter_pipeline.defs.resources import ClusteringResource, EmbeddingResource, LandingFolder, SheetsResource
from newsletter_pipeline.defs.results import checked, materialized
from newsletter_pipeline.embedding import embed, embed_cache
from newsletter_pipeline.items import parse
from newsletter_pipeline.publishing import export
from newsletter_pipeline.storage import (
    ParquetStore,
    code_fingerprint,
    column_to_vectors,
    fingerprint,
    vectors_to_arrow_column,
)
from newsletter_pipeline.stories import tracking as story_stage

GROUP = "newsletter"
RAW_ITEMS_TABLES = ("raw_items", "duplicates", "quarantine")
# A range of days runs as one run: the model loads once and every day is written on its own.
DAILY = {"partitions_def": daily_partitions, "backfill_policy": dg.BackfillPolicy.single_run(), "group_name": GROUP}


@contextmanager
def _timed(timings: dict, key: str):
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 3)


def _vectors(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A stored table's vector column as a matrix (its dimension is in the file's metadata, `attrs`)."""
    return column_to_vectors(frame[column], int(frame.attrs.get("dimension", 0)))


def _partition_window() -> tuple[str, str]:
    """The days an item may have: from the first partition to tomorrow (UTC), for items sent a little early."""
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    return daily_partitions.start.strftime("%Y-%m-%d"), tomorrow.isoformat()


class RawItemsConfig(dg.Config):
    allow_emptied_days: bool = Field(
        default=False,
        description="Let a day that had items drop to none (its landing files were removed on purpose). Without it such a day is "
        "held: its outputs and sheet rows stay, and the day_not_emptied check fails, so a missing or emptied landing "
        "location never wipes a published day.",
    )


def _table(rows: list[tuple], columns: tuple[str, ...]) -> dg.MetadataValue:
    lines = [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)] + [
        f"| {' | '.join(str(v) for v in row)} |" for row in rows
    ]
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(**DAILY, kinds={"parquet"}, io_manager_key="store", check_specs=check_specs("raw_items"))
def raw_items(
    context: dg.AssetExecutionContext,
    config: RawItemsConfig,
    landing: LandingFolder,
    store: dg.ResourceParam[OutputStore],
    clustering: ClusteringResource,
):
    """The day's newsletter items from the landing locations; every record an item, a duplicate or quarantined.

    Its value is the items table; its side tables are `duplicates` and `quarantine` (records of no day under
    `quarantine/unassigned.parquet`)."""
    listing = landing.listing()  # a location that is missing or cannot be listed fails here, before anything is written
    for skipped in listing.skipped:
        context.log.warning(f"{skipped.name}: {skipped.reason}")
    first_day, last_day = _partition_window()
    parsed = parse.parse_landing(
        listing.files, landing.column_map, first_day=first_day, last_day=last_day, date_format=landing.date_format
    )
    for warning in parsed.warnings:
        context.log.warning(warning)
    # Records that belong to no day (no usable date, or a date outside the partitions) are kept in one table.
    unassigned = parsed.rejects[parsed.rejects["day"].isna()].reset_index(drop=True)
    for reject in unassigned.itertuples():
        context.log.warning(
            f"{reject.file}, record {reject.position}: {reject.reason}; it belongs to no day until fixed"
        )
    written, per_day, found = {UNASSIGNED: {"quarantine": unassigned}}, {}, {}
    for day in context.partition_keys:
        today = parse.items_for_day(parsed, day)
        # The day's items as stored before this run (its own earlier output): a day is never emptied by accident.
        previous = len(store.parquet.read("raw_items", day)) if store.parquet.exists("raw_items", day) else 0
        emptied = checks.DAY_NOT_EMPTIED.evaluate(day, previous, len(today.items), config.allow_emptied_days)
        found[day] = (today, emptied)
        if emptied.passed:
            written[day] = {"raw_items": today.items, "duplicates": today.duplicates, "quarantine": today.rejects}
        else:  # held: the stored day stays as it was, and the check blocks the export
            written[day] = KEEP
            context.log.error(emptied.description)
        for reject in today.rejects.itertuples():
            context.log.warning(f"{reject.file}, record {reject.position}: {reject.reason}")
        tables = written[day] or {table: store.parquet.read(table, day) for table in RAW_ITEMS_TABLES}
        per_day[day] = {
            "records": today.records,
            "items": len(tables["raw_items"]),
            "duplicates": len(tables["duplicates"]),
            "quarantined": len(tables["quarantine"]),
            "sources": int(tables["raw_items"]["source"].nunique()),
            **({} if emptied.passed else {"held": True}),
        }
        if len(tables["quarantine"]):
            reasons = tables["quarantine"].groupby("reason").size().sort_values(ascending=False)
            per_day[day]["quarantine_reasons"] = _table(list(reasons.items()), ("reason", "records"))
    skipped = {"skipped_entries": len(listing.skipped)}
    if listing.skipped:
        skipped["skipped"] = _table([(s.name, s.reason) for s in listing.skipped], ("entry", "why it was not read"))
    yield from materialized(
        context,
        "raw_items",
        written,
        per_day,
        landing_files=len(listing.files),
        records_read=parsed.records,
        records_without_a_day=len(unassigned),
        **skipped,
    )
    outcomes = {}
    for day, (today, emptied) in found.items():
        stored = {table: store.parquet.read(table, day) for table in RAW_ITEMS_TABLES}  # judged as stored
        counts = {table: len(frame) for table, frame in stored.items()}
        outcomes[day] = [
            checks.UNIQUE_ITEM_ID.evaluate(stored["raw_items"]),
            checks.RECORDS_BALANCE.evaluate(
                today.records, counts["raw_items"], counts["duplicates"], counts["quarantine"], parsed.balanced()
            ),
            checks.QUARANTINE_SHARE.evaluate(today.records, counts["quarantine"], limits=clustering.quality),
            emptied,
        ]
    yield from checked(context, "raw_items", outcomes)


@dg.asset(
    **DAILY,
    kinds={"pytorch", "parquet"},
    pool="gpu",
    io_manager_key="store",
    check_specs=check_specs("item_embeddings"),
)
def item_embeddings(
    context: dg.AssetExecutionContext, raw_items, embedder: EmbeddingResource, store: dg.ResourceParam[OutputStore]
):
    """One float32 sentence embedding per item: from the embedding cache, else computed on the GPU resource (CPU when
    there is none). Its value: item_id and embedding, with the model, variant and dimension in the file's metadata."""
    items = by_day(context, raw_items)
    texts = {day: embed.item_texts(day_items) for day, day_items in items.items()}
    timings: dict = {}
    cache = embedder.embedding_cache(store.parquet)
    # Every day of the run in one pass: the model is loaded once and the texts no day has seen go in large batches.
    with _timed(timings, "embed_seconds"):
        all_texts = [text for day_texts in texts.values() for text in day_texts]
        vectors, cache_figures = embed_cache.embed_with_cache(cache, all_texts, list(items), embedder.embed)
    # The dimension comes from the vectors, or from the model on an empty run, so every day's file has the same schema.
    dimension = vectors.shape[1] if len(vectors) else embedder.dimension
    vectors = vectors.reshape(len(vectors), dimension)
    metadata = {"model": embedder.model, "variant": embedder.variant, "dimension": str(dimension)}
    written, day_vectors, offset = {}, {}, 0
    for day, day_items in items.items():
        day_vectors[day] = vectors[offset : offset + len(day_items)]
        offset += len(day_items)
        table = pa.table(
            {
                "item_id": pa.array(day_items["item_id"], pa.string()),
                "embedding": vectors_to_arrow_column(day_vectors[day]),
            }
        )
        written[day] = {"item_embeddings": Stored(table, metadata)}
    device = (
        embedder.device_used
        if cache_figures["texts_encoded"]
        else "none: no items"
        if not len(vectors)
        else "none: every vector came from the cache"
    )
    run_metadata = {"model": embedder.model, "variant": embedder.variant, "dimension": dimension, "device": device}
    if cache_figures["texts_encoded"]:
        run_metadata["items_per_second"] = round(
            cache_figures["texts_encoded"] / max(timings["embed_seconds"], 1e-9), 1
        )
    per_day = {day: {"items": len(day_items)} for day, day_items in items.items()}
    yield from materialized(context, "item_embeddings", written, per_day, **run_metadata, **cache_figures, **timings)
    outcomes = {}
    for day, day_items in items.items():
        if cache is not None:
            cache.save(day, texts[day], day_vectors[day])  # after the day's file: the cache never runs ahead of it
        stored = store.parquet.read("item_embeddings", day)  # judged as stored
        outcomes[day] = [
            checks.EMBEDDINGS_VALID.evaluate(
                stored["item_id"], _vectors(stored, "embedding"), day_items["item_id"], dimension
            )
        ]
    yield from checked(context, "item_embeddings", outcomes)


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
        vectors, gpu = _vectors(frame, "embedding"), clustering.gpu
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
            with _timed(timings, "umap_seconds"):
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


def _size_table(summaries: pd.DataFrame, noise: int) -> str:
    rows = [f"| {r.cluster_id} | {r.size} | {r.n_sources} | {r.label} |" for r in summaries.itertuples()]
    return "| cluster | items | sources | label |\n|---|---|---|---|\n" + "\n".join([*rows, f"| noise | {noise} | | |"])


def _plot_markdown(day: str, png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![clusters of {day}](data:image/png;base64,{base64.b64encode(png).decode()})")


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
        all_vectors, all_coords = _vectors(embedded, "embedding"), _vectors(reduced, "coords")
        # Join on item_id, never by position: upstream files made before the day's items changed lack the new
        # ones, which stay unassigned so that the every_item_assigned check stops the export and says so.
        items = day_items[
            day_items["item_id"].isin(embedded["item_id"]) & day_items["item_id"].isin(reduced["item_id"])
        ].reset_index(drop=True)
        vectors = all_vectors[pd.Index(embedded["item_id"]).get_indexer(items["item_id"])]
        reduced_rows = pd.Index(reduced["item_id"]).get_indexer(items["item_id"])
        coords, xy = all_coords[reduced_rows], reduced[["x", "y"]].to_numpy()[reduced_rows]
        timings: dict = {}
        with _timed(timings, "cluster_seconds"):
            result = cluster.cluster_items(
                vectors, coords, reduced.attrs["method"], **clustering.cluster.model_dump(), gpu=clustering.gpu
            )
        with _timed(timings, "label_seconds"):
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
            "cluster_sizes": dg.MetadataValue.md(_size_table(summaries, noise)),
            "settings": dg.MetadataValue.json({"method": result.method, **result.settings}),
        }
        if len(items):
            title = f"{day}: {result.n_clusters} clusters, {len(items)} items"
            per_day[day]["plot"] = _plot_markdown(day, plot.cluster_scatter_png(xy, result.labels, summaries, title))
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


def _clusters_digest(assignments: pd.DataFrame) -> str:
    """A fingerprint of a day's clusters (item -> cluster), kept with the story state made from them."""
    pairs = assignments[["item_id", "cluster_id"]].sort_values("item_id").to_csv(index=False)
    return hashlib.sha256(pairs.encode()).hexdigest()[:16]


def _state_table(state: pd.DataFrame, dimension: int) -> pa.Table:
    """The story state with its centroids as a vector column, like the embeddings."""
    types = {
        "story_id": pa.string(),
        "first_seen": pa.string(),
        "last_seen": pa.string(),
        "days_active": pa.int64(),
        "last_size": pa.int64(),
        "last_cluster_id": pa.int64(),
    }
    centroids = np.stack(state["centroid"].to_numpy()) if len(state) else np.zeros((0, dimension), dtype=np.float32)
    return pa.table(
        {
            **{c: pa.array(state[c].tolist(), t) for c, t in types.items()},
            "centroid": vectors_to_arrow_column(centroids),
        }
    )


def _story_table(stories: pd.DataFrame, summaries: pd.DataFrame) -> str:
    rows = stories.merge(summaries[["cluster_id", "label"]], on="cluster_id", how="left")
    lines = [
        f"| {r.story_id} | {r.cluster_id} | {r.label} | {r.first_seen} | {r.days_active} | {r.trend} | {r.size} |"
        for r in rows.itertuples()
    ]
    return (
        "| story | cluster | label | first seen | days | trend | items |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(lines)
    )


# Depends on its own previous day: a backfill runs the days in order, and each day continues the stories of the
# day before. A backfill launched from the UI takes two runs, since Dagster keeps a self-dependent asset apart from
# its upstream assets (raw_items..clusters, then stories and sheet_export); the CLI's --partition-range run is one.
@dg.asset(
    **DAILY,
    deps=[dg.AssetDep("stories", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))],
    ins={"clusters": dg.AssetIn(metadata={"tables": ["clusters", "cluster_summaries"]})},
    kinds={"python", "parquet"},
    io_manager_key="store",
)
def stories(
    context: dg.AssetExecutionContext,
    item_embeddings,
    clusters,
    clustering: ClusteringResource,
    store: dg.ResourceParam[OutputStore],
):
    """Each cluster's persistent story, matched to the stories of earlier days by centroid similarity; its side table
    `story_state` holds the stories that may still continue, which the next day reads."""
    params = clustering.stories
    embedded_by_day, written, per_day = by_day(context, item_embeddings), {}, {}
    # In order: each day reads the state the day before wrote.
    for day, day_clusters in by_day(context, clusters).items():
        embedded = embedded_by_day[day]
        vectors = _vectors(embedded, "embedding")
        # The latest story state in the look-back window before the day: written by this run, else stored earlier.
        state_day, state = _previous_state(store.parquet, written, day, params.lookback_days)
        state_metadata = {} if state is None else dict(state.attrs)
        yesterday = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
        if state_day is None:
            context.log.info(
                f"{day}: no story state in the {params.lookback_days} days before; every cluster starts a story"
            )
        elif state_metadata.get("model") != embedded.attrs.get("model"):
            context.log.warning(
                f"{day}: the story state of {state_day} was made with model {state_metadata.get('model')}, today's "
                f"embeddings with {embedded.attrs.get('model')}; their centroids do not compare, so every cluster starts a story"
            )
            state = None
        elif state_day != yesterday:
            context.log.warning(
                f"{day}: no story state for {yesterday}; continuing from {state_day}'s. Materialize stories for the "
                f"days in between, in order, for ids that do not depend on the gap"
            )
        stale = (
            state_day is not None
            and store.parquet.exists("clusters", state_day)
            and state_metadata.get("clusters_digest") != _clusters_digest(store.parquet.read("clusters", state_day))
        )
        if stale:
            # The earlier day was clustered again after its stories were made (a late item, a re-run): ids still continue
            # from the state as it was, which may no longer match that day's sheet rows.
            context.log.warning(
                f"{day}: the story state of {state_day} was made from clusters that have changed since; materialize "
                f"stories from {state_day} on, in order (one range run), to bring the ids up to date"
            )
        assignments, summaries = day_clusters["clusters"], day_clusters["cluster_summaries"]
        today = story_stage.cluster_centroids(assignments, embedded["item_id"], vectors)
        tracked = story_stage.track_stories(state, day, today, **params.model_dump())
        dimension = vectors.shape[1]
        metadata = {
            "model": embedded.attrs.get("model", ""),
            "dimension": str(dimension),
            "clusters_digest": _clusters_digest(assignments),
        }
        written[day] = {
            "stories": tracked.stories,
            "story_state": Stored(_state_table(tracked.state, dimension), metadata),
        }
        new = int((tracked.stories["trend"] == "new").sum())
        per_day[day] = {
            "stories": len(tracked.stories),
            "new": new,
            "continuing": len(tracked.stories) - new,
            "tracked_stories": len(tracked.state),  # that may still continue
            **({"state_from": state_day, "state_stale": stale} if state_day else {}),
            "story_table": dg.MetadataValue.md(_story_table(tracked.stories, summaries)),
        }
    yield from materialized(context, "stories", written, per_day, params=dg.MetadataValue.json(params.model_dump()))


def _previous_state(
    stored: ParquetStore, written: dict[str, dict], day: str, lookback_days: int
) -> tuple[str | None, pd.DataFrame | None]:
    """The latest story state of the look-back window before `day`, with its day: from the days this run has made
    (a range run writes them when it ends), else from the store; (None, None) when there is none."""
    for back in range(1, lookback_days + 1):
        earlier = (dt.date.fromisoformat(day) - dt.timedelta(days=back)).isoformat()
        if earlier in written:
            state = written[earlier]["story_state"]
            frame = state.data.to_pandas()
            frame.attrs = dict(state.metadata)
            return earlier, frame
        if stored.exists("story_state", earlier):
            return earlier, stored.read("story_state", earlier)
    return None, None


# The `sheets` pool (limit 1 in dagster.yaml) serializes exports: a tab is rewritten whole, and two runs
# writing different days at once would otherwise lose one run's rows.
@dg.asset(
    **DAILY,
    ins={"clusters": dg.AssetIn(metadata={"tables": ["clusters", "cluster_summaries"]})},
    kinds={"googlesheets"},
    pool="sheets",
    io_manager_key="store",
)
def sheet_export(context: dg.AssetExecutionContext, raw_items, clusters, stories, sheets: SheetsResource):
    """The day's clusters and items in the sheet layout; a re-run replaces the day's rows. Stores no table."""
    sheets.validate()  # missing or malformed credentials fail here, naming the variable, before any work
    stories_by_day, clusters_by_day, per_day = by_day(context, stories), by_day(context, clusters), {}
    for day, day_items in by_day(context, raw_items).items():
        day_clusters = clusters_by_day[day]
        tables = export.sheet_tables(
            day, day_items, day_clusters["clusters"], day_clusters["cluster_summaries"], stories_by_day[day]
        )
        totals = sheets.write(day, tables)
        per_day[day] = {"cluster_rows": len(tables["clusters"]), "item_rows": len(tables["items"])}
        context.log.info(
            f"{day}: wrote {len(tables['clusters'])} cluster rows and {len(tables['items'])} item rows; sheet totals {totals}"
        )
    yield from materialized(
        context, "sheet_export", None, per_day, destination=sheets.destination, layout_version=export.LAYOUT_VERSION
    )
