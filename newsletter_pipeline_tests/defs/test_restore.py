"""Backups and recovery (docs/backups.md): a day's outputs restored from a copy export the same rows, a restored
story state lets the next day continue the same stories, and the instance database comes back from pg_dump."""

import os
import shutil
import subprocess

import dagster as dg
import pandas as pd

from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests import postgres
from newsletter_pipeline_tests.conftest import SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def sheet_rows(workbook) -> dict[str, list[list]]:
    """The workbook's tabs as read back, with the index's updated_at blanked (it is the time of the export)."""
    book = export.read_workbook(workbook)
    assert book, f"{workbook} is missing or empty"
    at = export.INDEX_HEADER.index("updated_at")
    book["index"] = [row if n == 0 else [*row[:at], "", *row[at + 1 :]] for n, row in enumerate(book["index"])]
    return book


def back_up(source, backup) -> None:
    """What the nightly backup does for a local output root (`cp -a`; `aws s3 sync` on S3)."""
    shutil.copytree(source, backup)


def restore(backup, target) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(backup, target)


def test_restored_outputs_export_the_same_rows(workspace, tmp_path):
    assert workspace.add_sample().materialize(DAY).success
    first = sheet_rows(workspace.workbook)
    assert len(first[export.tab_name("items", DAY)]) - 1 == 36 and len(first[export.tab_name("clusters", DAY)]) > 1
    backup = tmp_path / "backup" / "outputs"
    back_up(workspace.outputs, backup)

    # The disk is lost: every output and the workbook.
    shutil.rmtree(workspace.outputs)
    workspace.workbook.unlink()
    # The export reads those files, so without them it fails and writes nothing.
    lost = workspace.materialize(DAY, selection=["sheet_export"], raise_on_error=False)
    assert not lost.success and not workspace.workbook.exists()
    error = lost.failure_data_for_node("sheet_export").error.cause  # the step's own error, under Dagster's wrapper
    assert "FileNotFoundError" in error.cls_name and "does not exist: materialize" in error.message

    restore(backup, workspace.outputs)
    result = workspace.materialize(DAY, selection=["sheet_export"])  # only the export: nothing upstream is recomputed
    assert result.success and materialized(result) == {"sheet_export"}
    assert sheet_rows(workspace.workbook) == first


def test_a_restored_story_state_continues_the_same_stories(workspace, tmp_path):
    # Materialized without the 18th, every story of the 19th begins there; some (the data breach) go on on the 20th.
    before, day = SAMPLE_DAYS[3], SAMPLE_DAYS[4]
    assert workspace.add_sample().materialize(before).success
    backup = tmp_path / "backup" / "outputs"
    back_up(workspace.outputs, backup)  # the nightly backup after the 19th's run
    assert workspace.materialize(day).success
    expected = workspace.store.read("stories", day)
    continued = expected[expected["first_seen"] == before]
    assert len(continued) >= 1, "the sample's 20th should continue a story of the 19th"

    # Everything is lost before the 20th could be backed up. Re-running the 20th without the 19th's story state
    # starts every story afresh: the ids would change.
    shutil.rmtree(workspace.outputs)
    assert workspace.materialize(day).success
    assert set(workspace.store.read("stories", day)["trend"]) == {"new"}

    # With the backup restored, re-running the 20th continues the same stories under the same ids.
    restore(backup, workspace.outputs)
    assert workspace.materialize(day).success
    pd.testing.assert_frame_equal(workspace.store.read("stories", day), expected)


def pg_tool(name: str, server: postgres.Server, *args: str) -> None:
    """Run pg_dump or pg_restore against the test server as docs/backups.md does; the password goes by PGPASSWORD."""
    binary = shutil.which(name)
    if binary is None:
        postgres.unavailable(f"{name} is not installed (Debian's postgresql-client)")
    env = {**os.environ, "PGPASSWORD": server.password}
    done = subprocess.run(
        [binary, "-h", server.host, "-p", str(server.port), "-U", server.user, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{name} failed: {done.stderr[-2000:]}"


def test_the_instance_database_comes_back_from_pg_dump(workspace, tmp_path, monkeypatch):
    server = postgres.server_from_env()
    home = postgres.write_prod_home(tmp_path / "dagster_home")
    dump = tmp_path / "dagster.dump"
    with postgres.fresh_database(server) as database:
        for name, value in server.instance_env(database).items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run_id = workspace.add_sample().materialize(DAY, instance=instance).run_id
            instance.event_log_storage.set_concurrency_slots("gpu", 2)  # a limit set by the CLI lives in the database
        pg_tool("pg_dump", server, "--format=custom", "--no-owner", "--dbname", database, "--file", str(dump))
    # The original database is gone; the dump goes into a new one, as onto a new server.
    with postgres.fresh_database(server) as restored:
        pg_tool("pg_restore", server, "--no-owner", "--exit-on-error", "--dbname", restored, str(dump))
        monkeypatch.setenv("DAGSTER_PG_DB", restored)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = instance.get_run_by_id(run_id)
            assert (
                run is not None and run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == DAY
            )
            assert instance.get_materialized_partitions(dg.AssetKey("sheet_export")) == {DAY}
            checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(dg.AssetKey("clusters"), "noise_share")]
            )
            assert [execution.run_id for execution in checks.values()] == [run_id]
            assert {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}["gpu"] == 2
