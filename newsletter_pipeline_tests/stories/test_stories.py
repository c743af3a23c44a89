"""Stories across days: matching clusters to earlier days' stories, and the self-dependent `stories` asset on the sample."""

import base64
import io
import re

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.defs.params import ClusterParams, StoryParams
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.publishing import export
from newsletter_pipeline.stories import timeline
from newsletter_pipeline.stories.tracking import (
    STATE_COLUMNS,
    STORY_COLUMNS,
    cluster_centroids,
    track_stories,
)
from newsletter_pipeline_tests.conftest import ASSETS

PARAMS = StoryParams().model_dump()  # threshold 0.6, look-back 7 days


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def day_clusters(*clusters: tuple[int, int, np.ndarray]) -> pd.DataFrame:
    """Today's clusters as track_stories takes them: (cluster_id, size, centroid)."""
    return pd.DataFrame(
        [{"cluster_id": c, "size": s, "centroid": v} for c, s, v in clusters],
        columns=["cluster_id", "size", "centroid"],
    )


def by_cluster(tracked) -> dict[int, dict]:
    return {row["cluster_id"]: row for row in tracked.stories.to_dict("records")}


# Two orthogonal directions: two unrelated stories; cosine similarity of unit(1, t) and (1, 0) is 1/sqrt(1 + t^2).
STORM, CHIP, OTHER = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)


def test_the_first_day_starts_a_story_per_cluster():
    tracked = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM), (1, 3, CHIP)), **PARAMS)
    assert list(tracked.stories.columns) == STORY_COLUMNS and list(tracked.state.columns) == STATE_COLUMNS
    assert tracked.stories["story_id"].tolist() == ["2026-11-16#0", "2026-11-16#1"]
    assert set(tracked.stories["trend"]) == {"new"} and tracked.stories["days_active"].tolist() == [1, 1]
    assert tracked.stories["previous_size"].isna().all() and tracked.stories["similarity"].isna().all()
    assert tracked.state[
        ["story_id", "first_seen", "last_seen", "days_active", "last_size", "last_cluster_id"]
    ].values.tolist() == [
        ["2026-11-16#0", "2026-11-16", "2026-11-16", 1, 5, 0],
        ["2026-11-16#1", "2026-11-16", "2026-11-16", 1, 3, 1],
    ]


def test_a_similar_cluster_continues_its_story_and_a_different_one_is_new():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM), (1, 3, CHIP)), **PARAMS)
    # The storm is cluster 2 today; cluster 0 is something else.
    second = track_stories(first.state, "2026-11-17", day_clusters((0, 4, OTHER), (2, 8, unit(1, 0.3, 0))), **PARAMS)
    rows = by_cluster(second)
    assert (
        rows[2]["story_id"] == "2026-11-16#0" and rows[2]["first_seen"] == "2026-11-16" and rows[2]["days_active"] == 2
    )
    assert rows[2]["trend"] == "growing" and rows[2]["previous_size"] == 5 and rows[2]["previous_day"] == "2026-11-16"
    assert rows[2]["similarity"] == pytest.approx(1 / np.sqrt(1.09), abs=1e-4)
    assert rows[0]["story_id"] == "2026-11-17#0" and rows[0]["trend"] == "new" and rows[0]["first_seen"] == "2026-11-17"
    # The state holds every story that may still continue, the continued one with today's size and, as its
    # centroid, the mean of its two days' centroids (an anchor that does not drift with each day's cluster).
    state = second.state.set_index("story_id")
    assert sorted(state.index) == ["2026-11-16#0", "2026-11-16#1", "2026-11-17#0"]
    assert state.loc["2026-11-16#0", ["last_seen", "days_active", "last_size", "last_cluster_id"]].tolist() == [
        "2026-11-17",
        2,
        8,
        2,
    ]
    np.testing.assert_allclose(
        state.loc["2026-11-16#0", "centroid"], unit(*(np.array(STORM) + unit(1, 0.3, 0))), rtol=1e-6
    )
    assert state.loc["2026-11-16#1", "last_seen"] == "2026-11-16"  # not seen today, kept


def test_trend_compares_with_the_last_size():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM), (1, 5, CHIP), (2, 5, OTHER)), **PARAMS)
    second = track_stories(
        first.state, "2026-11-17", day_clusters((0, 7, STORM), (1, 5, CHIP), (2, 2, OTHER)), **PARAMS
    )
    assert second.stories["trend"].tolist() == ["growing", "steady", "shrinking"]
    assert second.stories["previous_size"].tolist() == [5, 5, 5] and second.stories["size"].tolist() == [7, 5, 2]


