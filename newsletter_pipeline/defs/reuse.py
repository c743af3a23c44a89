"""Unchanged means skipped: a day whose step inputs are as they were keeps the step's stored output, and the step
reports again what it reported then, check results included.

After its checks, a step that uses this stores a report of the day, `<root>/reports/<asset>/<day>.parquet`: an
empty table whose metadata holds the fingerprint of the step's inputs, the day's metadata as the UI shows it, and the
check outcomes. A re-run that finds the same fingerprint on the report and on the stored output yields KEEP, the same
metadata with `reused: true`, and the same check results: with unchanged inputs, computing them again would only
give them again. The output is written before the report, so a run killed between the two leaves no report that
vouches for an output it did not write.
"""

import json
from dataclasses import asdict, dataclass

import dagster as dg
import numpy as np
import pandas as pd

from newsletter_pipeline import quality
from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.checks import Outcome
from newsletter_pipeline.storage import ParquetStore

REPORTS = "reports"
REASON = "nothing changed since the stored output was made: it stands, with what it reported then"
# The metadata values the steps report, by what they are stored as; another kind is refused when it is saved.
_KINDS = {dg.MarkdownMetadataValue: "md", dg.JsonMetadataValue: "json"}
_MAKE = {"md": dg.MetadataValue.md, "json": dg.MetadataValue.json}


@dataclass(frozen=True)
class Report:
    """What a step reported for a day: its metadata and its check outcomes."""

    metadata: dict
    outcomes: list[Outcome]


def saved(store: ParquetStore, asset: str, day: str, inputs: str, side_tables: tuple[str, ...] = ()) -> Report | None:
    """The report of `asset` for `day` when it, the stored output and each of its `side_tables` were made from
    `inputs`, else None. The step writes `inputs` into the metadata of each of those tables."""
    table = f"{REPORTS}/{asset}"
    if not all(store.made_from(t, day, inputs) for t in (asset, *side_tables, table)):
        return None
    stored = json.loads(store.read_metadata(table, day)["report"])
    by_name = {check.name: check for check in checks.of_asset(asset)}
    return Report(
        # Step times are those of the run that computed the output, not of this one: left out.
        {key: _decoded(value) for key, value in stored["metadata"].items() if not key.endswith("_seconds")},
        [Outcome(by_name[o.pop("check")], quality.Verdict(**o)) for o in stored["outcomes"]],
    )


def save(store: ParquetStore, asset: str, day: str, inputs: str, metadata: dict, outcomes: list[Outcome]) -> None:
    """Keep the day's report of `asset`, made from `inputs`; call it after the output is stored and judged."""
    report = {
        "metadata": {key: _encoded(value) for key, value in metadata.items()},
        "outcomes": [{"check": o.check.name, **asdict(o.verdict)} for o in outcomes],
    }
    text = json.dumps(report, default=_plain)
    store.write(f"{REPORTS}/{asset}", day, pd.DataFrame(), {"inputs": inputs, "report": text})


def _encoded(value):
    if isinstance(value, dg.MetadataValue):
        kind = _KINDS.get(type(value))
        if kind is None:
            raise TypeError(f"reuse cannot keep metadata of kind {type(value).__name__}: add it to reuse._KINDS")
        return {"metadata_kind": kind, "value": value.value}
    return value


def _decoded(value):
    if isinstance(value, dict) and "metadata_kind" in value:
        return _MAKE[value["metadata_kind"]](value["value"])
    return value


def _plain(value):
    """numpy numbers as Python numbers, for json."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
