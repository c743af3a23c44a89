"""Stories across days: each item of a day, clustered or not, continues a story of the days before or starts one.

A story is a set of items over days. An item continues the story whose centroid (the mean of its items'
embeddings) it is most similar to, when that similarity reaches `match_threshold`; a story may gain one item a
day or many. The items of a cluster that continue nothing start one story together, named after the day and the
cluster (`2026-11-16#3`), when they are close to their own centroid (`cohesion_threshold`); any other item that
continues nothing starts a candidate story named after the day and the item (`2026-11-16~1a2b3c4d5e6f7a8b`). Readers see
a story's id once it holds two items, so the sheet is not filled with one-item stories: a candidate's first item
keeps a blank id in its day's rows until that day is exported again (the stories tab shows the whole story).

Why items and not clusters: on the Wikipedia Current Events Portal month (benchmarks/README.md, 'Stories across
days') a day's clusters are topics that hold several stories (armed conflicts, elections), so clusters that
continue stories as a whole merge them (story ARI 0.16); items that continue stories one by one reach 0.33, and
keep stories on HuffPost's May 2018 days pure (category purity of a story on 2+ days 1.00, against 0.64).

Each item is matched against the state the day before left, never against today's other items, so the result
does not depend on the order of the items: the same items and state give the same ids. The state after a day holds
every story that may still continue (seen in the last `lookback_days`) and every story shown in the last
KEEP_DAYS, which the stories tab lists: its centroid, item count, latest title and items per day.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE, unit_rows

# Today's story of each cluster, one row per cluster: the story most of its items are in (`tracked_as`; `story_id`
# the same, blank while that story is a candidate), the cluster's size, and the story's items today and on its
# previous day.
STORY_COLUMNS = [
    "cluster_id",
    "story_id",
    "tracked_as",
    "first_seen",
    "days_active",
    "trend",
    "size",
    "story_size",
    "previous_size",
    "previous_day",
    "similarity",
]
# Today's story of each item (the `story_items` table): `story_id` as readers see it (blank for a candidate),
# `tracked_as` the story it counts in either way, `similarity` to that story's centroid when it continued one.
ITEM_COLUMNS = ["item_id", "cluster_id", "story_id", "tracked_as", "similarity"]
# The state after a day, one row per story; `centroid` is the mean of its items' unit embeddings, `counts` a JSON
# object day -> items over the last KEEP_DAYS, `title` the most central headline of its latest day.
STATE_COLUMNS = [
    "story_id",
    "first_seen",
    "last_seen",
    "days_active",
    "items",
    "last_size",
    "title",
    "counts",
    "centroid",
]
TRENDS = ("new", "growing", "shrinking", "steady")
KEEP_DAYS = 31  # a shown story stays in the state this long after it was last seen (at least): the stories tab's month
SHOWN_FROM = 2  # items a story holds before readers see its id
SCORE_ROWS = 2_048  # items scored against every story at once


@dataclass(frozen=True)
class Tracked:
    """A day's stories: per cluster (STORY_COLUMNS), per item (ITEM_COLUMNS), and the state after it."""

    stories: pd.DataFrame
    items: pd.DataFrame
    state: pd.DataFrame


def story_id(day: str, cluster_id: int) -> str:
    """The id of a story first seen as cluster `cluster_id` of `day`: 2026-11-16#3."""
    return f"{day}#{int(cluster_id)}"


def candidate_id(day: str, item_id: str) -> str:
    """The id of a story first seen as the single item `item_id` of `day`: 2026-11-16~1a2b3c4d5e6f7a8b."""
    return f"{day}~{item_id}"


