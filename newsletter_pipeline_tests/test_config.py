"""Settings per environment: one list in config.py, the README's table generated from it, every problem at once."""

import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from newsletter_pipeline import config
from newsletter_pipeline.config import BY_NAME, ConfigError

# Every rule: config.py's own and those that need the work packages (defs/config_checks.py).
from newsletter_pipeline.defs.config_checks import load_settings as load_config
from newsletter_pipeline.defs.resources import ClusteringResource, EmbeddingResource, SheetsResource, resources_from_env
from newsletter_pipeline_tests.conftest import REPO

PACKAGE = REPO / "newsletter_pipeline"
PASSWORD, KEY_JSON = "pg-Passw0rd-never-shown", '{"type": "service_account", "private_key": "KEY-never-shown"}'
PROD = {
    "NEWSLETTER_PIPELINE_ENV": "prod",
    "NEWSLETTER_LANDING_DIR": "s3://team-bucket/landing",
    "NEWSLETTER_OUTPUT_ROOT": "s3://team-bucket/outputs",
    "NEWSLETTER_SPREADSHEET_KEY": "1AbC-def_2",
    "GOOGLE_SERVICE_ACCOUNT_JSON": KEY_JSON,
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": PASSWORD,
    "DAGSTER_PG_DB": "dagster",
}


def problems(env: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert str(caught.value).count("\n  - ") == len(caught.value.problems)  # one line each
    return caught.value.problems


def named(lines: list[str]) -> set[str]:
    """The setting each problem line starts with."""
    return {line.split()[0] for line in lines}


def test_readme_table_is_generated_from_the_settings():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Configuration\n") :]
    section = section[: section.index("\n## ", 1)]
    assert config.reference_table() in section, (
        "README's table differs: paste `python -m newsletter_pipeline.config` into it"
    )
    listed = re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE)
    assert listed == [s.name for s in config.SETTINGS]  # and no second, hand-written table


def test_every_variable_the_package_reads_is_a_setting():
    """A variable read anywhere in the package (by its name in quotes) is declared in config.py, so it is in the table."""
    read = set()
    for path in set(PACKAGE.rglob("*.py")) - {PACKAGE / "config.py"}:  # config.py declares them as fields
        read |= set(
            re.findall(
                r"[\"'](NEWSLETTER_[A-Z0-9_]+|DAGSTER_PG_[A-Z]+|GOOGLE_SERVICE_ACCOUNT_[A-Z]+)[\"']",
                path.read_text(encoding="utf-8"),
            )
        )
    assert {"NEWSLETTER_START_DATE", "NEWSLETTER_SPREADSHEET_KEY", "NEWSLETTER_UI_URL"} <= read  # the scan finds them
    assert read - set(BY_NAME) == set(), "declare these in newsletter_pipeline/config.py SETTINGS"


def test_local_defaults_are_the_embedded_defaults(tmp_path):
    resources = resources_from_env({})
    assert load_config({}).environment == "local"
    assert (
        resources["landing"].path == "data/landing"
        and resources["landing"].s3 is None
        and resources["landing"].column_map == {}
    )
    assert resources["store"].root == "data/outputs" and resources["store"].s3_endpoint_url is None
    assert (
        resources["sheets"].workbook_path == "data/sheets/newsletter_clusters.xlsx"
        and resources["sheets"].spreadsheet_key is None
    )
    # config.py's defaults are the resources' own: the table tells the truth.
    for name, resource, default in [
        ("embedder", EmbeddingResource(), resources["embedder"]),
        ("clustering", ClusteringResource(), resources["clustering"]),
        ("sheets", SheetsResource(), resources["sheets"]),
    ]:
        assert resource.model_dump() == default.model_dump(), name
    # NEWSLETTER_DATA_DIR moves every local default with it.
    moved = resources_from_env({"NEWSLETTER_DATA_DIR": str(tmp_path)})
    assert (moved["landing"].path, moved["store"].root, moved["embedder"].model_cache_dir) == (
        f"{tmp_path}/landing",
        f"{tmp_path}/outputs",
        f"{tmp_path}/cache/models",
    )


def test_existing_variables_keep_working():
    env = {
        "NEWSLETTER_EMBED_CACHE": "off",
        "NEWSLETTER_EMBED_BATCH_SIZE": "32",
        "NEWSLETTER_COLUMN_MAP": '{"Betreff": "headline"}',
        "NEWSLETTER_LANDING_DIR": "s3://b/landing, /srv/more",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "NEWSLETTER_EMBED_BACKEND": "openvino",
        "NEWSLETTER_SHEETS_TIMEOUT": "2.5",
        "NEWSLETTER_CLUSTER_ACCELERATOR": "cpu",
        "NEWSLETTER_EMBED_DEVICE": "cpu",
    }
    resources = resources_from_env(env)
    embedder = resources["embedder"]
    assert (embedder.cache, embedder.batch_size, embedder.backend, embedder.device) == (False, 32, "openvino", "cpu")
    assert (
        resources["landing"].column_map == {"Betreff": "headline"}
        and resources["landing"].s3.region_name == "eu-central-1"
    )
    assert resources["sheets"].request_timeout_seconds == 2.5 and resources["clustering"].accelerator == "cpu"


