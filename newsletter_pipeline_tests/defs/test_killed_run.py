"""A run killed mid-step must not hold its pool slot forever (issue 12, fault 5): `dagster asset materialize` as a user
runs it, killed with SIGKILL inside `item_embeddings` (the `gpu` pool), then the same command again; a live holder and a
holder on another machine are named, with the command that frees them, and waited on for a bounded time only."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from newsletter_pipeline.defs import pools
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import REPO, SAMPLE, SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]
ASSETS = ["raw_items", "item_embeddings", "umap_coordinates", "clusters", "stories"]
# One sample day takes 15-60 s here, the model load included; a run that waits forever on the slot fails at this bound.
RUN_TIMEOUT_S = 300
BIN = Path(sys.executable).parent


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """A fresh instance (a copy of the repo's dagster.yaml) and data folder holding the sample landing files."""
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    shutil.copytree(SAMPLE, data / "landing")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(data))
    monkeypatch.delenv(pools.WAIT_SETTING, raising=False)  # the default, unless a test sets it
    return Cli(tmp_path, data)


class Cli:
    def __init__(self, cwd: Path, data: Path):
        self.cwd, self.data = cwd, data

    def materialize_args(self, day: str) -> list[str]:
        return [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "newsletter_pipeline.definitions",
            "--select",
            "*",
            "--partition",
            day,
        ]

    def start(self, day: str, log: Path) -> subprocess.Popen:
        # A session of its own, so that the kill takes its whole process group, as an OOM kill or eviction would.
        with log.open("w") as out:
            return subprocess.Popen(
                self.materialize_args(day), cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def run(self, args: list[str], timeout: float = RUN_TIMEOUT_S, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=self.cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
        )

    def materialize(self, day: str, **env: str) -> subprocess.CompletedProcess:
        return self.run(self.materialize_args(day), **env)


def wait_for_slot(instance: dg.DagsterInstance, pool: str, process: subprocess.Popen, log: Path) -> dg.DagsterRun:
    """The run of `process`, once its step holds a slot of the pool."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"the run ended ({process.returncode}) before it held the {pool} slot:\n{log.read_text()[-3000:]}"
        )
        if pool in instance.event_log_storage.get_concurrency_keys():
            claimed = instance.event_log_storage.get_concurrency_info(pool).claimed_slots
            if claimed:
                return instance.get_run_by_id(claimed[0].run_id)
        time.sleep(0.1)
    pytest.fail(f"no slot of {pool} was claimed within {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def claimed(instance: dg.DagsterInstance, pool: str) -> list[tuple[str, str]]:
    return [
        (slot.run_id, slot.step_key) for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    ]


def assert_day_done(instance: dg.DagsterInstance, data: Path, run_id: str) -> None:
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    for asset in ASSETS:
        assert (data / "outputs" / asset / f"{DAY}.parquet").exists(), asset
    assert {row[0] for row in export.read_layout(data / "sheets" / "newsletter_clusters.xlsx")["items"][1:]} == {DAY}
    assert DAY in instance.get_materialized_partitions(dg.AssetKey("sheet_export"))
    assert claimed(instance, "gpu") == claimed(instance, "sheets") == []  # nothing left held


def newest_run(instance: dg.DagsterInstance, besides: set[str]) -> dg.DagsterRun:
    (run,) = [run for run in instance.get_runs() if run.run_id not in besides]
    return run


@pytest.mark.slow
def test_a_run_killed_mid_step_gives_its_slot_to_the_next_run_of_the_day(cli, tmp_path):
    log = tmp_path / "killed_run.log"
    # The instance's SQLite files are created here first: two processes creating them at once can break them.
    with dg.DagsterInstance.get() as instance:
        first = cli.start(DAY, log)
        try:
            dead = wait_for_slot(instance, "gpu", first, log)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            # The fault: the dead run stays STARTED and keeps the gpu slot.
            assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED
            assert claimed(instance, "gpu") == [(dead.run_id, "item_embeddings")]

            started = time.monotonic()
            again = cli.materialize(DAY)  # waits forever (until RUN_TIMEOUT_S) without the fix
            took = time.monotonic() - started
            assert again.returncode == 0, again.stderr[-3000:]

            # The dead run is marked FAILURE, saying why; the new run says what it freed, and did the whole day.
            failed = instance.get_run_by_id(dead.run_id)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            reasons = [
                entry.message for entry in instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            ]
            assert len(reasons) == 1 and f"pid {first.pid} on host" in reasons[0] and "is gone" in reasons[0], reasons
            assert f"Freed the pool slots of run {dead.run_id}" in again.stderr
            assert "Marked that run FAILURE" in again.stderr
            assert_day_done(instance, cli.data, newest_run(instance, {dead.run_id}).run_id)
            print(f"next run of the day completed in {took:.1f} s")
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()


def fake_holder(instance: dg.DagsterInstance, pool: str, step: str, process: pools.RunProcess) -> dg.DagsterRun:
    """What a run leaves in the instance while its step holds a slot: STARTED, its process recorded, the slot claimed."""
    run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    instance.add_run(run)
    instance.report_engine_event(f"{pools.PROCESS_MESSAGE}: {process}", run, process.event_data())
    instance.event_log_storage.set_concurrency_slots(pool, 1)
    assert instance.event_log_storage.claim_concurrency_slot(pool, run.run_id, step).is_claimed
    return run


@pytest.mark.slow
def test_a_live_holder_is_named_and_waited_on_for_a_bounded_time(cli):
    """A holder whose process is alive on this machine keeps its slot: the next run names it and gives up; once that
    process is gone, the next run frees the slot by itself. The holder is a live process recorded as a run's, not a
    stopped `dagster` process: one stopped inside an SQLite write would block every other run's writes."""
    with dg.DagsterInstance.get() as instance:
        alive = subprocess.Popen(["sleep", str(RUN_TIMEOUT_S)])
        try:
            process = replace(pools.RunProcess.current(), pid=alive.pid, start=pools._start_ticks(alive.pid))
            holder = fake_holder(instance, "gpu", "item_embeddings", process)

            started = time.monotonic()
            blocked = cli.materialize(DAY, **{pools.WAIT_SETTING: "5"})
            took = time.monotonic() - started
            assert blocked.returncode != 0
            text = blocked.stderr
            # Said at once while waiting, and again in the error that ends the run: the holder, its process, what to do.
            assert f"Step item_embeddings waits: run {holder.run_id}, which holds a slot of pool gpu" in text
            assert "gave up after waiting" in text and f"{pools.WAIT_SETTING}=5" in text
            assert f"its process, pid {alive.pid} on host" in text and f"kill {alive.pid}" in text
            assert f"{pools.RELEASE_COMMAND} {holder.run_id}" in text
            waiting = newest_run(instance, {holder.run_id})
            assert waiting.status == dg.DagsterRunStatus.FAILURE
            # The live holder keeps its slot and its status; the run that gave up leaves no claim or queued step.
            assert claimed(instance, "gpu") == [(holder.run_id, "item_embeddings")]
            pending = instance.event_log_storage.get_concurrency_info("gpu").pending_steps
            assert waiting.run_id not in {step.run_id for step in pending}
            assert instance.get_run_by_id(holder.run_id).status == dg.DagsterRunStatus.STARTED

            alive.kill()
            alive.wait()
            again = cli.materialize(DAY)
            assert again.returncode == 0, again.stderr[-3000:]
            assert f"Freed the pool slots of run {holder.run_id}" in again.stderr
            assert instance.get_run_by_id(holder.run_id).status == dg.DagsterRunStatus.FAILURE
            assert_day_done(instance, cli.data, newest_run(instance, {holder.run_id, waiting.run_id}).run_id)
            print(f"the waiting run gave up after {took:.1f} s (process start included)")
        finally:
            alive.kill()
            alive.wait()


@pytest.mark.slow
def test_a_holder_on_another_machine_is_named_and_released_by_hand(cli):
    """A run on another machine cannot be checked from here: the next run names it and the command; that command frees it."""
    with dg.DagsterInstance.get() as instance:
        # What a run on host build-7 leaves behind when its pod is evicted in sheet_export: STARTED, its process recorded, the slot.
        other = fake_holder(
            instance, "sheets", "sheet_export", pools.RunProcess(host="build-7", pid=4242, machine_id="0" * 32)
        )

        blocked = cli.materialize(DAY, **{pools.WAIT_SETTING: "5"})
        assert blocked.returncode != 0
        assert f"Step sheet_export waits: run {other.run_id}, which holds a slot of pool sheets" in blocked.stderr
        assert "pid 4242 on host build-7, is on another machine" in blocked.stderr
        assert f"if its process is gone, free its slot with `{pools.RELEASE_COMMAND} {other.run_id}`" in blocked.stderr
        assert "gave up after waiting" in blocked.stderr
        assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.STARTED  # left alone

        # The manual recovery of docs/instance.md.
        module = [sys.executable, "-m", "newsletter_pipeline.defs.pools"]
        shown = cli.run([*module, "show"], timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert f"run {other.run_id}, which holds a slot of pool sheets for step sheet_export" in shown.stdout
        released = cli.run([*module, "release", other.run_id], timeout=120)
        assert released.returncode == 0, released.stderr
        assert "its pool slots are freed; status FAILURE" in released.stdout
        assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.FAILURE

        again = cli.materialize(DAY)
        assert again.returncode == 0, again.stderr[-3000:]
        failed = {run.run_id for run in instance.get_runs() if run.status == dg.DagsterRunStatus.FAILURE}
        assert_day_done(instance, cli.data, newest_run(instance, failed).run_id)


def test_a_process_counts_as_alive_only_while_it_runs():
    """The liveness check behind the automatic release: a killed process is dead even before its parent reaps it."""
    here = pools.RunProcess.current()
    assert here.on_this_machine() and here.exists()
    child = subprocess.Popen(["sleep", "60"])
    try:
        process = replace(here, pid=child.pid, start=pools._start_ticks(child.pid))
        assert process.exists()
        if process.start:  # Linux: its pid taken by another process (another start time) is not the run's process
            assert not replace(process, start=str(int(process.start) + 1)).exists()
        child.kill()
        time.sleep(0.2)  # a zombie until waited for
        assert not process.exists()
    finally:
        child.kill()
        child.wait()
    assert not process.exists()
    # Another host name, machine id or PID namespace (a container of its own) is another machine: its pids mean nothing here.
    for field, value in [("host", "build-7"), ("machine_id", "f" * 32), ("pid_namespace", "pid:[1]")]:
        assert not replace(here, **{field: value}).on_this_machine()


def test_instance_files_configure_run_monitoring():
    """The daemon's run monitoring (max run time, slots of finished runs freed) in both instance files; op-level pools."""
    from dagster._core.instance.config import dagster_instance_config

    for folder, name in [(REPO, "dagster.yaml"), (REPO / "deploy", "dagster.prod.yaml")]:
        config, _ = dagster_instance_config(str(folder), name)  # validated against Dagster's schema
        assert config["run_monitoring"] == {
            "enabled": True,
            "max_runtime_seconds": 21600,
            "free_slots_after_run_end_seconds": 120,
        }, name
        assert config["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}, name
