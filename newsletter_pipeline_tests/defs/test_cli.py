"""Backfills from the command line, exactly as the README documents them: a range as one run, and a run per day."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from newsletter_pipeline.defs import checks
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import REPO, SAMPLE, SAMPLE_DAYS

DAYS = SAMPLE_DAYS[:3]


def run_dagster(tmp_path: Path, monkeypatch, *args: str) -> tuple[Path, str]:
    """Run the dagster CLI on the sample data with a fresh instance; returns the data folder and what it printed."""
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    shutil.copytree(SAMPLE, data / "landing")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(data))
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), *args, "-m", "newsletter_pipeline.definitions"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data, done.stdout + done.stderr


@pytest.mark.slow
def test_cli_backfill_of_a_three_day_range(tmp_path, monkeypatch):
    # As `make demo` runs it: the console at INFO.
    quiet = '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'
    data, printed = run_dagster(
        tmp_path,
        monkeypatch,
        "asset",
        "materialize",
        "--select",
        "*",
        "--partition-range",
        f"{DAYS[0]}...{DAYS[-1]}",
        "--config-json",
        quiet,
    )
    # A line per day and step, and none of Dagster's DEBUG events.
    assert " - DEBUG - " not in printed and "STEP_START" not in printed
    for day in DAYS:
        assert f"{day} raw_items: records " in printed and f"{day} clusters: items " in printed
    assert "item_embeddings: texts encoded " in printed

    # Every day of the range has its own files and its own rows in the workbook.
    for day in DAYS:
        assignment = pd.read_parquet(data / "outputs" / "clusters" / f"{day}.parquet")
        assert len(assignment) == len(pd.read_parquet(data / "outputs" / "raw_items" / f"{day}.parquet")) > 0
    book = export.read_layout(data / "sheets" / "newsletter_clusters.xlsx")
    assert sorted({row[0] for row in book["items"][1:]}) == DAYS
    # Stories ran day after day within the one run: the later days continue the first day's stories.
    header, rows = book["clusters"][0], book["clusters"][1:]
    # (a cluster of odd items, whose story would hold one item, shows none)
    assert sum(1 for row in rows if row[header.index("story_id")]) >= 0.8 * len(rows)
    assert any(
        row[header.index("day")] == DAYS[-1]
        and row[header.index("first_seen")] == DAYS[0]
        and row[header.index("days_active")] == 3
        for row in rows
    )
    assert not (data / "outputs" / "clusters" / f"{SAMPLE_DAYS[3]}.parquet").exists()

    # One run, and the instance knows each day of each asset as materialized.
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 1
        for asset in ("raw_items", "clusters", "stories", "sheet_export"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(DAYS)
        # Each day has its own check results and its own figures and plot, as after a one-day run.
        check_keys = [dg.AssetCheckKey(dg.AssetKey(check.asset), check.name) for check in checks.ALL]
        statuses = {
            (info.check_key.name, info.partition_key): info.latest_execution_status.value
            for info in instance.event_log_storage.get_asset_check_partition_info(check_keys)
        }
        assert all(statuses[(key.name, day)] == "SUCCEEDED" for key in check_keys for day in DAYS)
        observed = instance.fetch_observations(dg.AssetKey("clusters"), limit=10).records
        plots = {r.partition_key: r.asset_observation.metadata["plot"].value for r in observed}
        assert sorted(plots) == DAYS and all(f"clusters of {day}" in plots[day] for day in DAYS)


@pytest.mark.slow
def test_cli_backfill_with_one_run_per_day(tmp_path, monkeypatch):
    run_dagster(
        tmp_path,
        monkeypatch,
        "job",
        "backfill",
        "-j",
        "daily_newsletter_job",
        "--partitions",
        ",".join(DAYS[:2]),
        "--noprompt",
    )
    with dg.DagsterInstance.get() as instance:
        # The runs are launched as subprocesses; wait for them to finish.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not all(r.is_finished for r in instance.get_runs()):
            time.sleep(2)
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == DAYS[:2]
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert len({r.tags["dagster/backfill"] for r in runs}) == 1
        assert instance.get_materialized_partitions(dg.AssetKey("sheet_export")) == set(DAYS[:2])
