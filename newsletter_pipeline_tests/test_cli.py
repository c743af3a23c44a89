"""A backfill from the command line: three days as one run, exactly as the README documents it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from newsletter_pipeline.stages import export
from newsletter_pipeline_tests.conftest import REPO, SAMPLE, SAMPLE_DAYS

DAYS = SAMPLE_DAYS[:3]


@pytest.mark.slow
def test_cli_backfill_of_a_three_day_range(tmp_path, monkeypatch):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    shutil.copytree(SAMPLE, data / "landing")
    env = {**os.environ, "DAGSTER_HOME": str(home), "NEWSLETTER_DATA_DIR": str(data)}
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "asset", "materialize", "-m", "newsletter_pipeline.definitions", "--select", "*",
               "--partition-range", f"{DAYS[0]}...{DAYS[-1]}"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    # Every day of the range has its own files and its own rows in the workbook.
    for day in DAYS:
        assignment = pd.read_parquet(data / "outputs" / "clusters" / f"{day}.parquet")
        assert len(assignment) == len(pd.read_parquet(data / "outputs" / "raw_items" / f"{day}.parquet")) > 0
    book = export.read_workbook(data / "sheets" / "newsletter_clusters.xlsx")
    assert sorted({row[0] for row in book["items"][1:]}) == DAYS
    assert not (data / "outputs" / "clusters" / f"{SAMPLE_DAYS[3]}.parquet").exists()

    # One run, and the instance knows each day of each asset as materialized.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 1
        for asset in ("raw_items", "clusters", "sheet_export"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(DAYS)
