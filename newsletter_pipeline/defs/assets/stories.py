"""Step 5, clusters -> stories: each item of the day continues a story of earlier days or starts one."""

import datetime as dt
import hashlib
import json

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from newsletter_pipeline.defs import reuse
from newsletter_pipeline.defs.assets.common import DAILY, after_update_of, vectors_of
from newsletter_pipeline.defs.io_manager import KEEP, OutputStore, Stored, by_day
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.defs.results import markdown, materialized, png_markdown
from newsletter_pipeline.storage import ParquetStore, code_fingerprint, fingerprint, vectors_to_arrow_column
from newsletter_pipeline.stories import timeline
from newsletter_pipeline.stories import tracking as story_stage

# What a day's stories and their timeline depend on besides the day's inputs, the state before and the settings.
_STORY_CODE = (
    (
        "newsletter_pipeline.stories.tracking",
        "newsletter_pipeline.stories.timeline",
        "newsletter_pipeline.clustering.cluster",
        __name__,
    ),
    ("numpy", "pandas", "matplotlib"),
)


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
        "items": pa.int64(),
        "last_size": pa.int64(),
        "title": pa.string(),
        "counts": pa.string(),
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
    columns = ["story_id", "cluster_id", "label", "first_seen", "days_active", "trend", "size", "story_size"]
    return markdown(
        rows[columns].itertuples(index=False),
        ("story", "cluster", "label", "first seen", "days", "trend", "cluster items", "story items"),
    )


# Depends on its own previous day: a backfill runs the days in order, and each day continues the stories of the
# day before. A backfill launched from the UI takes two runs, since Dagster keeps a self-dependent asset apart from
# its upstream assets (raw_items..clusters, then stories and sheet_export); the CLI's --partition-range run is one.
@dg.asset(
    **DAILY,
    deps=[dg.AssetDep("stories", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))],
    ins={
        "clusters": dg.AssetIn(metadata={"tables": ["clusters", "cluster_summaries"]}),
    },
    kinds={"python", "parquet"},
    io_manager_key="store",
    # A day's stories changed (a late item, a re-run): the next day's ids built on its state are redone, and so on
    # forward, without a person (the automation sensor in definitions.py).
    automation_condition=after_update_of("stories"),
)
def stories(
    context: dg.AssetExecutionContext,
    raw_items,
    item_embeddings,
    clusters,
    clustering: ClusteringResource,
    store: dg.ResourceParam[OutputStore],
):
    """Each cluster's persistent story (the story most of its items are in); side tables: `story_items`, each item's
    story, and `story_state`, the stories that may continue or that the stories tab lists, which the next day reads."""
    params = clustering.stories
    embedded_by_day, items_by_day = by_day(context, item_embeddings), by_day(context, raw_items)
    written, per_day = {}, {}
    # In order: each day reads the state the day before wrote.
    for day, day_clusters in by_day(context, clusters).items():
        embedded = embedded_by_day[day]
        vectors = vectors_of(embedded, "embedding")
        state_day, state, stale = _continued_state(context, store.parquet, written, day, embedded, params.lookback_days)
        assignments, summaries = day_clusters["clusters"], day_clusters["cluster_summaries"]
        headlines = items_by_day[day][["item_id", "headline"]]
        today = assignments[["item_id", "cluster_id"]].merge(headlines, on="item_id", how="left", validate="one_to_one")
        rows = pd.Index(embedded["item_id"]).get_indexer(today["item_id"])
        if (rows < 0).any():
            missing = today["item_id"][rows < 0].head(3).tolist()
            raise ValueError(f"{day}: {int((rows < 0).sum())} clustered items have no embedding (e.g. {missing})")
        # What this day's stories are made from: a day that holds still keeps the stories its items had.
        made_from = {
            "previous_state": f"{state_day}/{_state_digest(state)}" if state is not None else "none",
            "story_params": json.dumps(params.model_dump(), sort_keys=True),
            "model": embedded.attrs.get("model", ""),
        }
        inputs = fingerprint(
            today,
            vectors[rows],
            summaries,
            json.dumps(made_from, sort_keys=True),
            *_whole_state(state),  # every column: the digest above leaves out some that the outputs carry
            code_fingerprint(*_STORY_CODE),
        )
        freshly = {"state_from": state_day, "state_stale": stale} if state_day else {}
        report = reuse.saved(store.parquet, "stories", day, inputs, ("story_items", "story_state"))
        if report:  # the same clusters continuing the same state made the stored stories: they stand
            written[day] = KEEP
            per_day[day] = {
                **{k: v for k, v in report.metadata.items() if k not in ("state_from", "state_stale")},
                **freshly,  # whether the earlier day changed since is today's news, not the stored report's
                "tracking": "kept",
                "tracking_reason": reuse.REASON,
                "reused": True,
            }
            continue
        kept, tracking, reason = _held_stories(store.parquet, day, today, made_from)
        tracked = story_stage.track_items(
            state, day, today.fillna({"headline": ""}), vectors[rows], **params.model_dump(), kept=kept
        )
        dimension = vectors.shape[1]
        metadata = {
            "dimension": str(dimension),
            "clusters_digest": _clusters_digest(assignments),
            "inputs": inputs,  # names this state's content: the export's stories tab is kept by it
            **made_from,
        }
        written[day] = {
            "stories": Stored(tracked.stories, {"inputs": inputs}),
            "story_items": Stored(tracked.items, {"inputs": inputs}),
            "story_state": Stored(_state_table(tracked.state, dimension), metadata),
        }
        per_item, continued = tracked.items, tracked.items["similarity"].notna()
        per_day[day] = {
            "tracking": tracking,  # "kept" (the day holds still) or "full"
            "tracking_reason": reason,
            "stories": int(per_item["story_id"].nunique()),  # shown to readers: two items or more
            "items_continuing": int(continued.sum()),  # joined a story of an earlier day
            "items_in_new_stories": int((~continued & per_item["story_id"].notna()).sum()),
            "items_without_story": int(per_item["story_id"].isna().sum()),  # a candidate's first item
            "tracked_stories": len(tracked.state),
            **freshly,
            "story_table": _story_table(tracked.stories, summaries),
            "timeline": _timeline(tracked.state, day, params.lookback_days),
        }
    yield from materialized(context, "stories", written, per_day, params=dg.MetadataValue.json(params.model_dump()))
    for day, tables in written.items():
        if tables is not KEEP:
            reuse.save(store.parquet, "stories", day, tables["stories"].metadata["inputs"], per_day[day], [])


