"""Every asset and check, materialized by Dagster on the sample data with the real model, UMAP and HDBSCAN."""

import json

import dagster as dg
import pandas as pd

from newsletter_pipeline.defs.params import QualityThresholds
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.embedding.openvino_backend import precision
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]
EMPTY_DAY = "2026-11-09"  # before the sample; a partition whatever today's date


def checks_of(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def header_of(table: str) -> list[str]:
    """The column names of a Markdown table."""
    return [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]


def metadata_of(result, asset: str) -> dict:
    return next(m.metadata for m in result.asset_materializations_for_node(asset))


def test_a_sample_day_end_to_end(workspace):
    result = workspace.add_sample().materialize(DAY)
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "raw_items",
        "item_embeddings",
        "umap_coordinates",
        "clusters",
        "stories",
        "sheet_export",
    }
    checks = checks_of(result)
    assert set(checks) == {
        "unique_item_id",
        "records_balance",
        "quarantine_share",
        "day_not_emptied",
        "embeddings_valid",
        "every_item_assigned",
        "noise_share",
        "cluster_count",
        "largest_cluster_share",
        "silhouette",
    }
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items() if not c.passed}
    assert checks["noise_share"].metadata["noise_share"].value <= QualityThresholds().max_noise_share

    # What a person sees in the UI: counts, timings, the size table and the plot.
    raw = metadata_of(result, "raw_items")
    assert (
        raw["items"].value == raw["records"].value == 36 and raw["sources"].value == 5 and raw["quarantined"].value == 0
    )
    embedded = metadata_of(result, "item_embeddings")
    assert (
        embedded["model"].value == "all-MiniLM-L6-v2"
        and embedded["device"].value == f"cpu (openvino {precision()})"  # the default backend on a CPU
        and embedded["embed_seconds"].value > 0
    )
    clustered = metadata_of(result, "clusters")
    assert clustered["clusters"].value >= 4 and clustered["method"].value == "hdbscan"
    assert header_of(clustered["cluster_sizes"].value) == ["cluster", "items", "sources", "label"]
    assert "data:image/png;base64," in clustered["plot"].value
    told = metadata_of(result, "stories")  # the first day: nothing to continue, stories start here
    assert (told["tracking"].value, told["tracking_reason"].value) == ("full", "the day's first stories")
    assert told["items_continuing"].value == 0
    assert told["items_in_new_stories"].value + told["items_without_story"].value == 36
    # Each cluster's cohesive items start its story; the cluster of odd items (a museum, a mayoral race, a tennis
    # final, a marathon) starts none that readers see, and its items wait as candidates like the unclustered ones.
    shown = workspace.store.read("stories", DAY)
    assert clustered["clusters"].value == 6 and told["stories"].value == shown["story_id"].nunique() == 5
    odd = shown[shown["story_id"].isna()]["cluster_id"].tolist()
    headlines = workspace.store.read("raw_items", DAY).merge(workspace.store.read("clusters", DAY), on="item_id")
    assert len(odd) == 1 and headlines[headlines["cluster_id"] == odd[0]]["headline"].str.contains("Museum").any()
    assert header_of(told["story_table"].value)[:3] == ["story", "cluster", "label"]

    # Anyone can read the per-item assignment from the Parquet files.
    assignment = pd.read_parquet(workspace.outputs / "clusters" / f"{DAY}.parquet")
    items = pd.read_parquet(workspace.outputs / "raw_items" / f"{DAY}.parquet")
    assert {"item_id", "source_id", "cluster_id", "probability"} <= set(assignment.columns)
    assert sorted(assignment["item_id"]) == sorted(items["item_id"]) and assignment["source_id"].notna().all()
    embeddings = workspace.store.read_metadata("item_embeddings", DAY)
    assert embeddings == {"model": "all-MiniLM-L6-v2", "variant": f"openvino-{precision()}", "dimension": "384"}

    book = export.read_workbook(workspace.workbook)
    assert (
        len(book[export.tab_name("items", DAY)]) - 1 == 36
        and len(book[export.tab_name("clusters", DAY)]) - 1 == clustered["clusters"].value
    )