def track_items(
    previous: pd.DataFrame | None,
    day: str,
    items: pd.DataFrame,
    vectors: np.ndarray,
    *,
    match_threshold: float,
    cohesion_threshold: float,
    lookback_days: int,
    kept: dict[str, str] | None = None,
) -> Tracked:
    """Continue the stories of `previous` (the state of an earlier day) with the day's items.

    Args:
        previous: The state an earlier day left (STATE_COLUMNS), or None on the first day.
        day: The day, YYYY-MM-DD, later than every day in `previous`.
        items: The day's items: item_id, cluster_id (NOISE for an unclustered item) and headline.
        vectors: The items' embeddings, row for row.
        match_threshold: Least cosine similarity of an item to a story's centroid for the item to continue it.
        cohesion_threshold: Least cosine similarity of a cluster's item to the centroid of the cluster's items that
            continue nothing, for it to start the cluster's story with them; below it, it starts a candidate.
        lookback_days: Days a story may go unseen and still continue.
        kept: item_id -> the story it counts in, for items of a day tracked before from the same state (a day that
            holds still: readers have seen their ids). They keep their stories; the other items are tracked as
            usual, and a new item of a cluster may join the story its kept items began.
    """
    state = _empty_state() if previous is None else upgrade_state(previous)
    if len(state) and (state["last_seen"] >= day).any():
        raise ValueError(f"the state holds stories seen on or after {day}: pass the state of an earlier day")
    if items["item_id"].duplicated().any():
        raise ValueError("the day's items repeat an item_id")
    order = np.argsort(items["item_id"].to_numpy(), kind="stable")
    items = items.iloc[order].reset_index(drop=True)
    vectors = unit_rows(np.asarray(vectors, dtype=np.float32)[order])
    gap = np.array([_days_between(last, day) for last in state["last_seen"]], dtype=np.int64)
    live = state[gap <= lookback_days].sort_values("story_id").reset_index(drop=True)

    tracked_as, similarity = _continue(vectors, live, match_threshold, items["item_id"], kept or {})
    _start(items, vectors, tracked_as, day, cohesion_threshold)
    state = _next_state(state, items, vectors, tracked_as, day, lookback_days)
    shown = set(state.loc[state["items"] >= SHOWN_FROM, "story_id"])
    per_item = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "cluster_id": items["cluster_id"].astype("int64"),
            "story_id": pd.Series([s if s in shown else None for s in tracked_as], dtype="str"),
            "tracked_as": pd.Series(tracked_as, dtype="str"),
            "similarity": pd.Series(similarity, dtype="float64"),
        },
        columns=ITEM_COLUMNS,
    )
    return Tracked(_cluster_rows(per_item, live, state), per_item, state)


def _continue(
    vectors: np.ndarray, live: pd.DataFrame, match_threshold: float, item_ids: pd.Series, kept: dict
) -> tuple[list, list]:
    """Each item's story among `live` (None when none is close enough; a kept item's own) and its similarity to it."""
    tracked_as, similarity = [None] * len(vectors), [np.nan] * len(vectors)
    if len(vectors) and len(live):
        centroids, stories = unit_rows(np.stack(live["centroid"].to_numpy())), live["story_id"].tolist()
        column_of = {story: n for n, story in enumerate(stories)}
        for start in range(0, len(vectors), SCORE_ROWS):  # in blocks: items x stories may not fit in memory at once
            scores = vectors[start : start + SCORE_ROWS] @ centroids.T
            best = scores.argmax(axis=1)  # ties go to the lower story id: `live` is sorted
            for offset, column in enumerate(best):
                row = start + offset
                if item_ids.iat[row] in kept:  # its story stays (below), and its similarity to it if it continued one
                    column = column_of.get(kept[item_ids.iat[row]])
                elif scores[offset, column] < match_threshold:
                    column = None
                if column is not None:
                    tracked_as[row], similarity[row] = stories[column], round(float(scores[offset, column]), 4)
    for row, item_id in enumerate(item_ids):  # a kept item's story may be one begun that day: not among `live`
        tracked_as[row] = kept.get(item_id, tracked_as[row])
    return tracked_as, similarity


def _start(items: pd.DataFrame, vectors: np.ndarray, tracked_as: list, day: str, cohesion_threshold: float) -> None:
    """New stories, in place: a cluster's cohesive items that continue nothing start its story together, every other
    such item a candidate of its own. On a day that holds still, the cluster's story may already be there (begun by
    its kept items): its new items are measured against the kept ones, which stay as they are."""
    clusters = items["cluster_id"].to_numpy()
    for cluster_id in sorted(set(clusters.tolist()) - {NOISE}):
        own = story_id(day, cluster_id)
        members = np.flatnonzero(clusters == cluster_id)
        rows = [r for r in members if tracked_as[r] is None]
        begun = [r for r in members if tracked_as[r] == own]  # only a kept item can hold today's own story yet
        if rows:
            centroid = unit_rows(vectors[begun or rows].mean(axis=0, keepdims=True))[0]
            for r in rows:
                if float(vectors[r] @ centroid) >= cohesion_threshold:
                    tracked_as[r] = own
    for r, item_id in enumerate(items["item_id"]):
        if tracked_as[r] is None:
            tracked_as[r] = candidate_id(day, item_id)


