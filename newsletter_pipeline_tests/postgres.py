"""The test PostgreSQL that .ci/run starts (NEWSLETTER_TEST_POSTGRES_URL): a fresh database per test, and the
production instance settings (deploy/dagster.prod.yaml) pointed at it."""

import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2

from newsletter_pipeline_tests import conftest
from newsletter_pipeline_tests.conftest import REPO

URL_VARIABLE = "NEWSLETTER_TEST_POSTGRES_URL"
PROD_INSTANCE_YAML = REPO / "deploy" / "dagster.prod.yaml"


def unavailable(reason: str) -> None:
    conftest.unavailable(reason, "CI must run the Postgres tests (.ci/run starts PostgreSQL)")


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server and a role that may create databases; the password stays out of repr and messages."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    def connect(self, database: str | None = None):
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )

    def instance_env(self, database: str) -> dict[str, str]:
        """The variables deploy/dagster.prod.yaml reads, for `database` on this server."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": database,
        }


def server_from_env() -> Server:
    """The server named by NEWSLETTER_TEST_POSTGRES_URL, once it answers; else skip (fail under CI) with the reason."""
    url = os.environ.get(URL_VARIABLE)
    if not url:
        unavailable(f"{URL_VARIABLE} is not set: .ci/run starts PostgreSQL on 127.0.0.1 and sets it (docs/instance.md)")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not (
        parts.hostname and parts.username and parts.path.strip("/")
    ):
        unavailable(f"{URL_VARIABLE} must look like postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    server = Server(
        host=parts.hostname,
        port=parts.port or 5432,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        database=parts.path.strip("/"),
    )
    try:
        server.connect().close()
    except psycopg2.OperationalError as error:
        # psycopg2's message names host, port and user, never the password.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        unavailable(f"PostgreSQL at {server.host}:{server.port} is not reachable as {server.user}: {first_line}")
    return server


@contextmanager
def fresh_database(server: Server):
    """An empty database of its own, dropped afterwards: each test starts with no runs or events."""
    name = f"newsletter_test_{uuid.uuid4().hex[:12]}"
    admin = server.connect()
    admin.autocommit = True  # CREATE and DROP DATABASE cannot run in a transaction
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def write_prod_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the production file itself, so that file is what gets tested."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROD_INSTANCE_YAML, home / "dagster.yaml")
    return home
