"""`newsletter-doctor` (or `python -m newsletter_pipeline.doctor`): checks what a run needs, one line per check.

Each check is a function of the configuration that returns what it found, or raises Problem with one line per
problem, each naming the setting to fix. The command exits 1 when any check has a problem. No line ever holds
the value of a secret setting (config.SETTINGS marks them): every line is scrubbed of them before it is printed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from newsletter_pipeline.config import Config, ConfigError
from newsletter_pipeline.defs.config_checks import load_settings

NETWORK_TIMEOUT_S = 60  # a check that reaches a server (S3, Postgres) gives up after this long instead of hanging


class Problem(Exception):
    """A check failed: one line per problem."""

    def __init__(self, *lines: str):
        super().__init__("; ".join(lines))
        self.lines = list(lines)


@dataclass
class Finding:
    check: str
    found: str = ""
    problems: list[str] = field(default_factory=list)
    skipped: str = ""  # why the check did not run

    @property
    def ok(self) -> bool:
        return not self.problems


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The error's type and first line, and its root cause's (a wrapper such as 'too many retries' hides the reason)."""

    def line(e: BaseException) -> str:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__

    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = line(error) if root is error else f"{line(error)}, from {line(root)}"
    return text if len(text) <= limit else text[:limit] + "..."


def _nearest_existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


# --- the checks -------------------------------------------------------------------------------------------


def check_model(config: Config) -> str:
    """The configured encoder loads offline and embeds a sentence into a finite unit vector."""
    import numpy as np

    from newsletter_pipeline.defs.resources import resources_from_env

    embedder = resources_from_env(config.env)["embedder"]
    try:
        vectors = embedder.embed(["Doctor checks that the model loads."])
    except Exception as error:
        raise Problem(
            f"NEWSLETTER_EMBED_MODEL: {embedder.model} (backend {embedder.backend}, device {embedder.device}) does "
            "not load "
            f"offline ({_first_line(error)}); set it to all-MiniLM-L6-v2 or a local sentence-transformers folder"
        ) from None
    if vectors.shape[0] != 1 or not np.isfinite(vectors).all():
        raise Problem(f"NEWSLETTER_EMBED_MODEL: {embedder.model} loads but gives no finite vector; use another model")
    where = f"{embedder.choice.backend} on {embedder.device_used}"
    return (
        f"{embedder.model} loads offline ({where}; {embedder.choice.reason}) and embeds ({vectors.shape[1]} dimensions)"
    )


def check_landing(config: Config) -> str:
    """Every landing location lists, and its first readable file reads."""
    from newsletter_pipeline.defs.resources import resources_from_env
    from newsletter_pipeline.storage import is_s3_uri

    landing = resources_from_env(config.env)["landing"]
    found, problems = [], []
    for location in landing.locations:
        if not is_s3_uri(location) and not Path(location).is_dir():
            problems.append(
                f"NEWSLETTER_LANDING_DIR: {location} is not a folder; create it, or set NEWSLETTER_LANDING_DIR "
                "to the folder (or s3://bucket/prefix) where files land"
            )
            continue
        try:
            files = landing.list_location(location).files
            if files:
                files[0].load()
        except Exception as error:
            problems.append(
                f"NEWSLETTER_LANDING_DIR: cannot read {location} ({_first_line(error)}); check the location"
                + (
                    ", the bucket, NEWSLETTER_S3_ENDPOINT_URL and the AWS credentials"
                    if is_s3_uri(location)
                    else " and its permissions"
                )
            )
            continue
        found.append(f"{location}: {len(files)} readable files")
    if problems:
        raise Problem(*problems)
    return "; ".join(found) or "no landing location is set"


def _probe(root: str, endpoint: str | None) -> None:
    """Write a small object under `root` (a folder or s3://bucket/prefix) as the outputs are written, read it back,
    delete it."""
    from newsletter_pipeline.storage import ParquetStore, aws_region, is_s3_uri

    fs, base = ParquetStore(root, endpoint_url=endpoint).resolved  # resolved as the runs resolve it
    path = f"{base.rstrip('/')}/.doctor-probe-{uuid.uuid4().hex}"
    delete = functools.partial(fs.delete_file, path)
    if is_s3_uri(root):
        import boto3

        # boto3 deletes: pyarrow would leave an empty "folder" object behind in place of the last file of a prefix.
        bucket, _, key = path.partition("/")
        delete = functools.partial(
            boto3.client("s3", endpoint_url=endpoint, region_name=aws_region()).delete_object, Bucket=bucket, Key=key
        )
    else:
        fs.create_dir(base, recursive=True)  # as a run would
    with fs.open_output_stream(path) as stream:
        stream.write(b"newsletter-doctor probe")
    try:
        with fs.open_input_stream(path) as stream:
            if stream.read() != b"newsletter-doctor probe":
                raise OSError("the probe read back differs from what was written")
    finally:
        delete()