def test_same_input_twice_gives_identical_clusters(workspace, tmp_path):
    workspace.add_sample().materialize(DAY)
    first = pd.read_parquet(workspace.outputs / "clusters" / f"{DAY}.parquet")
    first_summary = pd.read_parquet(workspace.outputs / "cluster_summaries" / f"{DAY}.parquet")
    workspace.outputs = tmp_path / "second_outputs"
    workspace.materialize(DAY)
    pd.testing.assert_frame_equal(first, pd.read_parquet(workspace.outputs / "clusters" / f"{DAY}.parquet"))
    pd.testing.assert_frame_equal(
        first_summary, pd.read_parquet(workspace.outputs / "cluster_summaries" / f"{DAY}.parquet")
    )
    # Re-running the day replaced its rows in the workbook instead of adding them again.
    assert len(export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)]) - 1 == 36


def test_empty_day_materializes_and_warns(workspace):
    result = workspace.add_sample().materialize(EMPTY_DAY)
    assert result.success
    checks = checks_of(result)
    assert checks.pop("records_balance").passed  # nothing read, nothing lost
    assert checks.pop("day_not_emptied").passed  # it had no items before either
    assert all(
        not c.passed and c.severity == dg.AssetCheckSeverity.WARN and "no items" in c.description
        for c in checks.values()
    )
    assert workspace.store.read("clusters", EMPTY_DAY).empty
    book = export.read_workbook(workspace.workbook)
    assert book[export.tab_name("items", EMPTY_DAY)] == [export.TABS["items"]] and book[
        export.tab_name("clusters", EMPTY_DAY)
    ] == [export.TABS["clusters"]]


def test_tiny_day_uses_the_fallback_and_records_it(workspace):
    records = [
        ("Storm Odile makes landfall on the southern coast", "a"),
        ("Storm Odile floods coastal towns overnight", "b"),
        ("Central bank cuts its key interest rate", "c"),
        ("Central bank lowers rates by a quarter point", "d"),
        ("City museum opens a new sculpture hall", "e"),
    ]
    lines = [
        json.dumps({"headline": h, "link": f"https://x.test/{s}", "date": "2026-11-10", "source": "Tiny"})
        for h, s in records
    ]
    (workspace.landing / "tiny.jsonl").write_text("\n".join(lines) + "\n")
    result = workspace.materialize("2026-11-10")
    assert result.success
    clustered = metadata_of(result, "clusters")
    assert clustered["method"].value == "agglomerative" and clustered["clusters"].value == 2
    assert clustered["settings"].value["method"] == "agglomerative"
    assert metadata_of(result, "umap_coordinates")["method"].value == "small-day"
    assert checks_of(result)["noise_share"].passed


def test_failing_blocking_check_stops_the_export(workspace):
    workspace.clustering = ClusteringResource(quality=QualityThresholds(min_clusters=50))
    result = workspace.add_sample().materialize(DAY, raise_on_error=False)
    assert not result.success
    failed = checks_of(result)["cluster_count"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR and "at least 50" in failed.description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "clusters" in materialized and "sheet_export" not in materialized
    assert not workspace.workbook.exists()


def test_checks_are_recorded_against_the_day(workspace):
    result = workspace.add_sample().materialize(EMPTY_DAY)
    assert {e.partition for e in result.get_asset_check_evaluations()} == {EMPTY_DAY}


def test_stale_upstream_files_stop_the_export(workspace):
    workspace.add_sample().materialize(DAY)
    late = {
        "headline": "Late item about a panda born at the zoo",
        "link": "https://x.test/panda",
        "date": DAY,
        "source": "Late",
    }
    (workspace.landing / "late.jsonl").write_text(json.dumps(late) + "\n")
    workspace.materialize(DAY, selection=["raw_items"])
    # Clusters re-run on embeddings made before the late item landed: the item is not clustered by position
    # into someone else's vector; it is reported missing and the day stays out of the sheet.
    result = workspace.materialize(DAY, selection=["clusters", "sheet_export"], raise_on_error=False)
    assigned = checks_of(result)["every_item_assigned"]
    assert not assigned.passed and "1 items missing" in assigned.description
    assert "sheet_export" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert (
        len(export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)]) - 1 == 36
    )  # the first export, untouched
