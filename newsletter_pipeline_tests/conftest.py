"""Shared fixtures: the sample data, a workspace of temporary folders, and one model per test session."""

import os
import shutil
import socket
from pathlib import Path

import dagster as dg
import pytest

from newsletter_pipeline.defs.assets import ASSETS
from newsletter_pipeline.defs.io_manager import OutputStore
from newsletter_pipeline.defs.resources import (
    ClusteringResource,
    EmbeddingResource,
    LandingFolder,
    SheetsResource,
)
from newsletter_pipeline.storage import ParquetStore

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SAMPLE_DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
DATASETS = REPO.parent / "shared" / "datasets"


def needs_datasets(name: str) -> Path:
    """The path of a shared dataset, or skip the test with the reason."""
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} is absent: real-data tests need ../shared/datasets beside the repo")
    return path


def unavailable(reason: str, in_ci: str) -> None:
    """Skip for want of a service or program; under CI=true, where .ci/run provides it, fail with `in_ci` instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; {in_ci}")
    pytest.skip(reason)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (closed again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def service_account_key() -> dict:
    """A well-formed service-account key (a fresh RSA key; nothing real)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return {
        "type": "service_account",
        "project_id": "newsletter-test",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": "exporter@newsletter-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


class Workspace:
    """Temporary landing, output and workbook locations, and the resources that point at them."""

    def __init__(self, root: Path, embedder: EmbeddingResource):
        self.root = root
        self.landing = root / "landing"
        self.outputs = root / "outputs"
        self.workbook = root / "sheets" / "clusters.xlsx"
        self.landing.mkdir(parents=True)
        self.embedder = embedder
        self.clustering = ClusteringResource()

    def add_sample(self) -> "Workspace":
        for path in SAMPLE.iterdir():
            shutil.copy(path, self.landing / path.name)
        return self

    def resources(self) -> dict:
        return {
            "landing": LandingFolder(path=str(self.landing)),
            "store": OutputStore(root=str(self.outputs)),
            "embedder": self.embedder,
            "clustering": self.clustering,
            "sheets": SheetsResource(workbook_path=str(self.workbook)),
        }

    @property
    def store(self):
        return OutputStore(root=str(self.outputs)).parquet

    def materialize(self, day: str, instance: dg.DagsterInstance | None = None, **kwargs):
        return dg.materialize(
            ASSETS,
            partition_key=day,
            resources=self.resources(),
            instance=instance or dg.DagsterInstance.ephemeral(),
            **kwargs,
        )

    def materialize_range(self, first: str, last: str, instance: dg.DagsterInstance | None = None, **kwargs):
        """Every day from `first` to `last` in one run, as a single-run backfill (or the CLI's --partition-range) makes it."""
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        return dg.materialize(
            ASSETS, tags=tags, resources=self.resources(), instance=instance or dg.DagsterInstance.ephemeral(), **kwargs
        )


@pytest.fixture(scope="session")
def embedder() -> EmbeddingResource:
    """The shipped all-MiniLM-L6-v2 on the CPU; loaded once and cached for the session."""
    return EmbeddingResource(device="cpu")


@pytest.fixture
def workspace(tmp_path: Path, embedder: EmbeddingResource) -> Workspace:
    return Workspace(tmp_path, embedder)


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1, one per test module."""
    pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    from newsletter_pipeline_tests.s3_server import moto_s3_server

    with moto_s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3) -> str:
    return s3.new_bucket()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ParquetStore:
    """The same store on local disk and on S3."""
    if request.param == "local":
        return ParquetStore(str(tmp_path / "outputs"))
    s3 = request.getfixturevalue("s3")
    return ParquetStore(f"s3://{s3.new_bucket()}/outputs", endpoint_url=s3.endpoint_url)