def _continued_state(
    context: dg.AssetExecutionContext,
    stored: ParquetStore,
    written: dict[str, dict],
    day: str,
    embedded: pd.DataFrame,
    lookback_days: int,
) -> tuple[str | None, pd.DataFrame | None, bool]:
    """The story state the day continues (its day, the state, whether it is stale), saying so when it is not
    yesterday's, was made with another model (then None: every item starts a story) or from changed clusters."""
    state_day, state = _previous_state(stored, written, day, lookback_days)
    state_metadata = {} if state is None else dict(state.attrs)
    yesterday = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    if state_day is None:
        context.log.info(f"{day}: no story state in the {lookback_days} days before; every item starts a story")
    elif state_metadata.get("model") != embedded.attrs.get("model"):
        context.log.warning(
            f"{day}: the story state of {state_day} was made with model {state_metadata.get('model')}, today's "
            f"embeddings with {embedded.attrs.get('model')}; their centroids do not compare, so every item starts a "
            "story"
        )
        state = None
    elif state_day != yesterday:
        context.log.warning(
            f"{day}: no story state for {yesterday}; continuing from {state_day}'s. Materialize stories for the "
            f"days in between, in order, for ids that do not depend on the gap"
        )
    stale = (
        state_day is not None
        and stored.exists("clusters", state_day)
        and state_metadata.get("clusters_digest") != _clusters_digest(stored.read("clusters", state_day))
    )
    if stale:
        # The earlier day was clustered again after its stories were made (a late item, a re-run): ids still
        # continue from the state as it was, which may no longer match that day's sheet rows.
        context.log.warning(
            f"{day}: the story state of {state_day} was made from clusters that have changed since; materialize "
            f"stories from {state_day} on, in order (one range run), to bring the ids up to date"
        )
    return state_day, state, stale