def _next_state(
    state: pd.DataFrame, items: pd.DataFrame, vectors: np.ndarray, tracked_as: list, day: str, lookback_days: int
) -> pd.DataFrame:
    """The state after `day`: every story with today's items added, and the earlier ones still kept."""
    by_story = pd.Series(range(len(tracked_as))).groupby(pd.Series(tracked_as)).apply(list).to_dict()
    before = state.set_index("story_id")
    rows = []
    for story in sorted(by_story):
        members = by_story[story]
        old = before.loc[story] if story in before.index else None
        count = 0 if old is None else int(old["items"])
        total = vectors[members].sum(axis=0) + (0 if old is None else np.asarray(old["centroid"]) * count)
        centroid = (total / (count + len(members))).astype(np.float32)
        # The title: the headline of today's item nearest the story's centroid (ties to the lower item id).
        nearest = members[int(np.argmax(vectors[members] @ unit_rows(centroid[None])[0]))]
        counts = {} if old is None else json.loads(old["counts"])
        counts[day] = len(members)
        rows.append(
            {
                "story_id": story,
                "first_seen": day if old is None else old["first_seen"],
                "last_seen": day,
                "days_active": 1 if old is None else int(old["days_active"]) + 1,
                "items": count + len(members),
                "last_size": len(members),
                "title": str(items["headline"].iat[nearest]),
                "counts": counts,
                "centroid": centroid,
            }
        )
    # Earlier stories stay while they may continue (a candidate) or while the stories tab lists them (a shown one).
    retain = max(KEEP_DAYS, lookback_days + 1)
    waiting = state[~state["story_id"].isin(by_story)]
    gap = np.array([_days_between(last, day) for last in waiting["last_seen"]], dtype=np.int64)
    keep = np.where(waiting["items"].to_numpy() >= SHOWN_FROM, retain, lookback_days)
    waiting = waiting[gap < keep]
    out = pd.concat([frame for frame in (pd.DataFrame(rows), waiting) if len(frame)] or [_empty_state()])
    first_kept = (dt.date.fromisoformat(day) - dt.timedelta(days=retain - 1)).isoformat()
    out["counts"] = [_recent(c if isinstance(c, dict) else json.loads(c), first_kept) for c in out["counts"]]
    out = out.sort_values("story_id").reset_index(drop=True)
    return out.astype({"days_active": "int64", "items": "int64", "last_size": "int64"})[STATE_COLUMNS]


def _recent(counts: dict[str, int], first_kept: str) -> str:
    """A story's items per day from `first_kept` on, as JSON, with the latest day before it kept as well: the
    trend of a story's first day in a window compares with the day it was seen before."""
    days = sorted(counts)
    older = [d for d in days if d < first_kept][-1:]
    return json.dumps({d: counts[d] for d in older + [d for d in days if d >= first_kept]})