def test_every_problem_is_listed_at_once_and_secrets_never():
    env = {
        "NEWSLETTER_PIPELINE_ENV": "local",
        "NEWSLETTER_EMBED_BATCH_SIZE": "many",
        "NEWSLETTER_SCHEDULE_HOUR": "24",
        "NEWSLETTER_START_DATE": "2018-02-30",
        "NEWSLETTER_COLUMN_MAP": '{"Betreff": ',
        "NEWSLETTER_EMBED_DEVICE": "gpu",
        "NEWSLETTER_EMBED_CACHE": "maybe",
        "NEWSLETTER_SHEETS_TIMEOUT": "0",
        "NEWSLETTER_S3_ENDPOINT_URL": "127.0.0.1:9000",
        "NEWSLETTER_SPREADSHEET_KEY": "https://docs.google.com/spreadsheets/d/1AbC/edit",
        "GOOGLE_SERVICE_ACCOUNT_JSON": "[" + PASSWORD,
        "NEWSLETTER_ALERT_WEBHOOK_URL": "hooks.slack.com/services/" + PASSWORD,
        "DAGSTER_PG_PORT": "54x2",
    }
    found = problems(env)
    assert named(found) == {
        "NEWSLETTER_EMBED_BATCH_SIZE",
        "NEWSLETTER_SCHEDULE_HOUR",
        "NEWSLETTER_START_DATE",
        "NEWSLETTER_COLUMN_MAP",
        "NEWSLETTER_EMBED_DEVICE",
        "NEWSLETTER_EMBED_CACHE",
        "NEWSLETTER_SHEETS_TIMEOUT",
        "NEWSLETTER_S3_ENDPOINT_URL",
        "NEWSLETTER_SPREADSHEET_KEY",
        "GOOGLE_SERVICE_ACCOUNT_JSON",
        "NEWSLETTER_ALERT_WEBHOOK_URL",
        "DAGSTER_PG_PORT",
    }
    text = "\n".join(found)
    assert "NEWSLETTER_EMBED_BATCH_SIZE = 'many': set a whole number from 1 up" in text
    assert "NEWSLETTER_EMBED_DEVICE = 'gpu': set one of auto, cpu, cuda" in text
    assert "GOOGLE_SERVICE_ACCOUNT_JSON (value hidden): not a JSON object" in text
    assert PASSWORD not in text


def test_a_bad_environment_name_and_a_column_map_to_unknown_fields():
    found = problems({"NEWSLETTER_PIPELINE_ENV": "production", "NEWSLETTER_COLUMN_MAP": '{"Betreff": "titel"}'})
    assert found == [
        "NEWSLETTER_PIPELINE_ENV = 'production': set one of local, prod",
        'NEWSLETTER_COLUMN_MAP = \'{"Betreff": "titel"}\': maps to unknown fields titel; the fields are headline, '
        "short_description, link, date, source, source_id, authors, category",
    ]
    # Credentials without a spreadsheet key would export nowhere: named too.
    assert named(problems({"GOOGLE_SERVICE_ACCOUNT_FILE": "/secrets/sa.json"})) == {"GOOGLE_SERVICE_ACCOUNT_FILE"}
    # And a spreadsheet key without credentials would fail only when the export starts: named at load instead.
    assert named(problems({"NEWSLETTER_SPREADSHEET_KEY": "1AbC-def_2"})) == {"NEWSLETTER_SPREADSHEET_KEY"}


def test_date_format_and_landing_locations_as_a_json_array():
    found = problems({"NEWSLETTER_DATE_FORMAT": "%m/%Y", "NEWSLETTER_LANDING_DIR": '["/mnt/news, archive"'})
    assert found == [
        "NEWSLETTER_LANDING_DIR = '[\"/mnt/news, archive\"': not a JSON array of locations (Expecting ',' delimiter: "
        'line 1 column 22 (char 21)); set ["/a/folder", "s3://bucket/prefix"]',
        "NEWSLETTER_DATE_FORMAT = '%m/%Y': set a strptime format with the day, month and year, such as %d/%m/%Y or %d.%m.%Y %H:%M",
    ]
    resources = resources_from_env(
        {"NEWSLETTER_DATE_FORMAT": "%d.%m.%Y", "NEWSLETTER_LANDING_DIR": '["/mnt/news, archive", "/srv/b"]'}
    )
    assert resources["landing"].date_format == "%d.%m.%Y" and resources["landing"].locations == [
        "/mnt/news, archive",
        "/srv/b",
    ]


