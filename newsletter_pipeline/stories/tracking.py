"""Stories across days: each day's clusters matched to the stories of earlier days by centroid similarity.

A story is a chain of clusters, at most one a day. Its id names the day and cluster where it was first seen
(`2026-11-16#3`), so re-running any day on the same clusters and the same earlier state gives the same ids.
The state after a day holds every story that may still continue: its centroid (the mean of its daily cluster
centroids), when it was first and last seen, on how many days, and its last size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import unit_centroids

# Today's story of each cluster, one row per cluster.
STORY_COLUMNS = [
    "cluster_id",
    "story_id",
    "first_seen",
    "days_active",
    "trend",
    "size",
    "previous_size",
    "previous_day",
    "similarity",
]
# The state after a day, one row per story that may still continue; `centroid` is a unit vector.
STATE_COLUMNS = ["story_id", "first_seen", "last_seen", "days_active", "last_size", "last_cluster_id", "centroid"]
TRENDS = ("new", "growing", "shrinking", "steady")


@dataclass(frozen=True)
class Tracked:
    """A day's stories (STORY_COLUMNS, one row per cluster) and the state after it (STATE_COLUMNS)."""

    stories: pd.DataFrame
    state: pd.DataFrame


def story_id(day: str, cluster_id: int) -> str:
    """The id of a story first seen as cluster `cluster_id` of `day`: 2026-11-16#3."""
    return f"{day}#{int(cluster_id)}"


def cluster_centroids(assignments: pd.DataFrame, item_ids: pd.Series, vectors: np.ndarray) -> pd.DataFrame:
    """One row per cluster (noise left out): cluster_id, size and centroid, the normalized mean of its members' vectors.

    `assignments` holds item_id and cluster_id; `vectors` are the embeddings of `item_ids`, row for row."""
    rows = pd.Index(item_ids).get_indexer(assignments["item_id"])
    if (rows < 0).any():
        missing = assignments["item_id"][rows < 0].head(3).tolist()
        raise ValueError(f"{int((rows < 0).sum())} clustered items have no embedding (e.g. {missing})")
    labels = assignments["cluster_id"].to_numpy()
    ids, centroids = unit_centroids(vectors[rows], labels)
    out = [
        {"cluster_id": int(c), "size": int((labels == c).sum()), "centroid": centroid.astype(np.float32)}
        for c, centroid in zip(ids, centroids, strict=True)
    ]
    return pd.DataFrame(out, columns=["cluster_id", "size", "centroid"])


def track_stories(
    previous: pd.DataFrame | None, day: str, today: pd.DataFrame, *, match_threshold: float, lookback_days: int
) -> Tracked:
    """Match today's clusters (cluster_id, size, centroid) to the stories of `previous`, the state of an earlier day.

    One-to-one and greedy: the most similar pair at or above the threshold first, ties to the lower cluster id, then
    the lower story id. A story last seen more than `lookback_days` before `day` is dropped; a cluster that matches
    nothing starts a story. A day without clusters carries the state forward, and its stories age."""
    state = _empty_state() if previous is None else previous[STATE_COLUMNS]
    if len(state) and (state["last_seen"] >= day).any():
        raise ValueError(f"the state holds stories seen on or after {day}: pass the state of an earlier day")
    if today["cluster_id"].duplicated().any():
        raise ValueError("today's clusters repeat a cluster_id")
    today = today.sort_values("cluster_id").reset_index(drop=True)
    gap = np.array([_days_between(last, day) for last in state["last_seen"]], dtype=np.int64)
    candidates = state[gap <= lookback_days].sort_values("story_id").reset_index(drop=True)

    matches = _match(today, candidates, match_threshold)
    stories = _story_rows(today, candidates, matches, day)
    return Tracked(stories, _next_state(today, candidates, matches, stories, day, lookback_days))


