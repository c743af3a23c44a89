"""Measure a day's clusters and data, and judge the figures against thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class Outcome:
    """A check's verdict: passed, its severity when it fails, what it measured."""

    check: str
    passed: bool
    severity: str
    description: str
    metadata: dict = field(default_factory=dict)


def cluster_figures(embeddings: np.ndarray, labels: np.ndarray) -> dict:
    """The quality figures of one day's clustering."""
    n = len(labels)
    clustered = labels != NOISE
    sizes = np.bincount(labels[clustered]) if clustered.any() else np.array([], dtype=int)
    figures = {
        "items": n,
        "clusters": int((sizes > 0).sum()),
        "noise_share": float((~clustered).mean()) if n else 0.0,
        "largest_share": float(sizes.max() / n) if len(sizes) else 0.0,
        "silhouette": None,
    }
    if figures["clusters"] >= 2 and clustered.sum() > figures["clusters"]:
        from sklearn import config_context
        from sklearn.metrics import silhouette_score

        # scikit-learn computes the distances in chunks of up to `working_memory` MB (1 GB by default), so a day of
        # 10,000 items held its whole 800 MB distance matrix at once. 64 MB chunks give the same score.
        with config_context(working_memory=64):
            figures["silhouette"] = float(silhouette_score(embeddings[clustered], labels[clustered], metric="cosine"))
    return figures


def _no_items(check: str) -> Outcome:
    return Outcome(check, False, WARN, "no items on this day", {"items": 0})


def judge_clusters(
    figures: dict,
    *,
    max_noise_share: float,
    min_clusters: int,
    max_largest_share: float,
    min_silhouette: float,
    small_day: bool = False,
) -> list[Outcome]:
    """One outcome per cluster-quality check.

    On a small day (clustered by the fallback) a handful of unrelated items is a fact, not a fault: the
    checks still fail there, but as warnings, so the day still reaches the sheet.
    """
    names = ["noise_share", "cluster_count", "largest_cluster_share", "silhouette"]
    if figures["items"] == 0:
        return [_no_items(name) for name in names]
    noise, clusters, largest, silhouette = (
        figures[k] for k in ("noise_share", "clusters", "largest_share", "silhouette")
    )
    gate, note = (WARN, f" (small day of {figures['items']} items: a warning only)") if small_day else (ERROR, "")
    return [
        Outcome(
            names[0],
            noise <= max_noise_share,
            gate,
            f"noise share {noise:.1%} (limit {max_noise_share:.0%}){note}",
            {"noise_share": noise, "limit": max_noise_share},
        ),
        Outcome(
            names[1],
            clusters >= min_clusters,
            gate,
            f"{clusters} clusters (at least {min_clusters}){note}",
            {"clusters": clusters, "limit": min_clusters},
        ),
        Outcome(
            names[2],
            largest <= max_largest_share,
            WARN,
            f"largest cluster holds {largest:.1%} of items (limit {max_largest_share:.0%})",
            {"largest_share": largest, "limit": max_largest_share},
        ),
        Outcome(
            names[3],
            silhouette is None or silhouette >= min_silhouette,
            WARN,
            "silhouette not computed: fewer than 2 clusters"
            if silhouette is None
            else f"silhouette {silhouette:.3f} (at least {min_silhouette})",
            {"silhouette": silhouette, "limit": min_silhouette},
        ),
    ]


def judge_balance(records: int, items: int, duplicates: int, quarantined: int, landing_balanced: bool) -> Outcome:
    """Every record read is an item, a duplicate or quarantined: the stored tables add up to what was read."""
    stored = items + duplicates + quarantined
    passed = stored == records and landing_balanced
    description = f"{records} records = {items} items + {duplicates} duplicates + {quarantined} quarantined"
    if not passed:
        description = f"records lost: {records} read for the day, {stored} stored" + (
            "" if landing_balanced else "; the landing files do not balance"
        )
    return Outcome(
        "records_balance",
        passed,
        ERROR,
        description,
        {"records": records, "items": items, "duplicates": duplicates, "quarantined": quarantined},
    )