def test_matching_is_one_to_one_most_similar_first():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM), (1, 5, CHIP)), **PARAMS)
    # Both of today's clusters resemble the storm; the closer one continues it, the other starts a story even
    # though it passes the threshold. A cluster between both stories takes the one it is closer to.
    second = track_stories(
        first.state,
        "2026-11-17",
        day_clusters((0, 3, unit(1, 0.5, 0)), (1, 3, unit(1, 0.1, 0)), (2, 3, unit(0.3, 1, 0))),
        **PARAMS,
    )
    assert second.stories.set_index("cluster_id")["story_id"].to_dict() == {
        0: "2026-11-17#0",
        1: "2026-11-16#0",
        2: "2026-11-16#1",
    }


def test_equal_similarities_go_to_the_lower_cluster_id_then_the_lower_story_id():
    first = track_stories(None, "2026-11-16", day_clusters((3, 5, STORM), (7, 5, STORM)), **PARAMS)
    second = track_stories(first.state, "2026-11-17", day_clusters((4, 2, STORM), (1, 2, STORM)), **PARAMS)
    assert second.stories.set_index("cluster_id")["story_id"].to_dict() == {1: "2026-11-16#3", 4: "2026-11-16#7"}


def test_the_threshold_decides():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM)), **PARAMS)
    today = day_clusters((0, 5, unit(1, 1.2, 0)))  # similarity 1/sqrt(2.44) = 0.64
    assert track_stories(first.state, "2026-11-17", today, **StoryParams(match_threshold=0.64).model_dump()).stories[
        "trend"
    ].tolist() == ["steady"]
    assert track_stories(first.state, "2026-11-17", today, **StoryParams(match_threshold=0.65).model_dump()).stories[
        "trend"
    ].tolist() == ["new"]


def test_a_story_unseen_for_longer_than_the_look_back_is_dropped():
    params = StoryParams(lookback_days=3).model_dump()
    state = track_stories(None, "2026-11-10", day_clusters((0, 5, STORM)), **params).state
    # Seen again after exactly the look-back: it continues.
    assert track_stories(state, "2026-11-13", day_clusters((0, 5, STORM)), **params).stories["story_id"].tolist() == [
        "2026-11-10#0"
    ]
    # One day more: a new story.
    assert track_stories(state, "2026-11-14", day_clusters((0, 5, STORM)), **params).stories["story_id"].tolist() == [
        "2026-11-14#0"
    ]
    # The state keeps a story while it may still continue the next day, then drops it.
    for day, kept in [("2026-11-11", True), ("2026-11-12", True), ("2026-11-13", False)]:
        state_after = track_stories(state, day, day_clusters(), **params).state
        assert (state_after["story_id"].tolist() == ["2026-11-10#0"]) == kept, day


def test_an_empty_day_carries_the_state_forward():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM)), **PARAMS)
    empty = track_stories(first.state, "2026-11-17", day_clusters(), **PARAMS)
    assert empty.stories.empty and list(empty.stories.columns) == STORY_COLUMNS
    pd.testing.assert_frame_equal(empty.state.drop(columns="centroid"), first.state.drop(columns="centroid"))
    third = by_cluster(track_stories(empty.state, "2026-11-18", day_clusters((0, 6, STORM)), **PARAMS))[0]
    # days_active counts the days the story was seen, not the days since it began.
    assert (third["story_id"], third["days_active"], third["previous_day"], third["trend"]) == (
        "2026-11-16#0",
        2,
        "2026-11-16",
        "growing",
    )
    assert track_stories(None, "2026-11-16", day_clusters(), **PARAMS).state.empty


def test_the_same_input_gives_the_same_stories_in_any_row_order():
    first = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM), (1, 3, CHIP), (2, 2, OTHER)), **PARAMS)
    today = day_clusters((0, 4, unit(1, 0.2, 0.1)), (1, 9, unit(0.1, 1, 0)), (2, 1, unit(1, 1, 1)))
    once = track_stories(first.state, "2026-11-17", today, **PARAMS)
    shuffled = track_stories(first.state.iloc[::-1], "2026-11-17", today.iloc[[2, 0, 1]], **PARAMS)
    pd.testing.assert_frame_equal(once.stories, shuffled.stories)
    pd.testing.assert_frame_equal(once.state.drop(columns="centroid"), shuffled.state.drop(columns="centroid"))