def _workbook_folder(config: Config) -> list[tuple[str, str]]:
    """The local workbook's folder, as (setting, folder), when exports go to it (no spreadsheet key)."""
    if config.is_set("NEWSLETTER_SPREADSHEET_KEY"):
        return []
    return [("NEWSLETTER_WORKBOOK", str(Path(config.get("NEWSLETTER_WORKBOOK")).parent))]


def check_outputs(config: Config) -> str:
    """The output root (and the local workbook's folder when Sheets is off) take a write, a read and a delete."""
    targets = [("NEWSLETTER_OUTPUT_ROOT", config.get("NEWSLETTER_OUTPUT_ROOT")), *_workbook_folder(config)]
    problems = []
    for name, root in targets:
        try:
            _probe(root, config.get("NEWSLETTER_S3_ENDPOINT_URL"))
        except Exception as error:
            problems.append(
                f"{name}: cannot write under {root} ({_first_line(error)}); set {name} to a writable "
                + ("location, and check the bucket and the AWS credentials" if root.startswith("s3://") else "location")
            )
    if problems:
        raise Problem(*problems)
    return "wrote, read and deleted a probe under " + " and ".join(root for _, root in targets)


def check_disk(config: Config) -> str:
    """At least NEWSLETTER_DOCTOR_MIN_FREE_GB free on each local disk that outputs, models, workbook or instance use."""
    least = config.number("NEWSLETTER_DOCTOR_MIN_FREE_GB")
    places = [
        (name, config.get(name)) for name in ("NEWSLETTER_OUTPUT_ROOT", "NEWSLETTER_MODEL_CACHE_DIR")
    ] + _workbook_folder(config)
    if config.is_set("DAGSTER_HOME"):
        places.append(("DAGSTER_HOME", config.get("DAGSTER_HOME")))
    found, problems, seen = [], [], set()
    for name, place in places:
        if "://" in place:  # S3 or another remote filesystem
            continue
        existing = _nearest_existing(Path(place))
        device = existing.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(existing).free / 1e9
        if free < least:
            problems.append(
                f"{name}: {free:.1f} GB free on the disk of {place}, under NEWSLETTER_DOCTOR_MIN_FREE_GB={least:g}; "
                f"free space there or move {name} to a larger disk"
            )
        else:
            found.append(f"{free:.1f} GB free for {name}")
    if problems:
        raise Problem(*problems)
    return (", ".join(found) or "nothing is on a local disk") + f" (at least {least:g} GB wanted)"


def check_instance(config: Config) -> str:
    """The Dagster instance of DAGSTER_HOME opens and answers a query (SQLite or Postgres)."""
    import dagster as dg

    home = config.get("DAGSTER_HOME")  # DagsterInstance.get() reads the same variable from os.environ
    if not home:
        raise Problem(
            "DAGSTER_HOME is not set: set it to an absolute folder holding dagster.yaml (the repo's dagster.yaml "
            "locally, deploy/dagster.prod.yaml in prod)"
        )
    if not Path(home, "dagster.yaml").is_file() and config.prod:
        raise Problem(f"DAGSTER_HOME: {home} holds no dagster.yaml; copy deploy/dagster.prod.yaml there")
    try:
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
            storage = type(instance.run_storage).__name__
    except Exception as error:
        raise Problem(
            f"DAGSTER_HOME: the instance storage of {home}/dagster.yaml is unreachable ({_first_line(error)}); check "
            "its storage settings (DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_PASSWORD, "
            "DAGSTER_PG_DB for Postgres) and that the database is up"
        ) from None
    if config.prod and "Postgres" not in storage:
        raise Problem(
            f"DAGSTER_HOME: prod keeps the instance in Postgres, but {home}/dagster.yaml uses {storage}; "
            "copy deploy/dagster.prod.yaml there"
        )
    return f"{storage} at {home} answers"


