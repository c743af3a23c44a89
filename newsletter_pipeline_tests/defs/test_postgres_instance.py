"""The production instance (deploy/dagster.prod.yaml) on a real PostgreSQL: settings, a day's run read back, daemon liveness."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.instance.config import PoolGranularity
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._daemon.controller import all_daemons_live
from dagster._serdes import serialize_value
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from newsletter_pipeline_tests import postgres
from newsletter_pipeline_tests.conftest import ASSETS, REPO, SAMPLE_DAYS, free_port

DAY = SAMPLE_DAYS[0]
BIN = Path(sys.executable).parent  # the dagster and dagster-daemon scripts of this environment


@pytest.fixture
def prod_home(tmp_path, monkeypatch) -> Path:
    """DAGSTER_HOME with the production dagster.yaml, its DAGSTER_PG_* variables pointing at a new empty database."""
    server = postgres.server_from_env()
    with postgres.fresh_database(server) as database:
        for name, value in server.instance_env(database).items():
            monkeypatch.setenv(name, value)
        home = postgres.write_prod_home(tmp_path / "dagster_home")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        yield home


def open_instance(home: Path) -> dg.DagsterInstance:
    """A new instance object from the files alone: whatever it reports came from Postgres."""
    return dg.DagsterInstance.from_config(str(home))


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_prod_settings_load_from_postgres(prod_home):
    with open_instance(prod_home) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 2
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
        assert instance.get_runs() == []  # the fresh database
        # Code servers get the instance on their command line: it must carry the variable's name, not the password.
        leaked = os.environ["DAGSTER_PG_PASSWORD"] in serialize_value(instance.get_ref())
        assert not leaked, "the serialized instance ref carries the Postgres password"

    # Named pool limits live in the database, set by the CLI that docs/instance.md gives.
    for pool in ("gpu", "sheets"):
        done = cli("dagster", "instance", "concurrency", "set", pool, "1")
        assert done.returncode == 0, done.stderr[-2000:]
    with open_instance(prod_home) as instance:
        limits = {p.name: (p.limit, p.from_default) for p in instance.event_log_storage.get_pool_limits()}
    assert limits == {"gpu": (1, False), "sheets": (1, False)}


@pytest.mark.slow
def test_a_day_materialized_and_read_back_from_postgres(prod_home, workspace):
    with open_instance(prod_home) as instance:
        run_id = workspace.add_sample().materialize(DAY, instance=instance).run_id

    with open_instance(prod_home) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == DAY

        for asset in ASSETS:
            day_of_asset = dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[DAY])
            records = instance.fetch_materializations(day_of_asset, limit=5).records
            assert [(r.run_id, r.partition_key) for r in records] == [(run_id, DAY)], asset.key
        raw = instance.fetch_materializations(dg.AssetKey("raw_items"), limit=1).records[0]
        assert raw.asset_materialization.metadata["items"].value == 36

        check_keys = [key for asset in ASSETS for key in asset.check_keys]
        assert len(check_keys) == 10
        executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            check_keys, partition_filter=PartitionKeyFilter(key=DAY)
        )
        assert set(executions) == set(check_keys)
        for key, execution in executions.items():
            evaluation = execution.event.dagster_event.asset_check_evaluation_data
            assert (execution.run_id, execution.partition) == (run_id, DAY), key
            assert execution.status == AssetCheckExecutionRecordStatus.SUCCEEDED, key
            assert evaluation.passed and evaluation.partition == DAY, key

        # The embedding and export steps took their pool slots in Postgres, at the default limit, and gave them back.
        limits = {p.name: (p.limit, p.from_default) for p in instance.event_log_storage.get_pool_limits()}
        assert limits == {"gpu": (1, True), "sheets": (1, True)}
        assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0


@contextmanager
def service(args: list[str], log: Path):
    """A long-running Dagster process on the production instance, stopped (and waited for) afterwards."""
    with open(log, "w") as out:
        process = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


@pytest.mark.slow
def test_liveness_probes_of_daemon_and_webserver_on_postgres(prod_home):
    """The probes of docs/instance.md, against a daemon and a webserver that share the Postgres instance."""
    not_yet = cli("dagster-daemon", "liveness-check")
    assert (not_yet.returncode, not_yet.stdout.strip()) == (1, "Daemon(s) not running")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon_log, web_log = prod_home / "daemon.log", prod_home / "webserver.log"
    with (
        service(["dagster-daemon", "run", "-w", "workspace.yaml"], daemon_log) as daemon,
        service(["dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"], web_log) as web,
        open_instance(prod_home) as instance,
    ):
        deadline = time.monotonic() + 120
        info = None
        while time.monotonic() < deadline and daemon.poll() is None and web.poll() is None:
            if info is None:
                with suppress(OSError):
                    info = get_json(f"{base}/server_info")
            if info is not None and all_daemons_live(instance):
                break
            time.sleep(1)
        assert daemon.poll() is None, daemon_log.read_text()[-3000:]
        assert web.poll() is None and info is not None, web_log.read_text()[-3000:]
        assert info["dagster_version"] == info["dagster_webserver_version"] == dg.__version__

        live = cli("dagster-daemon", "liveness-check")
        assert (live.returncode, live.stdout.strip()) == (0, "Daemon live"), daemon_log.read_text()[-3000:]
        # The webserver reads the same heartbeats from Postgres: every daemon this instance needs is healthy.
        statuses = get_json(f"{base}/graphql", {"query": DAEMON_HEALTH})["data"]["instance"]["daemonHealth"][
            "allDaemonStatuses"
        ]
        required = {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}
        assert {"SCHEDULER", "SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(required)
        assert all(required.values()), required