def test_prod_needs_s3_google_sheets_and_postgres():
    found = problems({"NEWSLETTER_PIPELINE_ENV": "prod"})
    assert named(found) == {
        "NEWSLETTER_LANDING_DIR",
        "NEWSLETTER_OUTPUT_ROOT",
        "NEWSLETTER_SPREADSHEET_KEY",
        "GOOGLE_SERVICE_ACCOUNT_FILE",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    }
    assert all("prod needs" in line for line in found)
    local_folders = problems(
        {**PROD, "NEWSLETTER_OUTPUT_ROOT": "/srv/outputs", "NEWSLETTER_LANDING_DIR": "s3://b/landing,/srv/landing"}
    )
    assert named(local_folders) == {"NEWSLETTER_OUTPUT_ROOT", "NEWSLETTER_LANDING_DIR"}
    assert all("set s3://bucket/prefix" in line for line in local_folders)
    # The same values are fine locally: only prod insists on S3.
    load_config({**PROD, "NEWSLETTER_PIPELINE_ENV": "local", "NEWSLETTER_OUTPUT_ROOT": "/srv/outputs"})


def test_prod_resources_read_s3_and_sheets_with_secrets_as_env_vars():
    config_ = load_config(PROD)
    assert config_.prod and sorted(config_.secrets()) == sorted([KEY_JSON, PASSWORD])
    resources = resources_from_env({**PROD, "GOOGLE_SERVICE_ACCOUNT_FILE": "/secrets/sa.json"})
    assert resources["landing"].locations == ["s3://team-bucket/landing"] and resources["landing"].s3 is not None
    assert resources["store"].root == "s3://team-bucket/outputs"
    sheets = resources["sheets"]
    assert sheets.destination == "Google Sheets spreadsheet 1AbC-def_2"
    # Dagster records the variables' names; the values are read when a run starts.
    assert (
        isinstance(sheets.service_account_json, dg.EnvVar)
        and sheets.service_account_json == "GOOGLE_SERVICE_ACCOUNT_JSON"
    )
    assert isinstance(sheets.service_account_file, dg.EnvVar)
    assert KEY_JSON not in repr(resources) and PASSWORD not in repr(resources)


def _import_definitions(env: dict) -> subprocess.CompletedProcess:
    script = "import sys\nimport newsletter_pipeline.definitions\nprint(sorted(m for m in ('torch', 'umap', 'sentence_transformers') if m in sys.modules))"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in BY_NAME or k in ("DAGSTER_HOME", "NUMBA_CACHE_DIR") or k.startswith("AWS_")
    }
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def test_loading_the_definitions_fails_with_one_message_naming_every_problem():
    done = _import_definitions(
        {
            "NEWSLETTER_PIPELINE_ENV": "prod",
            "NEWSLETTER_EMBED_BATCH_SIZE": "abc",
            "DAGSTER_PG_PASSWORD": PASSWORD,
            "GOOGLE_SERVICE_ACCOUNT_JSON": "{" + PASSWORD,
            "NEWSLETTER_COLUMN_MAP": "{oops}",
        }
    )
    assert done.returncode != 0
    assert done.stderr.count("ConfigError: invalid configuration (NEWSLETTER_PIPELINE_ENV=prod), 10 problems:") == 1
    for name in (
        "NEWSLETTER_EMBED_BATCH_SIZE",
        "NEWSLETTER_OUTPUT_ROOT",
        "NEWSLETTER_LANDING_DIR",
        "NEWSLETTER_SPREADSHEET_KEY",
        "GOOGLE_SERVICE_ACCOUNT_JSON (value hidden)",
        "NEWSLETTER_COLUMN_MAP",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_DB",
    ):
        assert f"  - {name}" in done.stderr, name
    assert PASSWORD not in done.stderr + done.stdout


def test_a_valid_prod_configuration_loads_without_model_code():
    # Empty values (a ConfigMap entry left blank) count as unset, in the modules that read a setting at import too.
    done = _import_definitions(
        {**PROD, "NEWSLETTER_SCHEDULE_HOUR": "", "NEWSLETTER_START_DATE": "", "NEWSLETTER_EMBED_BATCH_SIZE": ""}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"  # no torch, umap or sentence-transformers while loading
    assert PASSWORD not in done.stderr + done.stdout and "KEY-never-shown" not in done.stderr + done.stdout