def check_sheets(config: Config) -> str:
    """When Google Sheets is configured: the key is well formed, the service-account credentials parse, and gspread
    builds a client on them. Nothing is sent to Google: whether it accepts the key and the spreadsheet is shared is
    checked by the export, at its start."""
    from newsletter_pipeline.defs.resources import SheetsResource

    key = config.get("NEWSLETTER_SPREADSHEET_KEY")
    if not key:
        return f"not configured: exports go to the workbook {config.get('NEWSLETTER_WORKBOOK')}"
    from newsletter_pipeline.publishing import sheets

    resource = SheetsResource(
        spreadsheet_key=key,
        service_account_file=config.get("GOOGLE_SERVICE_ACCOUNT_FILE"),
        service_account_json=config.get("GOOGLE_SERVICE_ACCOUNT_JSON"),
    )
    try:
        resource.validate()  # the key, the retry settings and the credentials
        credentials = sheets.load_credentials(
            file=resource.service_account_file, json_text=resource.service_account_json
        )
        sheets.install_retries(sheets.authorized_client(credentials), resource.retry_policy())
    except sheets.SheetsConfigError as error:  # its message names the variable, never the key
        raise Problem(str(error)) from None
    return (
        f"credentials of {credentials.service_account_email} parse and build a gspread client for spreadsheet {key} "
        "(not sent to Google: the export checks the key and the sharing when it starts)"
    )


PROBES: list[tuple[str, Callable[[Config], str], bool]] = [  # name, check, whether it may wait on a server
    ("model", check_model, False),
    ("landing", check_landing, True),
    ("outputs", check_outputs, True),
    ("disk", check_disk, False),
    ("instance", check_instance, True),
    ("sheets", check_sheets, False),
]


# --- running them -----------------------------------------------------------------------------------------


def _within(check: Callable[[Config], str], config: Config, seconds: float) -> str:
    """The check's answer, or a Problem when it takes longer than `seconds` (left running in a daemon thread)."""
    answer: dict = {}

    def run():
        try:
            answer["found"] = check(config)
        except BaseException as error:  # handed to the caller
            answer["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise Problem(f"no answer within {seconds:g} s; check that the server is up and reachable")
    if "error" in answer:
        raise answer["error"]
    return answer["found"]


def run_check(name: str, check: Callable[[Config], str], config: Config, timeout: float | None = None) -> Finding:
    try:
        found = _within(check, config, timeout) if timeout else check(config)
    except Problem as problem:
        return Finding(name, problems=problem.lines)
    except Exception as error:  # a failure nobody foresaw is still one line, not a traceback
        return Finding(name, problems=[f"unexpected {_first_line(error)}"])
    return Finding(name, found)


def run_checks() -> list[Finding]:
    """Every check on this process's environment; the others are skipped when the configuration is invalid."""
    try:
        config = load_settings()
    except ConfigError as error:
        findings = [Finding("configuration", problems=error.problems)]
        return findings + [Finding(name, skipped="fix the configuration first") for name, _, _ in PROBES]
    findings = [Finding("configuration", f"NEWSLETTER_PIPELINE_ENV={config.environment}, every setting valid")]
    return findings + [
        run_check(name, check, config, NETWORK_TIMEOUT_S if network else None) for name, check, network in PROBES
    ]


def scrub(line: str, secrets: list[str]) -> str:
    """The line without any secret value, nor the password of a URL."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:  # shorter ones would blot out ordinary words, and are no secret anyway
            line = line.replace(secret, "***")
    return re.sub(r"(://[^/:@\s]+):[^@\s/]+@", r"\1:***@", line)


def render(findings: list[Finding], secrets: list[str]) -> str:
    """One line per passing or skipped check, one per problem, then the verdict."""
    lines = []
    for finding in findings:
        if finding.skipped:
            lines.append(f"skipped  {finding.check}: {finding.skipped}")
        elif finding.ok:
            lines.append(f"ok       {finding.check}: {finding.found}")
        lines += [f"problem  {finding.check}: {problem}" for problem in finding.problems]
    problems = sum(len(finding.problems) for finding in findings)
    lines.append(f"{problems} problem{'s' if problems != 1 else ''}" if problems else f"all {len(findings)} checks ok")
    return "\n".join(scrub(line, secrets) for line in lines)


def main(argv: list[str] | None = None) -> int:
    """Run every check on the environment, print the report; 1 when there is any problem."""
    if argv is None:
        argv = sys.argv[1:]
    if argv:
        print(
            "usage: newsletter-doctor   (checks the deployment that the environment describes; no arguments)",
            file=sys.stderr,
        )
        return 2
    findings = run_checks()
    print(render(findings, Config(os.environ).secrets()), flush=True)
    return 0 if all(finding.ok for finding in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
