"""`newsletter-doctor`: a healthy setup passes every check; each broken part is one problem line, naming what to fix."""

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

from newsletter_pipeline.config import BY_NAME, load_config
from newsletter_pipeline.embedding.openvino_backend import precision
from newsletter_pipeline.operations import doctor
from newsletter_pipeline_tests import postgres
from newsletter_pipeline_tests.conftest import REPO, SAMPLE, free_port

CHECKS = ["configuration", "model", "landing", "outputs", "disk", "instance", "sheets"]
PASSWORD = "pg-Passw0rd-never-shown"


@pytest.fixture
def healthy(tmp_path, monkeypatch):
    """A local deployment in tmp_path: the sample in the landing folder, a SQLite instance, nothing else set."""
    for name in BY_NAME:  # the machine's own settings stay out; AWS_* belong to the S3 fixture
        if not name.startswith("AWS_") and name != "NUMBA_CACHE_DIR":
            monkeypatch.delenv(name, raising=False)
    shutil.copytree(SAMPLE, tmp_path / "data" / "landing")
    (tmp_path / "home").mkdir()
    shutil.copy(REPO / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    # The session's model (conftest's embedder: the shipped weights on the CPU) is loaded once and reused.
    monkeypatch.setenv("NEWSLETTER_EMBED_DEVICE", "cpu")
    monkeypatch.setenv("NEWSLETTER_MODEL_CACHE_DIR", "data/cache/models")
    return tmp_path


def run_doctor(capsys) -> tuple[int, dict[str, list[str]]]:
    """The exit status, and the printed lines by check: 'ok: ...' or 'problem: ...'."""
    status = doctor.main([])
    lines = capsys.readouterr().out.strip().splitlines()
    by_check: dict[str, list[str]] = {}
    for line in lines[:-1]:
        verdict, rest = line.split(maxsplit=1)
        check, text = rest.split(": ", 1)
        by_check.setdefault(check, []).append(f"{verdict}: {text}")
    assert list(by_check) == CHECKS
    problems = sum(line.startswith("problem") for line in lines[:-1])
    assert lines[-1] == (f"{problems} problem{'s' * (problems != 1)}" if problems else f"all {len(CHECKS)} checks ok")
    assert (status == 0) == (problems == 0)
    return status, by_check


def only_problem(by_check: dict[str, list[str]], check: str) -> list[str]:
    """The problem lines of `check`, after asserting every other check passed."""
    assert all(lines[0].startswith("ok: ") for name, lines in by_check.items() if name != check), by_check
    assert all(line.startswith("problem: ") for line in by_check[check]), by_check[check]
    return by_check[check]


def test_a_healthy_local_setup_passes_every_check(healthy, embedder, capsys):
    embedder.loaded()  # the session's model, shared with the other tests
    status, by_check = run_doctor(capsys)
    assert status == 0, by_check
    assert by_check["configuration"] == ["ok: NEWSLETTER_PIPELINE_ENV=local, every setting valid"]
    where = f"openvino on cpu (openvino {precision()}); auto: OpenVINO runs on this CPU, in {precision()}"
    assert by_check["model"] == [f"ok: all-MiniLM-L6-v2 loads offline ({where}) and embeds (384 dimensions)"]
    assert by_check["landing"] == [f"ok: {healthy}/data/landing: {len(list(SAMPLE.iterdir()))} readable files"]
    assert by_check["instance"] == [f"ok: SqliteRunStorage at {healthy}/home answers"]
    assert by_check["sheets"][0].startswith("ok: not configured: exports go to the workbook")
    # The probe is gone again.
    assert [p.name for p in (healthy / "data" / "outputs").iterdir()] == [] and [
        p.name for p in (healthy / "data" / "sheets").iterdir()
    ] == []


def test_landing_and_outputs_on_s3(healthy, s3, bucket, monkeypatch, capsys):
    for path in SAMPLE.iterdir():
        s3.client().put_object(Bucket=bucket, Key=f"landing/{path.name}", Body=path.read_bytes())
    monkeypatch.setenv("NEWSLETTER_LANDING_DIR", f"s3://{bucket}/landing")
    monkeypatch.setenv("NEWSLETTER_OUTPUT_ROOT", f"s3://{bucket}/outputs")
    monkeypatch.setenv("NEWSLETTER_S3_ENDPOINT_URL", s3.endpoint_url)
    status, by_check = run_doctor(capsys)
    assert status == 0, by_check
    assert by_check["landing"] == [f"ok: s3://{bucket}/landing: {len(list(SAMPLE.iterdir()))} readable files"]
    assert by_check["outputs"][0].startswith(f"ok: wrote, read and deleted a probe under s3://{bucket}/outputs")
    assert s3.keys(bucket, "outputs") == []  # the probe object was deleted
    # A bucket that does not exist: neither readable nor writable, and each says so.
    monkeypatch.setenv("NEWSLETTER_LANDING_DIR", "s3://no-such-bucket-here/landing")
    monkeypatch.setenv("NEWSLETTER_OUTPUT_ROOT", "s3://no-such-bucket-here/outputs")
    status, by_check = run_doctor(capsys)
    assert status == 1
    assert (
        by_check["landing"] == [by_check["landing"][0]]
        and "problem: NEWSLETTER_LANDING_DIR: cannot read s3://no-such-bucket-here/landing" in by_check["landing"][0]
    )
    assert "NoSuchBucket" in by_check["landing"][0]
    assert by_check["outputs"][0].startswith(
        "problem: NEWSLETTER_OUTPUT_ROOT: cannot write under s3://no-such-bucket-here/outputs"
    )


def _prod(monkeypatch, s3, bucket, key: dict) -> None:
    """Prod settings: the sample on S3, outputs on S3, Google Sheets credentials; the caller sets the DAGSTER_PG_* variables."""
    for path in SAMPLE.iterdir():
        s3.client().put_object(Bucket=bucket, Key=f"landing/{path.name}", Body=path.read_bytes())
    for name, value in {
        "NEWSLETTER_PIPELINE_ENV": "prod",
        "NEWSLETTER_LANDING_DIR": f"s3://{bucket}/landing",
        "NEWSLETTER_OUTPUT_ROOT": f"s3://{bucket}/outputs",
        "NEWSLETTER_S3_ENDPOINT_URL": s3.endpoint_url,
        "NEWSLETTER_SPREADSHEET_KEY": "1FakeSpreadsheetKey",
        "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
    }.items():
        monkeypatch.setenv(name, value)


def test_a_healthy_prod_setup_on_s3_sheets_and_postgres(healthy, s3, bucket, monkeypatch, capsys, service_account_key):
    server = postgres.server_from_env()  # skips without the test PostgreSQL (fails under CI)
    key = service_account_key
    _prod(monkeypatch, s3, bucket, key)
    with postgres.fresh_database(server) as database:
        for name, value in server.instance_env(database).items():
            monkeypatch.setenv(name, value)
        postgres.write_prod_home(healthy / "home")
        status, by_check = run_doctor(capsys)
    assert status == 0, by_check
    assert by_check["configuration"] == ["ok: NEWSLETTER_PIPELINE_ENV=prod, every setting valid"]
    assert by_check["instance"] == [f"ok: PostgresRunStorage at {healthy}/home answers"]
    assert by_check["sheets"][0].startswith("ok: credentials of exporter@newsletter-test.iam.gserviceaccount.com parse")
    text = str(by_check)
    assert server.password not in text and key["private_key"].splitlines()[5] not in text


def test_prod_wants_the_instance_in_postgres(healthy, monkeypatch):
    """DAGSTER_HOME still holds the local dagster.yaml (SQLite): reachable, but not what prod runs on."""
    env = {
        **os.environ,
        "NEWSLETTER_PIPELINE_ENV": "prod",
        "NEWSLETTER_LANDING_DIR": "s3://b/landing",
        "NEWSLETTER_OUTPUT_ROOT": "s3://b/outputs",
        "NEWSLETTER_SPREADSHEET_KEY": "k",
        "GOOGLE_SERVICE_ACCOUNT_FILE": "/secrets/sa.json",
        "DAGSTER_PG_HOST": "db",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USER": "u",
        "DAGSTER_PG_PASSWORD": PASSWORD,
        "DAGSTER_PG_DB": "d",
    }
    with pytest.raises(doctor.Problem) as caught:
        doctor.check_instance(load_config(env))
    assert caught.value.lines == [
        f"DAGSTER_HOME: prod keeps the instance in Postgres, but {healthy}/home/dagster.yaml uses SqliteRunStorage; "
        "copy deploy/dagster.prod.yaml there"
    ]


def test_bad_configuration_is_listed_and_the_rest_skipped(healthy, monkeypatch, capsys):
    monkeypatch.setenv("NEWSLETTER_PIPELINE_ENV", "prod")
    monkeypatch.setenv("NEWSLETTER_EMBED_BATCH_SIZE", "abc")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", PASSWORD)
    status, by_check = run_doctor(capsys)
    assert status == 1
    problems = by_check["configuration"]
    assert "problem: NEWSLETTER_EMBED_BATCH_SIZE = 'abc': set a whole number from 1 up" in problems
    assert {line.split()[1] for line in problems} >= {
        "NEWSLETTER_OUTPUT_ROOT",
        "NEWSLETTER_SPREADSHEET_KEY",
        "DAGSTER_PG_HOST",
    }
    assert all(
        lines == ["skipped: fix the configuration first"] for name, lines in by_check.items() if name != "configuration"
    )
    assert PASSWORD not in str(by_check)


def test_a_model_that_does_not_load(healthy, monkeypatch, capsys):
    monkeypatch.setenv("NEWSLETTER_EMBED_MODEL", str(healthy / "no-such-model"))
    status, by_check = run_doctor(capsys)
    assert status == 1
    [line] = only_problem(by_check, "model")
    assert line.startswith(
        f"problem: NEWSLETTER_EMBED_MODEL: {healthy}/no-such-model (backend auto, device cpu) does not load offline ("
    )
    assert line.endswith("set it to all-MiniLM-L6-v2 or a local sentence-transformers folder")


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_an_unreadable_landing_folder(healthy, monkeypatch, capsys, kind):
    landing = healthy / "elsewhere"
    if kind == "a file":
        landing.write_text("not a folder")
    monkeypatch.setenv("NEWSLETTER_LANDING_DIR", f"{healthy}/data/landing,{landing}")
    status, by_check = run_doctor(capsys)
    assert status == 1
    assert only_problem(by_check, "landing") == [
        f"problem: NEWSLETTER_LANDING_DIR: {landing} is not a folder; create it, or set "
        "NEWSLETTER_LANDING_DIR to the folder (or s3://bucket/prefix) where files land"
    ]


def test_an_unwritable_output_root(healthy, monkeypatch, capsys):
    # Root may write anywhere, so the root is made impossible instead: a folder below a regular file.
    (healthy / "blocker").write_text("a file where a folder should be")
    monkeypatch.setenv("NEWSLETTER_OUTPUT_ROOT", str(healthy / "blocker" / "outputs"))
    status, by_check = run_doctor(capsys)
    assert status == 1
    [line] = only_problem(by_check, "outputs")
    assert line.startswith(f"problem: NEWSLETTER_OUTPUT_ROOT: cannot write under {healthy}/blocker/outputs (")
    assert line.endswith("set NEWSLETTER_OUTPUT_ROOT to a writable location")


def test_too_little_disk_space(healthy, monkeypatch, capsys):
    monkeypatch.setenv("NEWSLETTER_DOCTOR_MIN_FREE_GB", "1e9")
    status, by_check = run_doctor(capsys)
    assert status == 1
    [line] = only_problem(by_check, "disk")  # the folders share one disk: one line
    assert "GB free on the disk of" in line and "under NEWSLETTER_DOCTOR_MIN_FREE_GB=1e+09" in line


def test_unreachable_instance_storage(healthy, monkeypatch, capsys):
    """The production dagster.yaml (Postgres) pointed at a port of 127.0.0.1 where nothing listens."""
    shutil.copy(REPO / "deploy" / "dagster.prod.yaml", healthy / "home" / "dagster.yaml")
    port = free_port()
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": PASSWORD,
        "DAGSTER_PG_DB": "dagster",
    }.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    status, by_check = run_doctor(capsys)
    assert status == 1
    [line] = only_problem(by_check, "instance")
    assert line.startswith(
        f"problem: DAGSTER_HOME: the instance storage of {healthy}/home/dagster.yaml is unreachable ("
    )
    assert f"port {port} failed: Connection refused" in line, line
    assert PASSWORD not in line and time.monotonic() - started < doctor.NETWORK_TIMEOUT_S


