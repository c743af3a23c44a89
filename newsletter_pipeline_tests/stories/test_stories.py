"""Stories across days: items continuing earlier days' stories, the stories tab, and the `stories` asset."""

import base64
import io
import json
import re

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.clustering.label import SUMMARY_COLUMNS
from newsletter_pipeline.defs.params import ClusterParams, StoryParams
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.publishing import export
from newsletter_pipeline.stories import timeline
from newsletter_pipeline.stories.tracking import (
    ITEM_COLUMNS,
    STATE_COLUMNS,
    STORY_COLUMNS,
    STORY_TAB_COLUMNS,
    daily_counts,
    story_tab,
    track_items,
    upgrade_state,
)
from newsletter_pipeline_tests.conftest import ASSETS

PARAMS = StoryParams().model_dump()  # an item continues a story at 0.55, cohesion 0.65, look-back 7 days


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# Orthogonal directions: unrelated stories. unit(1, t, 0) is at 1/sqrt(1 + t^2) from STORM.
STORM, CHIP, OTHER = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)


def day_items(day: str, *items: tuple[int, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """A day's items as track_items takes them: (cluster_id, vector) each; ids and headlines made from the day."""
    frame = pd.DataFrame(
        {
            "item_id": [f"{day[-2:]}{n:02d}aaaaaa" for n in range(len(items))],
            "cluster_id": [c for c, _ in items],
            "headline": [f"headline {n} of {day}" for n in range(len(items))],
        }
    )
    return frame, np.stack([v for _, v in items]) if items else np.zeros((0, 3), dtype=np.float32)


def track(state, day: str, *items: tuple[int, np.ndarray], **params):
    frame, vectors = day_items(day, *items)
    return track_items(state, day, frame, vectors, **{**PARAMS, **params})


def stories_of(tracked) -> list:
    """Each item's story id as readers see it, None for a blank."""
    return [None if pd.isna(s) else s for s in tracked.items["story_id"]]


def test_the_first_day_starts_a_story_per_cluster_and_hides_single_items():
    tracked = track(None, "2026-11-16", (0, STORM), (0, STORM), (1, CHIP), (1, CHIP), (NOISE, OTHER))
    assert list(tracked.stories.columns) == STORY_COLUMNS and list(tracked.items.columns) == ITEM_COLUMNS
    assert list(tracked.state.columns) == STATE_COLUMNS
    assert stories_of(tracked) == ["2026-11-16#0", "2026-11-16#0", "2026-11-16#1", "2026-11-16#1", None]
    # The unclustered item starts a candidate: tracked, but its id is not shown until a second item joins it.
    assert tracked.items["tracked_as"].iloc[4] == "2026-11-16~1604aaaaaa"
    assert tracked.stories[["cluster_id", "story_id", "trend", "size", "days_active"]].values.tolist() == [
        [0, "2026-11-16#0", "new", 2, 1],
        [1, "2026-11-16#1", "new", 2, 1],
    ]
    assert tracked.items["similarity"].isna().all()  # nothing continued
    state = tracked.state.set_index("story_id")
    assert state.loc["2026-11-16#0", ["items", "last_size", "days_active"]].tolist() == [2, 2, 1]
    assert json.loads(state.loc["2026-11-16#0", "counts"]) == {"2026-11-16": 2}


def test_one_item_a_day_follows_a_story_over_three_days():
    """The issue's case: a story that appears once a day, as a single unclustered item, is followed."""
    first = track(None, "2026-11-16", (0, CHIP), (0, CHIP), (NOISE, STORM))
    candidate = first.items["tracked_as"].iloc[2]
    assert stories_of(first)[2] is None
    second = track(first.state, "2026-11-17", (NOISE, unit(1, 0.3, 0)), (0, OTHER), (0, OTHER))
    # The second item makes it a story: its id is shown from that day on.
    assert second.items["story_id"].iloc[0] == candidate and second.items["similarity"].iloc[0] > 0.9
    third = track(second.state, "2026-11-18", (NOISE, unit(1, -0.3, 0)))
    assert third.items["story_id"].tolist() == [candidate]
    state = third.state.set_index("story_id")
    assert state.loc[candidate, ["first_seen", "last_seen", "days_active", "items"]].tolist() == [
        "2026-11-16",
        "2026-11-18",
        3,
        3,
    ]
    assert json.loads(state.loc[candidate, "counts"]) == {"2026-11-16": 1, "2026-11-17": 1, "2026-11-18": 1}


def test_items_of_a_cluster_may_continue_different_stories():
    first = track(None, "2026-11-16", (0, STORM), (0, STORM), (1, CHIP), (1, CHIP))
    # Today's cluster 5 holds a storm item and a chip item (a topic cluster): each continues its own story.
    second = track(first.state, "2026-11-17", (5, unit(1, 0.2, 0)), (5, unit(0.2, 1, 0)), (5, unit(1, 0.1, 0)))
    assert stories_of(second) == ["2026-11-16#0", "2026-11-16#1", "2026-11-16#0"]
    # The cluster's row names the story most of its items are in.
    row = second.stories.iloc[0]
    assert (row["cluster_id"], row["story_id"], row["size"], row["story_size"]) == (5, "2026-11-16#0", 3, 2)
    assert (row["trend"], row["previous_size"], row["previous_day"], row["days_active"]) == (
        "steady",
        2,
        "2026-11-16",
        2,
    )


def test_the_threshold_decides():
    first = track(None, "2026-11-16", (0, STORM), (0, STORM))
    # cos = 1/sqrt(1 + t^2): t = 1.5 gives 0.5547, t = 1.52 gives 0.5497
    assert track(first.state, "2026-11-17", (NOISE, unit(1, 1.5, 0))).items["tracked_as"].iloc[0] == "2026-11-16#0"
    assert track(first.state, "2026-11-17", (NOISE, unit(1, 1.52, 0))).items["tracked_as"].iloc[0] != "2026-11-16#0"
    assert (
        track(first.state, "2026-11-17", (NOISE, unit(1, 1.5, 0)), match_threshold=0.56).items["tracked_as"].iloc[0]
        != "2026-11-16#0"
    )


def test_a_loose_cluster_item_starts_a_story_of_its_own():
    # Cluster 2: three close items and one far from their centroid (below the cohesion threshold).
    tracked = track(None, "2026-11-16", (2, STORM), (2, STORM), (2, unit(1, 0.1, 0)), (2, unit(0.2, 1, 0)))
    assert stories_of(tracked)[:3] == ["2026-11-16#2"] * 3
    assert tracked.items["tracked_as"].iloc[3] == "2026-11-16~1603aaaaaa" and stories_of(tracked)[3] is None
    everything = track(
        None, "2026-11-16", (2, STORM), (2, STORM), (2, unit(1, 0.1, 0)), (2, unit(0.2, 1, 0)), cohesion_threshold=0
    )
    assert stories_of(everything) == ["2026-11-16#2"] * 4


def test_a_story_unseen_for_longer_than_the_look_back_no_longer_continues():
    state = track(None, "2026-11-10", (0, STORM), (0, STORM), lookback_days=3).state
    assert track(state, "2026-11-13", (NOISE, STORM), lookback_days=3).items["story_id"].tolist() == ["2026-11-10#0"]
    later = track(state, "2026-11-14", (NOISE, STORM), lookback_days=3)
    assert later.items["tracked_as"].tolist() == ["2026-11-14~1400aaaaaa"]
    # A shown story stays in the state for the stories tab (KEEP_DAYS), a candidate only while it may continue.
    assert "2026-11-10#0" in set(later.state["story_id"])
    candidate = track(None, "2026-11-10", (NOISE, CHIP), lookback_days=3).state
    for day in ("2026-11-11", "2026-11-12", "2026-11-13"):
        candidate = track(candidate, day, lookback_days=3).state
    assert candidate.empty


def test_the_same_input_gives_the_same_stories_in_any_row_order():
    first = track(None, "2026-11-16", (0, STORM), (0, STORM), (1, CHIP), (1, CHIP), (NOISE, OTHER))
    frame, vectors = day_items("2026-11-17", (3, STORM), (3, unit(1, 0.1, 0)), (NOISE, unit(0, 0.2, 1)), (4, CHIP))
    once = track_items(first.state, "2026-11-17", frame, vectors, **PARAMS)
    order = [3, 1, 0, 2]
    shuffled = track_items(first.state.iloc[::-1], "2026-11-17", frame.iloc[order], vectors[order], **PARAMS)
    for a, b in [(once.items, shuffled.items), (once.stories, shuffled.stories), (once.state, shuffled.state)]:
        pd.testing.assert_frame_equal(
            a.drop(columns="centroid", errors="ignore"), b.drop(columns="centroid", errors="ignore")
        )
    assert once.items["story_id"].iloc[2] == "2026-11-16~1604aaaaaa"  # the candidate of the 16th, shown now


def test_kept_items_keep_their_stories_and_new_ones_are_tracked_around_them():
    """A day that holds still: its earlier items keep the stories readers saw, whatever a new item would change."""
    first = track(None, "2026-11-16", (0, STORM), (0, STORM))
    items = [(4, unit(0, 1, 0.2)), (4, unit(0, 1, -0.2)), (4, unit(0, 1, 1)), (NOISE, unit(1, 0.1, 0))]
    published = track(first.state, "2026-11-17", *items[:3])
    assert [None if pd.isna(s) else s for s in published.items["story_id"]] == ["2026-11-17#4"] * 3
    kept = dict(zip(published.items["item_id"], published.items["tracked_as"], strict=True))
    # A late item far from the cluster's centroid would pull it away: without `kept`, the third item is cut off.
    late = (4, unit(0, 0.3, -1))  # the third item's cosine to the centroid drops from 0.86 to 0.65
    frame, vectors = day_items("2026-11-17", *items, late)
    afresh = track_items(first.state, "2026-11-17", frame, vectors, **PARAMS)
    held = track_items(first.state, "2026-11-17", frame, vectors, **PARAMS, kept=kept)
    assert afresh.items["tracked_as"].iloc[2] != "2026-11-17#4"
    assert held.items["tracked_as"].tolist()[:3] == ["2026-11-17#4"] * 3
    # The new items: the noise one continues the storm story, the loose one starts a candidate of its own.
    assert held.items["tracked_as"].iloc[3] == "2026-11-16#0" and held.items["similarity"].iloc[3] > 0.99
    assert held.items["tracked_as"].iloc[4] == "2026-11-17~1704aaaaaa"
    # Nothing new: keeping changes nothing.
    again = track(first.state, "2026-11-17", *items[:3], kept=kept)
    pd.testing.assert_frame_equal(again.items, published.items)


def test_a_state_of_the_same_or_a_later_day_is_refused():
    state = track(None, "2026-11-16", (0, STORM), (0, STORM)).state
    with pytest.raises(ValueError, match="on or after 2026-11-16"):
        track(state, "2026-11-16", (0, STORM))


def test_a_story_from_last_month_keeps_its_trend_and_a_long_look_back_keeps_shown_stories():
    # Seen on 09-28 (2 items) and 10-02 (1), then quiet through October: the October tab still compares 10-02
    # with 09-28, although 09-28 is more than KEEP_DAYS before the month's last state.
    state = track(None, "2026-09-28", (0, STORM), (0, STORM)).state
    state = track(state, "2026-10-02", (NOISE, STORM)).state
    for day in ("2026-10-20", "2026-10-31"):
        state = track(state, day, (NOISE, CHIP)).state
    row = story_tab(state, "2026-10-01", "2026-10-31").set_index("story_id").loc["2026-09-28#0"]
    assert (row["items_per_day"], row["trend"], row["days_active"]) == ("1", "shrinking", 2)
    # A look-back longer than the tab's month: a shown story may still continue after 40 days.
    state = track(None, "2026-10-01", (0, STORM), (0, STORM), lookback_days=40).state
    state = track(state, "2026-11-02", (NOISE, CHIP), lookback_days=40).state
    later = track(state, "2026-11-05", (NOISE, STORM), lookback_days=40)
    assert later.items["story_id"].tolist() == ["2026-10-01#0"]


def test_ids_are_text_columns_whatever_the_day():
    """Blank ids stay text in Parquet: a day of candidates only, or of no items, writes the same column types."""
    for tracked in (track(None, "2026-11-16", (NOISE, STORM)), track(None, "2026-11-16")):
        for table, columns in ((tracked.items, ["story_id", "tracked_as"]), (tracked.stories, ["story_id"])):
            assert all(pd.api.types.is_string_dtype(table[c]) for c in columns)


def test_a_candidate_listed_in_the_month_tab_gets_its_id_in_earlier_rows():
    first = track(None, "2026-11-16", (0, CHIP), (0, CHIP), (NOISE, STORM))
    second = track(first.state, "2026-11-17", (NOISE, STORM))
    items = pd.DataFrame(
        {
            "item_id": first.items["item_id"],
            "source_id": None,
            "published_at": pd.to_datetime(["2026-11-16T08:00:00Z"] * 3, utc=True),
            "source": "Brief",
            "headline": ["a", "b", "c"],
            "link": ["https://x.test/a", "https://x.test/b", "https://x.test/c"],
        }
    )
    assignments = first.items[["item_id", "cluster_id"]].assign(probability=1.0)
    summaries = pd.DataFrame([{"cluster_id": 0, "label": "chip", "size": 2}]).reindex(columns=SUMMARY_COLUMNS)
    candidate = first.items["tracked_as"].iloc[2]
    assert pd.isna(first.items["story_id"].iloc[2])  # what the 16th's stories say
    tab = story_tab(second.state, "2026-11-01", "2026-11-30")
    rows = export.sheet_tables("2026-11-16", items, assignments, summaries, first.stories, first.items, tab)
    # Exported again once the story has its second item: the 16th's row shows it.
    shown = dict(zip(rows["items"]["item_id"], rows["items"]["story_id"], strict=True))
    assert shown[first.items["item_id"].iloc[2]] == candidate and candidate in set(tab["story_id"])
    before = export.sheet_tables("2026-11-16", items, assignments, summaries, first.stories, first.items)
    assert pd.isna(dict(zip(before["items"]["item_id"], before["items"]["story_id"]))[first.items["item_id"].iloc[2]])


def test_a_state_written_before_item_tracking_still_continues():
    """A story state written by the cluster-level tracking (no items, title or counts) is read as it is."""
    old = pd.DataFrame(
        {
            "story_id": ["2026-11-15#0"],
            "first_seen": ["2026-11-14"],
            "last_seen": ["2026-11-15"],
            "days_active": [2],
            "last_size": [3],
            "last_cluster_id": [0],
            "centroid": [STORM],
        }
    )
    assert upgrade_state(old)[["items", "title", "counts"]].values.tolist() == [[6, "", '{"2026-11-15": 3}']]
    tracked = track(old, "2026-11-16", (NOISE, STORM))
    assert tracked.items["story_id"].tolist() == ["2026-11-15#0"]
    assert tracked.state["items"].tolist() == [7]


def test_the_stories_tab_lists_the_month_story_by_story():
    state = track(None, "2026-11-02", (0, STORM), (0, STORM), (0, STORM), (NOISE, CHIP)).state
    state = track(state, "2026-11-03", (0, STORM), (0, unit(1, 0.1, 0)), (1, OTHER), (1, OTHER)).state
    state = track(state, "2026-11-05", (NOISE, unit(1, 0.05, 0)), (NOISE, unit(0.1, 1, 0))).state
    tab = story_tab(state, "2026-11-01", "2026-11-30")
    assert list(tab.columns) == STORY_TAB_COLUMNS
    assert tab.values.tolist() == [
        # latest first; the title is the headline of the latest day's item nearest the story's centroid
        ["2026-11-02#0", "headline 0 of 2026-11-05", "2026-11-02", "2026-11-05", 3, "3,2,0,1", "shrinking"],
        ["2026-11-02~0203aaaaaa", "headline 1 of 2026-11-05", "2026-11-02", "2026-11-05", 2, "1,0,0,1", "steady"],
        ["2026-11-03#1", "headline 2 of 2026-11-03", "2026-11-03", "2026-11-03", 1, "2", "new"],
    ]
    # A window shows only its days; a story's trend still compares with the day it was seen before.
    assert story_tab(state, "2026-11-04", "2026-11-30")["items_per_day"].tolist() == ["1", "1"]
    assert daily_counts(state, "2026-11-03", "2026-11-03").values.tolist() == [
        ["2026-11-02#0", "2026-11-03", 2],
        ["2026-11-03#1", "2026-11-03", 2],
    ]


# --- the asset, on three consecutive days of the sample ---------------------------------------------------------

# 2026-11-18..20: the Norvanta antitrust story runs on all three days; the Brightmart data breach begins on the 19th.
DAYS = ["2026-11-18", "2026-11-19", "2026-11-20"]


def story_of(workspace, day: str, word: str) -> dict:
    """The story row of the cluster holding most of the day's headlines that name `word`."""
    items = workspace.store.read("raw_items", day).merge(workspace.store.read("clusters", day), on="item_id")
    named = items[items["headline"].str.contains(word) & (items["cluster_id"] != NOISE)]
    assert len(named) >= 3, f"{day}: too few clustered headlines name {word}"
    cluster_id = named["cluster_id"].value_counts().sort_index(kind="stable").idxmax()
    stories = workspace.store.read("stories", day)
    return stories[stories["cluster_id"] == cluster_id].iloc[0].to_dict()


def logs_of(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))


def timeline_image(markdown: str) -> Image.Image:
    """The image of a `![alt](data:image/png;base64,...)` metadata entry, decoded."""
    data = re.fullmatch(r"!\[stories up to [0-9-]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_the_timeline_keeps_a_row_per_story_and_a_column_per_day():
    days = ["2026-11-16", "2026-11-17", "2026-11-18"]
    state = track(None, "2026-11-16", (0, STORM), (0, STORM), (0, STORM), (1, CHIP), (1, CHIP)).state
    state = track(state, "2026-11-18", (NOISE, STORM), (2, OTHER), (2, OTHER)).state
    history = daily_counts(state, days[0], days[-1])
    assert history.to_dict("records") == [
        {"story_id": "2026-11-16#0", "day": "2026-11-16", "items": 3},
        {"story_id": "2026-11-16#1", "day": "2026-11-16", "items": 2},
        {"story_id": "2026-11-16#0", "day": "2026-11-18", "items": 1},
        {"story_id": "2026-11-18#2", "day": "2026-11-18", "items": 2},
    ]
    image = Image.open(io.BytesIO(timeline.timeline_png(history, days, "three days")))
    assert image.format == "PNG" and image.size[0] == 7 * 80
    empty = daily_counts(state.iloc[:0], days[0], days[-1])
    assert empty.empty  # a window without stories still draws
    assert Image.open(io.BytesIO(timeline.timeline_png(empty, days, "none"))).format == "PNG"


@pytest.mark.slow
def test_three_days_of_the_sample(workspace, tmp_path):
    workspace.add_sample()
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        result = workspace.materialize(day, instance=instance)
        assert result.success
    stored = {day: workspace.store.read("stories", day) for day in DAYS}
    stored_items = {day: workspace.store.read("story_items", day) for day in DAYS}

    # The last day's timeline: a PNG with a row per story of the look-back window (two of the three days seen here).
    metadata = next(m.metadata for m in result.asset_materializations_for_node("stories"))
    image = timeline_image(metadata["timeline"].value)
    stories_seen = {s for frame in stored.values() for s in frame["story_id"]}
    assert image.format == "PNG" and image.width > 400 and image.height > 0.25 * 80 * len(stories_seen)

    # A story that continues keeps its id, and counts its days.
    chip = [story_of(workspace, day, "Norvanta") for day in DAYS]
    assert {s["story_id"] for s in chip} == {chip[0]["story_id"]} and chip[0]["story_id"].startswith("2026-11-18#")
    assert [s["days_active"] for s in chip] == [1, 2, 3] and {s["first_seen"] for s in chip} == {"2026-11-18"}
    assert chip[0]["trend"] == "new" and all(s["trend"] in ("growing", "shrinking", "steady") for s in chip[1:])
    # A story that begins on a later day is new there, then continues.
    assert workspace.store.read("raw_items", DAYS[0])["headline"].str.contains("Brightmart").sum() == 0
    breach = [story_of(workspace, day, "Brightmart") for day in DAYS[1:]]
    assert (
        breach[0]["trend"] == "new"
        and breach[0]["story_id"].startswith("2026-11-19#")
        and breach[0]["days_active"] == 1
    )
    assert (
        breach[1]["story_id"] == breach[0]["story_id"]
        and breach[1]["days_active"] == 2
        and breach[1]["first_seen"] == "2026-11-19"
    )
    # Every cluster has one story, and no story two clusters.
    for day, frame in stored.items():
        assert sorted(frame["cluster_id"]) == sorted(workspace.store.read("cluster_summaries", day)["cluster_id"])
        assert frame["story_id"].is_unique

    # The sheet shows them.
    clusters_tab = export.read_layout(workspace.workbook)["clusters"]
    header, rows = clusters_tab[0], clusters_tab[1:]
    shown = {(r[header.index("day")], r[header.index("story_id")]): r for r in rows}
    row = shown[(DAYS[2], chip[0]["story_id"])]
    assert (row[header.index("first_seen")], row[header.index("days_active")], row[header.index("trend")]) == (
        "2026-11-18",
        3,
        chip[2]["trend"],
    )

    # Every item has its story row; the items tab shows each item's story, and the month's stories tab lists the
    # stories whole, rewritten from the latest state.
    layout = export.read_layout(workspace.workbook)
    for day in DAYS:
        per_item = workspace.store.read("story_items", day)
        assert sorted(per_item["item_id"]) == sorted(workspace.store.read("raw_items", day)["item_id"])
    header = layout["items"][0]
    shown_items = {row[header.index("item_id")]: row[header.index("story_id")] for row in layout["items"][1:]}
    last = workspace.store.read("story_items", DAYS[2])
    assert {i: "" if pd.isna(s) else s for i, s in zip(last["item_id"], last["story_id"], strict=True)} == {
        i: shown_items[i] for i in last["item_id"]
    }
    assert layout["stories"][0] == export.TABS["stories"] and len(layout["stories"]) > 2
    chip_row = next(row for row in layout["stories"][1:] if row[0] == chip[0]["story_id"])
    assert chip_row[2:5] == ["2026-11-18", "2026-11-20", 3] and len(chip_row[5].split(",")) == 3
    assert "Norvanta" in chip_row[1]

    # Re-running the middle day gives the same ids, and leaves the next day's stories as they were.
    assert workspace.materialize(DAYS[1], instance=instance).success
    pd.testing.assert_frame_equal(workspace.store.read("stories", DAYS[1]), stored[DAYS[1]])
    pd.testing.assert_frame_equal(workspace.store.read("stories", DAYS[2]), stored[DAYS[2]])
    result = workspace.materialize(DAYS[2], instance=instance, selection=["stories"])
    assert "have changed since" not in logs_of(instance, result)

    # The middle day is clustered differently afterwards (new settings, a late item): the next day's stories
    # notice that the state they continue from no longer matches that day's clusters, and say what to do.
    workspace.clustering = ClusteringResource(cluster=ClusterParams(min_cluster_size=10, merge_similarity=None))
    assert workspace.materialize(DAYS[1], instance=instance, selection=["clusters"]).success
    result = workspace.materialize(DAYS[2], instance=instance, selection=["stories"])
    assert f"the story state of {DAYS[1]} was made from clusters that have changed since" in logs_of(instance, result)
    # The day's stories stand (their state did not change), but what it reports about that state is today's.
    (shown,) = [e.materialization.metadata for e in result.get_asset_materialization_events()]
    assert shown["reused"].value is True and shown["state_stale"].value is True
    workspace.clustering = ClusteringResource()
    assert workspace.materialize(DAYS[1], instance=instance, selection=["clusters", "stories"]).success

    # The previous day's state is missing: the day continues from the latest state of the look-back window, and says so.
    (workspace.outputs / "story_state" / f"{DAYS[1]}.parquet").unlink()
    result = workspace.materialize(DAYS[2], instance=instance, selection=["stories"])
    assert "no story state for 2026-11-19; continuing from 2026-11-18's" in logs_of(instance, result)
    assert story_of(workspace, DAYS[2], "Norvanta")["story_id"] == chip[0]["story_id"]
    assert story_of(workspace, DAYS[2], "Norvanta")["days_active"] == 2  # seen on the 18th and the 20th
    assert story_of(workspace, DAYS[2], "Brightmart")["story_id"].startswith("2026-11-20#")

    # A range run (a single-run backfill) computes the days in order and gives the same stories as day-by-day runs.
    workspace.outputs, workspace.workbook = tmp_path / "range_outputs", tmp_path / "range_sheets" / "clusters.xlsx"
    range_instance = dg.DagsterInstance.ephemeral()
    assert workspace.materialize_range(DAYS[0], DAYS[-1], instance=range_instance).success
    assert range_instance.get_materialized_partitions(dg.AssetKey("stories")) == set(DAYS)
    for day in DAYS:
        pd.testing.assert_frame_equal(workspace.store.read("stories", day), stored[day])
        pd.testing.assert_frame_equal(workspace.store.read("story_items", day), stored_items[day])

    # A state made with another embedding model does not compare with today's centroids: every cluster starts a story.
    state_file = workspace.outputs / "story_state" / f"{DAYS[1]}.parquet"
    state = pq.read_table(state_file)
    pq.write_table(state.replace_schema_metadata({**state.schema.metadata, b"model": b"another-model"}), state_file)
    assert workspace.store.read_metadata("story_state", DAYS[1])["model"] == "another-model"
    result = workspace.materialize(DAYS[2], instance=range_instance, selection=["stories"])
    assert "made with model another-model" in logs_of(range_instance, result)
    assert set(workspace.store.read("stories", DAYS[2])["trend"]) == {"new"}

    # Stories made before the per-item table existed: exporting the day names the asset to run again.
    (workspace.outputs / "story_items" / f"{DAYS[0]}.parquet").unlink()
    with pytest.raises(Exception, match="written by the 'stories' asset.*Materialize 'stories' for 2026-11-18 again"):
        workspace.materialize(DAYS[0], instance=range_instance, selection=["sheet_export"])


def test_changed_stories_are_carried_forward_a_day_at_a_time(workspace):
    """A day's stories re-run (a late item, a re-run): the next day's stories and the day's sheet rows are requested
    by the automation conditions, then the day after, and so on; the daily runs themselves request nothing."""
    workspace.add_sample()
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=ASSETS, resources=workspace.resources())
    cursor = None

    def requested() -> set[tuple[str, str]]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        return {
            (key.asset_key.to_user_string(), key.partition_key)
            for evaluated in result.results
            for key in evaluated.true_subset.expensively_compute_asset_partitions()
        }

    assert requested() == set()
    for day in DAYS:
        assert workspace.materialize(day, instance=instance).success
    assert requested() == set()  # each daily run made its day whole

    def run(asset: str, day: str) -> None:
        assert dg.materialize(
            ASSETS, selection=[asset], partition_key=day, resources=workspace.resources(), instance=instance
        ).success

    run("stories", DAYS[0])
    assert requested() == {("stories", DAYS[1]), ("sheet_export", DAYS[0])}
    assert requested() == set()  # requested once
    run("stories", DAYS[1])
    run("sheet_export", DAYS[0])
    assert requested() == {("stories", DAYS[2]), ("sheet_export", DAYS[1])}
    run("stories", DAYS[2])
    run("sheet_export", DAYS[1])
    # The last day materialized ends the chain: the day after it has no stories yet and waits for its schedule.
    assert requested() == {("sheet_export", DAYS[2])}


def _stories_by_day(result) -> dict[str, dict]:
    """A range run's per-day stories metadata (the observations logged against each day)."""
    return {
        e.event_specific_data.asset_observation.partition: e.event_specific_data.asset_observation.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION" and e.asset_key.path[-1] == "stories"
    }


def test_a_range_run_again_keeps_unchanged_days_and_redoes_the_days_after_a_change(workspace):
    workspace.add_sample()
    assert workspace.materialize_range(DAYS[0], DAYS[-1]).success
    stored = {day: workspace.store.read("story_items", day) for day in DAYS}
    again = _stories_by_day(workspace.materialize_range(DAYS[0], DAYS[-1]))
    assert {day: m["reused"].value for day, m in again.items() if "reused" in m} == dict.fromkeys(DAYS, True)
    # A late item on the middle day: the first day stands, the middle day and the day after it continue anew.
    late = {
        "id": "mb-late-1",
        "source": "Morning Brief",
        "link": "https://morningbrief.example/late/norvanta-chip-recall",
        "headline": "Norvanta widens its chip recall to older laptops",
        "short_description": "The recall now covers three more models sold since 2024.",
        "date": f"{DAYS[1]}T21:30:00Z",
    }
    with open(workspace.landing / "morning_brief.jsonl", "a", encoding="utf-8") as landing:
        landing.write(json.dumps(late) + "\n")
    later = _stories_by_day(workspace.materialize_range(DAYS[0], DAYS[-1]))
    assert "reused" in later[DAYS[0]] and all("reused" not in later[day] for day in DAYS[1:])
    for day in DAYS[1:]:
        items = workspace.store.read("story_items", day)
        kept = stored[day].merge(items, on="item_id", suffixes=("", "_now"))
        assert len(kept) == len(stored[day])  # every earlier item is still there ...
        assert (kept["story_id"].fillna("") == kept["story_id_now"].fillna("")).mean() >= 0.9  # ... mostly in its story
    assert "mb-late-1" in set(workspace.store.read("raw_items", DAYS[1])["source_id"])