def judge_not_emptied(day: str, previous_items: int, items: int, acknowledged: bool) -> Outcome:
    """A day that had items does not drop to none unless the run says so: an emptied landing location (a missing
    share, a wrong path, files removed by mistake) would otherwise wipe a published day from the sheet."""
    held = previous_items > 0 and items == 0 and not acknowledged
    if held:
        description = (
            f"{day} had {previous_items} items and now has none: its outputs and sheet rows are kept. If its files were "
            "removed on purpose, re-run the day with the raw_items config allow_emptied_days: true"
        )
    elif previous_items > 0 and items == 0:
        description = f"{day} dropped from {previous_items} items to none, as the run allowed (allow_emptied_days)"
    else:
        description = f"{items} items (before: {previous_items})"
    return Outcome("day_not_emptied", not held, ERROR, description, {"items": items, "previous_items": previous_items})


def judge_quarantine(records: int, quarantined: int, *, max_quarantine_share: float) -> Outcome:
    if records == 0:
        return _no_items("quarantine_share")
    share = quarantined / records
    return Outcome(
        "quarantine_share",
        share <= max_quarantine_share,
        WARN,
        f"{quarantined} of {records} records quarantined ({share:.1%}; limit {max_quarantine_share:.0%})",
        {"quarantined": quarantined, "records": records, "share": share, "limit": max_quarantine_share},
    )


def judge_unique_ids(items: pd.DataFrame) -> Outcome:
    if items.empty:
        return _no_items("unique_item_id")
    repeated = items["item_id"][items["item_id"].duplicated()].unique().tolist()
    return Outcome(
        "unique_item_id",
        not repeated,
        ERROR,
        f"{len(repeated)} repeated item ids" if repeated else f"{len(items)} items, ids unique",
        {"items": len(items), "repeated_ids": len(repeated), "examples": ", ".join(repeated[:5])},
    )


def judge_embeddings(item_ids: pd.Series, vectors: np.ndarray, expected_ids: pd.Series, dimension: int) -> Outcome:
    if len(expected_ids) == 0:
        return _no_items("embeddings_valid")
    problems = []
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        problems.append(f"shape {vectors.shape}, expected (n, {dimension})")
    non_finite = int((~np.isfinite(vectors)).any(axis=1).sum()) if vectors.size else 0
    if non_finite:
        problems.append(f"{non_finite} vectors with NaN or infinity")
    if set(item_ids) != set(expected_ids) or len(item_ids) != len(expected_ids):
        problems.append(f"{len(item_ids)} vectors for {len(expected_ids)} items")
    return Outcome(
        "embeddings_valid",
        not problems,
        ERROR,
        "; ".join(problems) or f"{len(item_ids)} finite vectors of dimension {dimension}",
        {
            "vectors": len(item_ids),
            "dimension": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
            "non_finite": non_finite,
        },
    )


def judge_assignment(assignments: pd.DataFrame, items: pd.DataFrame) -> Outcome:
    if items.empty:
        return _no_items("every_item_assigned")
    missing = sorted(set(items["item_id"]) - set(assignments["item_id"]))
    unknown = sorted(set(assignments["item_id"]) - set(items["item_id"]))
    null_ids = int(assignments["cluster_id"].isna().sum())
    passed = not missing and not unknown and not null_ids and len(assignments) == len(items)
    return Outcome(
        "every_item_assigned",
        passed,
        ERROR,
        f"{len(items)} items assigned"
        if passed
        else f"{len(missing)} items missing, {len(unknown)} unknown, {null_ids} "
        "without a cluster id: materialize item_embeddings and umap_coordinates for the day again",
        {"items": len(items), "assigned": len(assignments), "missing": len(missing), "unknown": len(unknown)},
    )
