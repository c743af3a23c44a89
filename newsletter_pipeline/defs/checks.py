"""The asset checks, each declared once: its name, asset, severity, description and the judge that decides it.

The specs on the assets, the results they report, and the README's table of checks all come from these declarations.
Every check is blocking: a failure of ERROR severity stops the assets downstream in the same run (so the day never
reaches the sheet); a WARN failure never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import dagster as dg

from newsletter_pipeline import quality
from newsletter_pipeline.defs.params import QualityThresholds
from newsletter_pipeline.defs.partitions import daily_partitions

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class Check:
    """One asset check. `judge` returns a quality.Verdict; `limit` names the QualityThresholds field it is judged
    against (passed to the judge by that name); `small_day_warns`: on a small day (fewer items than
    ReduceParams.min_items, clustered by the fallback) a failure only warns."""

    name: str
    asset: str
    severity: str
    description: str
    judge: Callable[..., quality.Verdict]
    limit: str | None = None
    small_day_warns: bool = False

    @property
    def fails_as(self) -> str:
        return f"{self.severity} (WARN on a small day)" if self.small_day_warns else self.severity

    def spec(self) -> dg.AssetCheckSpec:
        """Partitioned like the assets, so each result is recorded against its day.

        Partitioned check specs are a preview feature of Dagster 1.13 (it warns so); the pinned version is the one
        tested here.
        """
        return dg.AssetCheckSpec(
            self.name,
            asset=self.asset,
            description=f"{self.description} Fails as {self.fails_as}; a day without items only warns.",
            blocking=True,
            partitions_def=daily_partitions,
        )

    def evaluate(self, *args, limits: QualityThresholds | None = None, small_day: bool = False, **kwargs) -> Outcome:
        """The judge's verdict on this day's figures (the judge's arguments), with the severity it fails as.

        `limits`: the thresholds, for a check with a `limit`. On a small day a handful of unrelated items is a fact,
        not a fault: a check with `small_day_warns` still fails there, as a warning, so the day still reaches the sheet.
        """
        if self.limit:
            kwargs[self.limit] = getattr(limits or QualityThresholds(), self.limit)
        verdict = self.judge(*args, **kwargs)
        if small_day and self.small_day_warns:
            verdict = replace(verdict, description=f"{verdict.description} (small day: a warning only)", warn_only=True)
        return Outcome(self, verdict)


@dataclass(frozen=True)
class Outcome:
    """A check's result for one day."""

    check: Check
    verdict: quality.Verdict

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def severity(self) -> str:
        return WARN if self.verdict.warn_only else self.check.severity

    @property
    def description(self) -> str:
        return self.verdict.description

    @property
    def metadata(self) -> dict:
        return self.verdict.metadata


UNIQUE_ITEM_ID = Check(
    "unique_item_id",
    "raw_items",
    ERROR,
    # A guard on the stored table: parsing keeps one copy of a repeated id, and joins downstream rely on it.
    "Every item_id occurs once in the day's stored items.",
    quality.judge_unique_ids,
)
RECORDS_BALANCE = Check(
    "records_balance",
    "raw_items",
    ERROR,
    "Records read = items + duplicates + quarantined: nothing is lost.",
    quality.judge_balance,
)
QUARANTINE_SHARE = Check(
    "quarantine_share",
    "raw_items",
    WARN,
    "At most max_quarantine_share of the day's records is quarantined: more means a source changed its format.",
    quality.judge_quarantine,
    limit="max_quarantine_share",
)
DAY_NOT_EMPTIED = Check(
    "day_not_emptied",
    "raw_items",
    ERROR,
    "A day that had items does not drop to none unless the run allows it (allow_emptied_days); a held day keeps its "
    "outputs and sheet rows.",
    quality.judge_not_emptied,
)
EMBEDDINGS_VALID = Check(
    "embeddings_valid",
    "item_embeddings",
    ERROR,
    "One finite vector of the model's dimension per item.",
    quality.judge_embeddings,
)
EVERY_ITEM_ASSIGNED = Check(
    "every_item_assigned",
    "clusters",
    ERROR,
    "Every item of the day has a cluster id (-1 for noise).",
    quality.judge_assignment,
)
NOISE_SHARE = Check(
    "noise_share",
    "clusters",
    ERROR,
    "The share of items left as noise is at most max_noise_share.",
    quality.judge_noise_share,
    limit="max_noise_share",
    small_day_warns=True,
)
CLUSTER_COUNT = Check(
    "cluster_count",
    "clusters",
    ERROR,
    "At least min_clusters clusters.",
    quality.judge_cluster_count,
    limit="min_clusters",
    small_day_warns=True,
)
LARGEST_CLUSTER_SHARE = Check(
    "largest_cluster_share",
    "clusters",
    WARN,
    "No cluster holds more than max_largest_share of the day: above it, likely several stories merged.",
    quality.judge_largest_share,
    limit="max_largest_share",
)
SILHOUETTE = Check(
    "silhouette",
    "clusters",
    WARN,
    "Clusters are tighter than chance: silhouette (cosine, on the embeddings) at least min_silhouette.",
    quality.judge_silhouette,
    limit="min_silhouette",
)

ALL = (
    UNIQUE_ITEM_ID,
    RECORDS_BALANCE,
    QUARANTINE_SHARE,
    DAY_NOT_EMPTIED,
    EMBEDDINGS_VALID,
    EVERY_ITEM_ASSIGNED,
    NOISE_SHARE,
    CLUSTER_COUNT,
    LARGEST_CLUSTER_SHARE,
    SILHOUETTE,
)


CLUSTER_QUALITY = (NOISE_SHARE, CLUSTER_COUNT, LARGEST_CLUSTER_SHARE, SILHOUETTE)


def judge_clusters(figures: dict, limits: QualityThresholds, small_day: bool = False) -> list[Outcome]:
    """The cluster-quality checks on a day's figures (quality.cluster_figures)."""
    return [check.evaluate(figures, limits=limits, small_day=small_day) for check in CLUSTER_QUALITY]


def of_asset(asset: str) -> tuple[Check, ...]:
    """The checks of `asset`, in declaration order."""
    return tuple(check for check in ALL if check.asset == asset)


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [check.spec() for check in of_asset(asset)]


def reference_table() -> str:
    """The README's table of checks (`python -m newsletter_pipeline.defs.checks` prints it)."""
    defaults = QualityThresholds()
    rows = ["| asset | check | limit (default) | fails as |", "|---|---|---|---|"]
    for c in ALL:
        limit = f"`{c.limit}` ({getattr(defaults, c.limit)})" if c.limit else ""
        rows.append(f"| `{c.asset}` | `{c.name}`: {c.description} | {limit} | {c.fails_as} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