def _cluster_rows(per_item: pd.DataFrame, live: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """One row per cluster: the story most of its items are in (ties to the lower story id)."""
    before, after = live.set_index("story_id"), state.set_index("story_id")
    rows = []
    for cluster_id, members in per_item[per_item["cluster_id"] != NOISE].groupby("cluster_id", sort=True):
        votes = members["tracked_as"].value_counts()
        story = min(votes.index[votes == votes.max()])
        now, old = after.loc[story], before.loc[story] if story in before.index else None
        continued = members.loc[members["tracked_as"] == story, "similarity"].dropna()
        rows.append(
            {
                "cluster_id": int(cluster_id),
                "story_id": story if now["items"] >= SHOWN_FROM else None,
                "tracked_as": story,
                "first_seen": now["first_seen"],
                "days_active": int(now["days_active"]),
                "trend": trend(int(now["last_size"]), None if old is None else int(old["last_size"])),
                "size": len(members),
                "story_size": int(now["last_size"]),
                "previous_size": None if old is None else int(old["last_size"]),
                "previous_day": None if old is None else old["last_seen"],
                "similarity": round(float(continued.mean()), 4) if len(continued) else None,
            }
        )
    return pd.DataFrame(rows, columns=STORY_COLUMNS).astype(
        {
            "story_id": "str",
            "tracked_as": "str",
            "first_seen": "str",
            "previous_day": "str",
            "cluster_id": "int64",
            "days_active": "int64",
            "size": "int64",
            "story_size": "int64",
            "previous_size": "Int64",
            "similarity": "float64",
        }
    )


def trend(size: int, previous: int | None) -> str:
    """A story's trend from its items today and on the day it was seen before (None: first seen today)."""
    if previous is None:
        return "new"
    return "growing" if size > previous else "shrinking" if size < previous else "steady"


def daily_counts(state: pd.DataFrame, first_day: str, last_day: str) -> pd.DataFrame:
    """The items of each shown story on each day from `first_day` to `last_day` it was seen: story_id, day, items."""
    state = upgrade_state(state)
    rows = [
        (story, day, n)
        for story, counts in zip(state["story_id"], state["counts"], strict=True)
        for day, n in json.loads(counts).items()
        if first_day <= day <= last_day
    ]
    shown = set(state.loc[state["items"] >= SHOWN_FROM, "story_id"])
    frame = pd.DataFrame(rows, columns=["story_id", "day", "items"]).astype({"items": "int64"})
    return frame[frame["story_id"].isin(shown)].sort_values(["day", "story_id"]).reset_index(drop=True)


STORY_TAB_COLUMNS = ["story_id", "title", "first_seen", "last_seen", "days_active", "items_per_day", "trend"]


def story_tab(state: pd.DataFrame, first_day: str, last_day: str) -> pd.DataFrame:
    """The stories tab: one row per shown story with items between `first_day` and `last_day`, latest first.

    Columns (STORY_TAB_COLUMNS): story_id, title, first_seen, last_seen, days_active, items_per_day (the items of
    each day from its first day in the window to its last, e.g. `3,5,0,2`) and trend (its last day in the window
    against the day it was seen before, in the window or not)."""
    state = upgrade_state(state)
    history = daily_counts(state, first_day, last_day)
    state = state.set_index("story_id")
    rows = []
    for story, counts in history.groupby("story_id", sort=True):
        first, last = counts["day"].iloc[0], counts["day"].iloc[-1]
        by_day = dict(zip(counts["day"], counts["items"], strict=True))
        span = [
            (dt.date.fromisoformat(first) + dt.timedelta(days=n)).isoformat()
            for n in range(_days_between(first, last) + 1)
        ]
        earlier = [n for d, n in sorted(json.loads(state.at[story, "counts"]).items()) if d < last]
        rows.append(
            {
                "story_id": story,
                "title": state.at[story, "title"],
                "first_seen": state.at[story, "first_seen"],
                "last_seen": last,
                "days_active": int(state.at[story, "days_active"]),
                "items_per_day": ",".join(str(by_day.get(d, 0)) for d in span),
                "trend": trend(by_day[last], earlier[-1] if earlier else None),
            }
        )
    frame = pd.DataFrame(rows, columns=STORY_TAB_COLUMNS)
    return frame.sort_values(["last_seen", "story_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def upgrade_state(state: pd.DataFrame) -> pd.DataFrame:
    """A state in STATE_COLUMNS, also one written before stories were tracked by item (no items, title or counts:
    each story then counts its days' last size, and its latest day's)."""
    state = state.copy()
    if "items" not in state:
        state["items"] = (state["days_active"] * state["last_size"]).astype("int64")
    if "title" not in state:
        state["title"] = ""
    if "counts" not in state:
        state["counts"] = [json.dumps({d: int(n)}) for d, n in zip(state["last_seen"], state["last_size"], strict=True)]
    return state[STATE_COLUMNS]


def _days_between(earlier: str, later: str) -> int:
    return (dt.date.fromisoformat(later) - dt.date.fromisoformat(earlier)).days


def _empty_state() -> pd.DataFrame:
    objects = ("story_id", "first_seen", "last_seen", "title", "counts", "centroid")
    return pd.DataFrame({c: pd.Series(dtype="object" if c in objects else "int64") for c in STATE_COLUMNS})
