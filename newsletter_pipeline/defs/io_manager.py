"""Storage in one place: every asset's tables go through OutputStore, an IO manager over storage.ParquetStore.

An asset returns its tables per day and takes its upstream tables as arguments; this module alone knows where they
live (`<root>/<table>/<YYYY-MM-DD>.parquet`, local or S3) and records the path and row count of each output.

- **What an asset returns**: `{day: {table: frame}}`, the asset's own table (named like the asset) and its side
  tables (raw_items: duplicates, quarantine; clusters: cluster_summaries; stories: story_state). A `Stored` keeps
  Parquet file metadata with a table (the model of the embeddings, the inputs of UMAP). `None` for a day (KEEP)
  leaves its stored files as they are: a held day, a result reused unchanged. Tables that belong to no day (records
  without a usable date) are written under the day name `unassigned`.
- **What an asset receives**: the upstream asset's own table, a DataFrame, with the file's metadata in `frame.attrs`.
  An input declared with `dg.AssetIn(metadata={"tables": [...]})` receives those tables instead, as a dict.
- **A range of days in one run** (a single-run backfill): the asset returns every day of the range; an input is a
  dict day -> value (`by_day` makes a one-day input look the same), as Dagster's own UPathIOManager hands it.
- **An asset that reads its own earlier output** (UMAP's reuse, the story state of the days before, the day's
  previous items) asks the same store, through the resource: `store.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from newsletter_pipeline.config import Config
from newsletter_pipeline.storage import ParquetStore

KEEP = None  # a day's value that leaves its stored tables as they are
UNASSIGNED = "unassigned"  # the day name of tables that belong to no day


@dataclass(frozen=True)
class Stored:
    """A table to write with the Parquet file metadata kept beside it (read back in `frame.attrs`)."""

    data: pd.DataFrame | pa.Table
    metadata: dict[str, str] = field(default_factory=dict)


def by_day(context: dg.AssetExecutionContext, value: Any) -> dict[str, Any]:
    """An input as {day: value} for every day of the run, whether the run has one day or a range."""
    days = context.partition_keys
    return value if len(days) > 1 else {days[0]: value}


class OutputStore(dg.ConfigurableIOManager):
    """Per-day Parquet outputs: `<root>/<table>/<YYYY-MM-DD>.parquet`, written atomically on local disk or S3."""

    root: str = Field(
        default=Config({}).get("NEWSLETTER_OUTPUT_ROOT"),
        description="Local folder, or s3://bucket/prefix, holding the Parquet outputs.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="For an s3:// root: the URL of an S3-compatible endpoint (e.g. http://127.0.0.1:9000 for MinIO); "
        "unset means AWS S3. Credentials and region come from the AWS environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION) or the default chain.",
    )

    @property
    def parquet(self) -> ParquetStore:
        """The store underneath, for an asset that reads its own earlier output and for the embedding cache."""
        return ParquetStore(self.root, endpoint_url=self.s3_endpoint_url)

    def handle_output(self, context: dg.OutputContext, obj: dict[str, dict | None] | None) -> None:
        if obj is None:  # an asset that stores nothing (sheet_export)
            return
        asset = context.asset_key.to_user_string()
        days = list(context.asset_partition_keys)
        unexpected = set(obj) - set(days) - {UNASSIGNED}
        if set(days) - set(obj) or unexpected:
            raise ValueError(f"{asset} returned days {sorted(obj)} for a run of {days}: one entry per day of the run")
        store, rows = self.parquet, {}
        for day, tables in obj.items():
            for table, value in (tables or {}).items():
                stored = value if isinstance(value, Stored) else Stored(value)
                store.write(table, day, stored.data, stored.metadata)
                if table == asset:
                    rows[day] = stored.data.num_rows if isinstance(stored.data, pa.Table) else len(stored.data)
        if len(days) == 1:
            context.add_output_metadata(
                {"path": store.path(asset, days[0]), **({"rows": rows[days[0]]} if days[0] in rows else {})}
            )
        else:
            context.add_output_metadata(
                {"path": store.path(asset, "{day}"), "rows": sum(rows.values()), "days_written": len(rows)}
            )

    def load_input(self, context: dg.InputContext) -> Any:
        asset = context.asset_key.to_user_string()
        tables = (context.definition_metadata or {}).get("tables")
        store = self.parquet

        def read(table: str, day: str) -> pd.DataFrame:
            if table != asset and not store.exists(table, day):
                # A side table an older version of the asset did not write (story_items before layout v4).
                raise FileNotFoundError(
                    f"{store.path(table, day)} does not exist: it is written by the '{asset}' asset, and its stored "
                    f"output for {day} is older than that table. Materialize '{asset}' for {day} again (with the "
                    f"assets after it: --select '{asset}*')"
                )
            return store.read(table, day)

        def load(day: str) -> pd.DataFrame | dict[str, pd.DataFrame]:
            if tables:
                return {table: read(table, day) for table in tables}
            return store.read(asset, day)

        days = list(context.asset_partition_keys)
        return load(days[0]) if len(days) == 1 else {day: load(day) for day in days}