def test_instance_without_dagster_home(healthy, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME")
    status, by_check = run_doctor(capsys)
    assert only_problem(by_check, "instance") == [
        "problem: DAGSTER_HOME is not set: set it to an absolute folder holding dagster.yaml "
        "(the repo's dagster.yaml locally, deploy/dagster.prod.yaml in prod)"
    ]


def test_usable_sheets_credentials(healthy, monkeypatch, capsys, service_account_key):
    key = service_account_key
    monkeypatch.setenv("NEWSLETTER_SPREADSHEET_KEY", "1FakeSpreadsheetKey")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", json.dumps(key))
    status, by_check = run_doctor(capsys)
    assert status == 0, by_check
    assert by_check["sheets"] == [
        "ok: credentials of exporter@newsletter-test.iam.gserviceaccount.com parse and build a gspread client for "
        "spreadsheet 1FakeSpreadsheetKey (not sent to Google: the export checks the key and the sharing when it starts)"
    ]
    assert key["private_key"].splitlines()[5] not in str(by_check)


@pytest.mark.parametrize(
    "variable,value,expected",
    [
        (
            "GOOGLE_SERVICE_ACCOUNT_JSON",
            {"private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LW5ldmVyLXNob3du\n-----END PRIVATE KEY-----\n"},
            "GOOGLE_SERVICE_ACCOUNT_JSON holds a service-account key that does not load",
        ),
        (
            "GOOGLE_SERVICE_ACCOUNT_JSON",
            {"type": "authorized_user"},
            "GOOGLE_SERVICE_ACCOUNT_JSON holds a key of type 'authorized_user'",
        ),
        ("GOOGLE_SERVICE_ACCOUNT_FILE", "missing.json", "GOOGLE_SERVICE_ACCOUNT_FILE names"),
    ],
)
def test_bad_sheets_credentials(healthy, monkeypatch, capsys, variable, value, expected, service_account_key):
    key = {**service_account_key, **value} if isinstance(value, dict) else None
    monkeypatch.setenv("NEWSLETTER_SPREADSHEET_KEY", "1FakeSpreadsheetKey")
    monkeypatch.setenv(variable, json.dumps(key) if key else str(healthy / value))
    status, by_check = run_doctor(capsys)
    assert status == 1
    [line] = only_problem(by_check, "sheets")
    assert line.startswith(f"problem: {expected}"), line
    assert "c2VjcmV0LW5ldmVyLXNob3du" not in line and (key is None or key["private_key"][40:80] not in line)


def test_a_check_that_hangs_gives_up():
    outcome = doctor.run_check("instance", lambda config: time.sleep(30), load_config({}), timeout=0.2)
    assert outcome.problems == ["no answer within 0.2 s; check that the server is up and reachable"]


def test_lines_never_hold_secrets():
    line = "could not connect to postgresql://dagster:s3cr3t-pw@db:5432/dagster with token tok-123456"
    assert (
        doctor.scrub(line, ["tok-123456"])
        == "could not connect to postgresql://dagster:***@db:5432/dagster with token ***"
    )


def test_console_script_and_module_entry_point():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"newsletter-doctor": "newsletter_pipeline.operations.doctor:main"}
    # The module runs the same main and exits 1 on a problem (here the configuration, so nothing heavy loads).
    env = {**os.environ, "NEWSLETTER_PIPELINE_ENV": "staging", "DAGSTER_PG_PASSWORD": PASSWORD}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter_pipeline.operations.doctor"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert (
        done.stdout.splitlines()[0]
        == "problem  configuration: NEWSLETTER_PIPELINE_ENV = 'staging': set one of local, prod"
    )
    assert done.stdout.splitlines()[-2:] == ["skipped  sheets: fix the configuration first", "1 problem"]
    assert PASSWORD not in done.stdout + done.stderr
