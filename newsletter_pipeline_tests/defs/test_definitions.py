"""The Definitions load and hold every asset, check, job and schedule the UI shows."""

import datetime as dt

import dagster as dg

from newsletter_pipeline.definitions import defs
from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.resources import SheetsResource, resources_from_env
from newsletter_pipeline.defs.schedules import daily_schedule
from newsletter_pipeline_tests.conftest import REPO


def test_definitions_list_assets_checks_job_and_schedule():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "raw_items",
        "item_embeddings",
        "umap_coordinates",
        "clusters",
        "stories",
        "sheet_export",
    }
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == {
        (check.asset, check.name) for check in checks.ALL
    }
    assert "daily_newsletter_job" in repo.job_names
    assert [s.name for s in repo.schedule_defs] == ["daily_newsletter_job_schedule"]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "check_failure_alert_sensor",
        "landing_sensor",
        "run_failure_alert_sensor",
        "stories_follow_sensor",
    ]
    # Every asset is daily, runs a range as one run, and the GPU and sheet steps are in their pools.
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(dg.AssetKey("item_embeddings")).pools == {"gpu"}
    assert graph.get(dg.AssetKey("sheet_export")).pools == {"sheets"}
    # Lineage: each asset depends on the one before it; stories also on its own previous day, so backfills run in order.
    assert graph.get(dg.AssetKey("sheet_export")).parent_keys == {
        dg.AssetKey("raw_items"),
        dg.AssetKey("clusters"),
        dg.AssetKey("stories"),
    }
    assert graph.get(dg.AssetKey("stories")).parent_keys == {
        dg.AssetKey("raw_items"),  # the headlines: a story's title
        dg.AssetKey("item_embeddings"),
        dg.AssetKey("clusters"),
        dg.AssetKey("stories"),
    }
    mapping = graph.get_partition_mapping(dg.AssetKey("stories"), dg.AssetKey("stories"))
    assert isinstance(mapping, dg.TimeWindowPartitionMapping) and (mapping.start_offset, mapping.end_offset) == (-1, -1)


def test_schedule_materializes_the_previous_day():
    with dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.timezone.utc)
    ) as context:
        requests = list(
            defs.get_repository_def().get_schedule_def(daily_schedule.name).evaluate_tick(context).run_requests
        )
    assert [r.partition_key for r in requests] == ["2026-11-20"]


def test_resources_come_from_the_environment(tmp_path):
    local = resources_from_env({"NEWSLETTER_DATA_DIR": str(tmp_path)})
    assert local["landing"].path == f"{tmp_path}/landing" and local["store"].root == f"{tmp_path}/outputs"
    assert local["sheets"].destination.startswith("workbook ")
    google = resources_from_env({"NEWSLETTER_SPREADSHEET_KEY": "abc", "GOOGLE_SERVICE_ACCOUNT_JSON": "{}"})
    assert (
        isinstance(google["sheets"], SheetsResource) and google["sheets"].destination == "Google Sheets spreadsheet abc"
    )


def test_each_check_is_declared_once_and_its_text_follows_the_declaration():
    """Specs, results and the README's table come from defs/checks.py: a check's severity is said where it is set."""
    names = [check.name for check in checks.ALL]
    assert len(names) == len(set(names))
    for check in checks.ALL:
        (spec,) = [spec for spec in defs.resolve_assets_def(check.asset).check_specs if spec.name == check.name]
        assert spec.description.startswith(check.description) and f"Fails as {check.fails_as};" in spec.description
    assert checks.NOISE_SHARE.fails_as == "ERROR (WARN on a small day)" and checks.SILHOUETTE.fails_as == "WARN"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert checks.reference_table() in readme, (
        "README's table of checks differs: paste `python -m newsletter_pipeline.defs.checks` into it"
    )
