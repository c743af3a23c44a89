"""What an asset reports for the days of its run: metadata per day, and check results per day.

A one-day run reports on its day. A range run (a single-run backfill) materializes every day of the range
at once; Dagster then records one materialization and one result per check for the whole range, so each
day's own figures are logged too: an observation with the day's metadata and a check evaluation per
check, both against the day's partition.
"""

import base64
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.checks import ERROR, WARN, Outcome


def materialized(
    context: dg.AssetExecutionContext, asset: str, value, per_day: dict[str, dict], **run_metadata
) -> Iterator[dg.Output]:
    """Yield the asset's output (`value`, which the IO manager stores) with its metadata; on a range run, log each
    day's metadata as an observation against the day."""
    for line in progress(asset, per_day, run_metadata):
        context.log.info(line)
    if len(per_day) == 1:
        yield dg.Output(value, metadata={**next(iter(per_day.values())), **run_metadata})
    else:
        yield dg.Output(value, metadata={**_range_summary(per_day), **run_metadata})
        for day, metadata in per_day.items():
            context.log_event(dg.AssetObservation(asset_key=dg.AssetKey(asset), partition=day, metadata=metadata))


# The figures a person follows a run by, in this order: a line per day and asset at INFO (the CLI's and `make demo`'s
# progress view), the rest stays in the metadata. sheet_export logs its own line, with the sheet's totals.
PROGRESS = (
    "records",
    "items",
    "duplicates",
    "quarantined",
    "texts_encoded",
    "cache_hits",
    "clusters",
    "noise_share",
    "clustering",
    "stories",
    "items_continuing",
    "embed_seconds",
    "umap_seconds",
    "cluster_seconds",
    "landing_files",
    "files_parsed",
    "files_from_index",
)


def progress(asset: str, per_day: dict[str, dict], run_metadata: dict) -> list[str]:
    """One line per day of what `asset` made of it (`2026-11-16 clusters: items 36, clusters 6, ...`), then one for
    the figures of the whole run (embedding is done for the run at once)."""

    def figures(metadata: dict) -> str:
        shown = [(key, metadata[key]) for key in PROGRESS if isinstance(metadata.get(key), (int, float, str))]
        return ", ".join(f"{key.replace('_', ' ')} {_figure(key, value)}" for key, value in shown)

    labelled = [*((f"{day} {asset}", figures(m)) for day, m in per_day.items()), (asset, figures(run_metadata))]
    return [f"{label}: {text}" for label, text in labelled if text]


def _figure(key: str, value) -> str:
    """A share as a percentage, seconds to a tenth, anything else as it is."""
    return f"{value:.1%}" if key.endswith("share") else f"{value:.1f}" if key.endswith("seconds") else str(value)


def checked(
    context: dg.AssetExecutionContext, asset: str, outcomes: dict[str, list[Outcome]]
) -> Iterator[dg.AssetCheckResult]:
    """Yield the run's result of each check of `asset`; on a range run, log each day's result against the day."""
    key = dg.AssetKey(asset)
    for check in checks.of_asset(asset):
        by_day = {day: next(o for o in day_outcomes if o.check == check) for day, day_outcomes in outcomes.items()}
        if len(by_day) > 1:
            for day, outcome in by_day.items():
                context.log_event(
                    dg.AssetCheckEvaluation(
                        asset_key=key,
                        check_name=check.name,
                        passed=outcome.passed,
                        severity=dg.AssetCheckSeverity(outcome.severity),
                        description=f"{day}: {outcome.description}",
                        metadata=_clean(outcome.metadata),
                        blocking=True,
                        partition=day,
                    )
                )
        yield _combined(asset, check.name, by_day)


def _combined(asset: str, name: str, by_day: dict[str, Outcome]) -> dg.AssetCheckResult:
    """The run's result of one check, which decides blocking: it passes only if every day passes."""
    failed = {day: o for day, o in by_day.items() if not o.passed}
    severity = ERROR if any(o.severity == ERROR for o in (failed or by_day).values()) else WARN
    if len(by_day) == 1:
        ((day, outcome),) = by_day.items()
        description, metadata = f"{day}: {outcome.description}", {"day": day, **outcome.metadata}
    else:
        description = (
            "; ".join(f"{d}: {o.description}" for d, o in failed.items()) or f"passed on all {len(by_day)} days"
        )
        table = markdown([(d, o.passed, o.description) for d, o in by_day.items()], ("day", "passed", "figure"))
        metadata = {"days": len(by_day), "failed_days": ", ".join(failed), "per_day": table}
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=not failed,
        severity=dg.AssetCheckSeverity(severity),
        description=description,
        metadata=_clean(metadata),
    )


def _clean(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if v is not None}


def _range_summary(per_day: dict[str, dict]) -> dict:
    """Totals of a range run: the days, and a row per day of every numeric figure."""
    columns = sorted(
        {k for m in per_day.values() for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    rows = [(day, *(m.get(c, "") for c in columns)) for day, m in per_day.items()]
    return {
        "days": len(per_day),
        "first_day": min(per_day),
        "last_day": max(per_day),
        "per_day": markdown(rows, ("day", *columns)),
    }


def png_markdown(alt: str, png: bytes) -> dg.MetadataValue:
    """A PNG image as Markdown metadata, which the UI shows inline."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def markdown(rows: list[tuple], columns: tuple[str, ...]) -> dg.MetadataValue:
    """Rows as a Markdown table, as the UI shows metadata (pandas' to_markdown, through tabulate)."""
    return dg.MetadataValue.md(pd.DataFrame(list(rows), columns=list(columns)).to_markdown(index=False))
