"""A published day holds still (issue 14): late items join the stored clusters; the day is clustered again only when
items were removed, too many are new, the settings changed or the run asks for it."""

import json

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering import hold
from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.defs import reuse
from newsletter_pipeline_tests.conftest import SAMPLE, SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]


def sample_records(day: str) -> list[dict]:
    """The sample's JSON Lines records of `day` (the CSV newsletter left out), in file order."""
    records = []
    for path in sorted(SAMPLE.glob("*.jsonl")):
        records += [r for r in map(json.loads, path.read_text().splitlines()) if str(r.get("date", "")).startswith(day)]
    return records


def land(workspace, records: list[dict]) -> None:
    """The landing folder holds exactly these records, as one newsletter file."""
    for path in workspace.landing.iterdir():
        path.unlink()
    (workspace.landing / "day.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def clustering_of(result) -> dict:
    metadata = next(m.metadata for m in result.asset_materializations_for_node("clusters"))
    return {key: metadata[key].value for key in ("clustering", "clustering_reason")}


def test_decisions():
    stored, settings = {"a", "b", "c", "d"}, {"settings_changed": False, "recluster_share": 0.25}
    assert hold.decide(stored, stored | {"e"}, items_at_full=4, **settings).keep
    assert not hold.decide(None, stored, items_at_full=0, **settings).keep
    removed = hold.decide(stored, {"a", "b", "c"}, items_at_full=4, **settings)
    assert not removed.keep and removed.reason == "1 items were removed since the stored clustering"
    grown = hold.decide(stored, stored | {"e", "f"}, items_at_full=4, **settings)  # 2 of 6 new: 33%
    assert not grown.keep and grown.reason.startswith("33% of the day's items are new")
    # The share counts from the last full clustering, so many small additions add up.
    assert not hold.decide(stored | {"e"}, stored | {"e", "f"}, items_at_full=4, **settings).keep
    assert not hold.decide(stored, stored, items_at_full=4, settings_changed=True, recluster_share=0.25).keep
    assert not hold.decide(stored, stored, items_at_full=4, asked=True, **settings).keep


def test_new_items_join_the_nearest_cluster_or_stay_noise():
    stored = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.95, 0.05], [0, 0, 1]], dtype=np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, NOISE])
    new = np.array([[0.95, 0.05, 0], [0, 0, 1], [0.1, 0.9, 0]], dtype=np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    placed, similarity, nearest = hold.place_new_items(stored, labels, new, min_similarity=0.5)
    assert placed.tolist() == [0, NOISE, 1]
    assert similarity[0] > 0.9 and similarity[1] == 0 and nearest.tolist() == [0, 4, 2]


def test_a_late_item_keeps_the_day_and_its_stories(workspace):
    records = sample_records(DAY)
    late, published = records[-1], records[:-1]
    land(workspace, published)
    first = workspace.materialize(DAY)
    assert first.success and clustering_of(first)["clustering"] == "full"
    before = workspace.store.read("clusters", DAY).set_index("item_id")
    stories_before = workspace.store.read("stories", DAY)
    items_before = workspace.store.read("story_items", DAY).set_index("item_id")

    land(workspace, published + [late])
    again = workspace.materialize(DAY)
    assert again.success
    assert clustering_of(again) == {
        "clustering": "kept",
        "clustering_reason": "1 new items placed in the stored clusters (3% new since the last full one)",
    }
    after = workspace.store.read("clusters", DAY).set_index("item_id")
    assert len(after) == len(before) + 1
    # Every published item keeps its cluster, membership and place in the plot; the late one has one too.
    pd.testing.assert_frame_equal(after.loc[before.index], before, check_like=True)
    new = after.drop(index=before.index).iloc[0]
    assert new["cluster_id"] == NOISE or new["cluster_id"] in set(before["cluster_id"])
    # So the day's stories keep their ids.
    stories_after = workspace.store.read("stories", DAY)
    assert dict(zip(stories_after["cluster_id"], stories_after["story_id"], strict=True)) == dict(
        zip(stories_before["cluster_id"], stories_before["story_id"], strict=True)
    )
    # Item by item too: every published item keeps the story it had, and the metadata says the stories were kept.
    items_after = workspace.store.read("story_items", DAY).set_index("item_id")
    assert len(items_after) == len(items_before) + 1
    pd.testing.assert_frame_equal(
        items_after.loc[items_before.index, ["cluster_id", "tracked_as"]], items_before[["cluster_id", "tracked_as"]]
    )
    pd.testing.assert_series_equal(items_after.loc[items_before.index, "story_id"], items_before["story_id"])
    story_metadata = next(m.metadata for m in again.asset_materializations_for_node("stories"))
    assert story_metadata["tracking"].value == "kept"
    assert (
        story_metadata["tracking_reason"].value
        == f"{len(items_before)} items keep their stories; 1 new tracked around them"
    )


def test_many_new_items_a_removal_or_the_run_config_cluster_the_day_again(workspace):
    records = sample_records(DAY)
    land(workspace, records[: round(0.6 * len(records))])
    assert workspace.materialize(DAY).success

    land(workspace, records)  # 40% of the day is new
    grown = workspace.materialize(DAY)
    assert grown.success and clustering_of(grown)["clustering"] == "full"
    assert clustering_of(grown)["clustering_reason"].endswith("new since its last full clustering (limit 25%)")

    land(workspace, records[1:])
    removed = workspace.materialize(DAY)
    assert clustering_of(removed) == {
        "clustering": "full",
        "clustering_reason": "1 items were removed since the stored clustering",
    }

    asked = workspace.materialize(DAY, run_config={"ops": {"clusters": {"config": {"recluster": True}}}})
    assert clustering_of(asked) == {"clustering": "full", "clustering_reason": "the run asked for it (recluster: true)"}
    # Without new items or any reason, a re-run keeps the day as it is: with nothing changed at all, it is not even
    # clustered again (its labels, plot and checks are reused too).
    kept = workspace.materialize(DAY)
    assert clustering_of(kept) == {"clustering": "kept", "clustering_reason": reuse.REASON}