def _whole_state(state: pd.DataFrame | None) -> tuple:
    """A story state as parts of a fingerprint, every column included."""
    if state is None:
        return ("no state",)
    centroids = np.stack(state["centroid"].to_numpy()) if len(state) else np.zeros((0, 0))
    return state.drop(columns="centroid"), centroids.astype(np.float32)


def _state_digest(state: pd.DataFrame) -> str:
    """A fingerprint of a story state: its stories, their items and centroids."""
    state = story_stage.upgrade_state(state)
    digest = hashlib.sha256(state[["story_id", "last_seen", "items", "counts"]].to_csv(index=False).encode())
    if len(state):
        digest.update(np.stack(state["centroid"].to_numpy()).astype(np.float32).tobytes())
    return digest.hexdigest()[:16]


def _held_stories(
    stored: ParquetStore, day: str, today: pd.DataFrame, made_from: dict[str, str]
) -> tuple[dict[str, str], str, str]:
    """The stories the day's earlier items keep (item_id -> story), the path ("kept" or "full") and why.

    A day materialized again holds its items' stories, as `clusters` holds their clusters, when it continues the
    same state with the same settings and each earlier item is still there in the same cluster; new items are
    tracked around them. Otherwise every item is tracked afresh, a function of the items and the state alone."""
    if not (stored.exists("story_items", day) and stored.exists("story_state", day)):
        return {}, "full", "the day's first stories"
    before = stored.read_metadata("story_state", day)
    if before.get("previous_state") != made_from["previous_state"]:
        return {}, "full", "the story state of the days before has changed since"
    if before.get("story_params") != made_from["story_params"]:
        return {}, "full", "the story settings have changed"
    if before.get("model") != made_from["model"]:
        return {}, "full", "the embedding model has changed"
    earlier = stored.read("story_items", day)
    now = today.set_index("item_id")["cluster_id"]
    if not earlier["item_id"].isin(now.index).all():
        return {}, "full", "items were removed"
    if (now.loc[earlier["item_id"]].to_numpy() != earlier["cluster_id"].to_numpy()).any():
        return {}, "full", "the day was clustered again"
    new = len(now) - len(earlier)
    kept = dict(zip(earlier["item_id"], earlier["tracked_as"], strict=True))
    return kept, "kept", f"{len(kept)} items keep their stories; {new} new tracked around them"


def _timeline(state: pd.DataFrame, day: str, lookback_days: int) -> dg.MetadataValue:
    """The shown stories of the look-back window up to `day`, from the day's state, as a timeline plot."""
    window = [
        (dt.date.fromisoformat(day) - dt.timedelta(days=back)).isoformat() for back in range(lookback_days, -1, -1)
    ]
    history = story_stage.daily_counts(state, window[0], day)
    title = f"stories of {window[0]} to {day}: {history['story_id'].nunique()} stories"
    return png_markdown(f"stories up to {day}", timeline.timeline_png(history, window, title))


def _previous_state(
    stored: ParquetStore, written: dict[str, dict], day: str, lookback_days: int
) -> tuple[str | None, pd.DataFrame | None]:
    """The latest story state of the look-back window before `day`, with its day: from the days this run has made
    (a range run writes them when it ends), else from the store; (None, None) when there is none."""
    for back in range(1, lookback_days + 1):
        earlier = (dt.date.fromisoformat(day) - dt.timedelta(days=back)).isoformat()
        if written.get(earlier) is not None:  # made by this run (a day it kept is read from the store)
            state = written[earlier]["story_state"]
            frame = state.data.to_pandas()
            frame.attrs = dict(state.metadata)
            return earlier, frame
        if stored.exists("story_state", earlier):
            return earlier, stored.read("story_state", earlier)
    return None, None
