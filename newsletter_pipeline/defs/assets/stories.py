"""Step 5, clusters -> stories: each cluster matched to the stories of earlier days."""

import datetime as dt
import hashlib

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from newsletter_pipeline.defs.assets.common import DAILY, after_update_of, vectors_of
from newsletter_pipeline.defs.io_manager import OutputStore, Stored, by_day
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.defs.results import markdown, materialized, png_markdown
from newsletter_pipeline.storage import ParquetStore, vectors_to_arrow_column
from newsletter_pipeline.stories import timeline
from newsletter_pipeline.stories import tracking as story_stage


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


def _story_table(stories: pd.DataFrame, summaries: pd.DataFrame) -> dg.MetadataValue:
    rows = stories.merge(summaries[["cluster_id", "label"]], on="cluster_id", how="left")
    columns = ["story_id", "cluster_id", "label", "first_seen", "days_active", "trend", "size"]
    return markdown(
        rows[columns].itertuples(index=False), ("story", "cluster", "label", "first seen", "days", "trend", "items")
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
    # A day's stories changed (a late item, a re-run): the next day's ids built on its state are redone, and so on
    # forward, without a person (the automation sensor in definitions.py).
    automation_condition=after_update_of("stories"),
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
        vectors = vectors_of(embedded, "embedding")
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
                f"embeddings with {embedded.attrs.get('model')}; their centroids do not compare, so every cluster "
                "starts a story"
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
            # The earlier day was clustered again after its stories were made (a late item, a re-run): ids still
            # continue from the state as it was, which may no longer match that day's sheet rows.
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
            "story_table": _story_table(tracked.stories, summaries),
            "timeline": _timeline(store.parquet, written, day, params.lookback_days),
        }
    yield from materialized(context, "stories", written, per_day, params=dg.MetadataValue.json(params.model_dump()))


def _timeline(stored: ParquetStore, written: dict[str, dict], day: str, lookback_days: int) -> dg.MetadataValue:
    """The stories of the look-back window up to `day`, as a timeline plot: the days' stories tables, from this run
    or the store."""
    window = [
        (dt.date.fromisoformat(day) - dt.timedelta(days=back)).isoformat() for back in range(lookback_days, -1, -1)
    ]
    tables = {
        d: written[d]["stories"] if d in written else stored.read("stories", d)
        for d in window
        if d in written or stored.exists("stories", d)
    }
    history = timeline.story_history(tables)
    title = f"stories of {window[0]} to {day}: {history['story_id'].nunique()} stories"
    return png_markdown(f"stories up to {day}", timeline.timeline_png(history, window, title))


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