def _match(today: pd.DataFrame, candidates: pd.DataFrame, match_threshold: float) -> dict[int, tuple[int, float]]:
    """Today's row -> (candidate row, similarity): one-to-one, the most similar pair first."""
    matches: dict[int, tuple[int, float]] = {}
    if len(today) and len(candidates):
        scores = np.stack(today["centroid"].to_numpy()) @ np.stack(candidates["centroid"].to_numpy()).T
        pairs = sorted((-scores[i, j], i, j) for i, j in zip(*np.nonzero(scores >= match_threshold), strict=True))
        taken = set()
        for negative, i, j in pairs:
            if i not in matches and j not in taken:
                matches[int(i)] = (int(j), float(-negative))
                taken.add(j)
    return matches


def _story_rows(today: pd.DataFrame, candidates: pd.DataFrame, matches: dict, day: str) -> pd.DataFrame:
    """One row per cluster of today: the story it continues, or a new one."""
    rows = []
    for i, cluster in enumerate(today.itertuples(index=False)):
        if i in matches:
            j, similarity = matches[i]
            story = candidates.iloc[j]
            size, before = int(cluster.size), int(story["last_size"])
            trend = "growing" if size > before else "shrinking" if size < before else "steady"
            rows.append(
                {
                    "cluster_id": int(cluster.cluster_id),
                    "story_id": story["story_id"],
                    "first_seen": story["first_seen"],
                    "days_active": int(story["days_active"]) + 1,
                    "trend": trend,
                    "size": size,
                    "previous_size": before,
                    "previous_day": story["last_seen"],
                    "similarity": round(similarity, 4),
                }
            )
        else:
            rows.append(
                {
                    "cluster_id": int(cluster.cluster_id),
                    "story_id": story_id(day, cluster.cluster_id),
                    "first_seen": day,
                    "days_active": 1,
                    "trend": "new",
                    "size": int(cluster.size),
                    "previous_size": None,
                    "previous_day": None,
                    "similarity": None,
                }
            )
    return pd.DataFrame(rows, columns=STORY_COLUMNS).astype(
        {
            "cluster_id": "int64",
            "days_active": "int64",
            "size": "int64",
            "previous_size": "Int64",
            "similarity": "float64",
        }
    )


def _next_state(
    today: pd.DataFrame,
    candidates: pd.DataFrame,
    matches: dict,
    stories: pd.DataFrame,
    day: str,
    lookback_days: int,
) -> pd.DataFrame:
    """The state after `day`: today's stories, and the unmatched ones that may still continue tomorrow."""
    # A story's centroid is the mean of its daily centroids, not the latest one: a chain of clusters each a little
    # like the one before cannot drift from one story to another (on real news, latest-centroid chains wandered
    # from celebrity news to politics over two weeks).
    anchors = []
    for i, centroid in enumerate(today["centroid"]):
        if i in matches:
            story = candidates.iloc[matches[i][0]]
            centroid = _unit(story["centroid"] * int(story["days_active"]) + centroid)
        anchors.append(centroid)
    seen = pd.DataFrame(
        {
            "story_id": stories["story_id"],
            "first_seen": stories["first_seen"],
            "last_seen": day,
            "days_active": stories["days_active"],
            "last_size": stories["size"],
            "last_cluster_id": stories["cluster_id"],
            "centroid": anchors,
        },
        columns=STATE_COLUMNS,
    )
    # Unmatched stories stay while they may still continue tomorrow.
    waiting = candidates.drop(index=[j for j, _ in matches.values()])
    waiting = waiting[[_days_between(last, day) < lookback_days for last in waiting["last_seen"]]]
    state = pd.concat([frame for frame in (seen, waiting) if len(frame)] or [_empty_state()], ignore_index=True)
    state = (
        state.sort_values("story_id")
        .reset_index(drop=True)
        .astype({"days_active": "int64", "last_size": "int64", "last_cluster_id": "int64"})
    )
    return state[STATE_COLUMNS]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def _days_between(earlier: str, later: str) -> int:
    return (dt.date.fromisoformat(later) - dt.date.fromisoformat(earlier)).days


def _empty_state() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="object" if c in ("story_id", "first_seen", "last_seen", "centroid") else "int64")
            for c in STATE_COLUMNS
        }
    )