def test_a_state_of_the_same_or_a_later_day_is_refused():
    state = track_stories(None, "2026-11-16", day_clusters((0, 5, STORM)), **PARAMS).state
    with pytest.raises(ValueError, match="seen on or after 2026-11-16"):
        track_stories(state, "2026-11-16", day_clusters((0, 5, STORM)), **PARAMS)


def test_cluster_centroids_are_normalized_means_without_noise():
    assignments = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "cluster_id": [1, NOISE, 1, 0]})
    # The embeddings come in another order than the assignments: they are joined on item_id.
    vectors = np.array([[1, 0], [0, 1], [0, 1], [0.6, 0.8]], dtype=np.float32)
    centroids = cluster_centroids(assignments, pd.Series(["d", "c", "b", "a"]), vectors)
    assert centroids["cluster_id"].tolist() == [0, 1] and centroids["size"].tolist() == [1, 2]
    np.testing.assert_allclose(centroids["centroid"][0], [1, 0])
    np.testing.assert_allclose(centroids["centroid"][1], unit(0.3, 0.9), rtol=1e-6)  # mean of a and c, normalized
    with pytest.raises(ValueError, match="no embedding"):
        cluster_centroids(assignments, pd.Series(["a", "b"]), vectors[:2])


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


@pytest.mark.slow
def timeline_image(markdown: str) -> Image.Image:
    """The image of a `![alt](data:image/png;base64,...)` metadata entry, decoded."""
    data = re.fullmatch(r"!\[stories up to [0-9-]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_the_timeline_keeps_a_row_per_story_and_a_column_per_day():
    days = ["2026-11-16", "2026-11-17", "2026-11-18"]
    tables = {
        "2026-11-16": pd.DataFrame({"story_id": ["a", "b"], "size": [3, 2]}),
        "2026-11-18": pd.DataFrame({"story_id": ["a", "a", "c"], "size": [1, 4, 2]}),
    }
    history = timeline.story_history(tables)
    assert history.to_dict("records") == [
        {"day": "2026-11-16", "story_id": "a", "items": 3},
        {"day": "2026-11-16", "story_id": "b", "items": 2},
        {"day": "2026-11-18", "story_id": "a", "items": 5},
        {"day": "2026-11-18", "story_id": "c", "items": 2},
    ]
    image = Image.open(io.BytesIO(timeline.timeline_png(history, days, "three days")))
    assert image.format == "PNG" and image.size[0] == 7 * 80
    assert timeline.story_history({}).empty  # a window without stories still draws
    assert Image.open(io.BytesIO(timeline.timeline_png(timeline.story_history({}), days, "none"))).format == "PNG"


def test_three_days_of_the_sample(workspace, tmp_path):
    workspace.add_sample()
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        result = workspace.materialize(day, instance=instance)
        assert result.success
    stored = {day: workspace.store.read("stories", day) for day in DAYS}

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

    # Re-running the middle day gives the same ids, and leaves the next day's stories as they were.
    assert workspace.materialize(DAYS[1], instance=instance).success
    pd.testing.assert_frame_equal(workspace.store.read("stories", DAYS[1]), stored[DAYS[1]])
    pd.testing.assert_frame_equal(workspace.store.read("stories", DAYS[2]), stored[DAYS[2]])
    result = workspace.materialize(DAYS[2], instance=instance, selection=["stories"])
    assert "have changed since" not in logs_of(instance, result)

    # The middle day is clustered differently afterwards (new settings, a late item): the next day's stories
    # notice that the state they continue from no longer matches that day's clusters, and say what to do.
    workspace.clustering = ClusteringResource(cluster=ClusterParams(merge_similarity=None, assign_similarity=None))
    assert workspace.materialize(DAYS[1], instance=instance, selection=["clusters"]).success
    result = workspace.materialize(DAYS[2], instance=instance, selection=["stories"])
    assert f"the story state of {DAYS[1]} was made from clusters that have changed since" in logs_of(instance, result)
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

    # A state made with another embedding model does not compare with today's centroids: every cluster starts a story.
    state_file = workspace.outputs / "story_state" / f"{DAYS[1]}.parquet"
    state = pq.read_table(state_file)
    pq.write_table(state.replace_schema_metadata({**state.schema.metadata, b"model": b"another-model"}), state_file)
    assert workspace.store.read_metadata("story_state", DAYS[1])["model"] == "another-model"
    result = workspace.materialize(DAYS[2], instance=range_instance, selection=["stories"])
    assert "made with model another-model" in logs_of(range_instance, result)
    assert set(workspace.store.read("stories", DAYS[2])["trend"]) == {"new"}


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
