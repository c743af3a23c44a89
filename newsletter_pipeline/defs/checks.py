"""Check specs of each asset, and how a run's per-day outcomes become check results."""

from __future__ import annotations

import dagster as dg

from newsletter_pipeline.defs.partitions import daily_partitions
from newsletter_pipeline.stages.quality import ERROR, WARN, Outcome

# Blocking: a failure of ERROR severity stops the assets downstream in the same run; WARN never does.
CHECKS = {
    "raw_items": {"unique_item_id": "Every item_id occurs once in the day's items."},
    "item_embeddings": {"embeddings_valid": "One finite vector of the model's dimension per item."},
    "clusters": {
        "every_item_assigned": "Every item of the day has a cluster id (-1 for noise).",
        "noise_share": "Share of items left as noise is at most the limit (ERROR).",
        "cluster_count": "At least the minimum number of clusters (ERROR).",
        "largest_cluster_share": "No cluster holds more than the limit's share of the day (WARN).",
        "silhouette": "Clusters are tighter than chance: silhouette at least the limit (WARN).",
    },
}


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    """Partitioned like the assets, so a one-day run records each check against its day."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True, partitions_def=daily_partitions)
        for name, text in CHECKS[asset].items()
    ]


def check_results(asset: str, outcomes_by_day: dict[str, list[Outcome]]) -> list[dg.AssetCheckResult]:
    """One result per check. A run over several days passes a check only if every day passes it."""
    results = []
    for name in CHECKS[asset]:
        per_day = {day: next(o for o in outcomes if o.check == name) for day, outcomes in outcomes_by_day.items()}
        failed = {day: o for day, o in per_day.items() if not o.passed}
        severity = ERROR if any(o.severity == ERROR for o in (failed or per_day).values()) else WARN
        if len(per_day) == 1:
            (day, outcome), = per_day.items()
            description, metadata = f"{day}: {outcome.description}", {"day": day, **outcome.metadata}
        else:
            description = "; ".join(f"{d}: {o.description}" for d, o in failed.items()) or f"passed on all {len(per_day)} days"
            metadata = {"days": len(per_day), "failed_days": ", ".join(failed)}
            metadata["per_day"] = dg.MetadataValue.md(
                "| day | passed | figure |\n|---|---|---|\n" + "\n".join(f"| {d} | {o.passed} | {o.description} |" for d, o in per_day.items())
            )
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                asset_key=asset,
                passed=not failed,
                severity=dg.AssetCheckSeverity(severity),
                description=description,
                metadata={k: v for k, v in metadata.items() if v is not None},
            )
        )
    return results
