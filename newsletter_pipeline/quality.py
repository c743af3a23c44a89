"""Measure a day's clusters and data, and judge the figures against thresholds.

Each judge returns a Verdict: whether the figure passes, what it measured. Which check it serves, and how a failure
counts (ERROR or WARN), is declared once with the check, in defs/checks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE


@dataclass(frozen=True)
class Verdict:
    """A judge's finding: passed, what it measured. `warn_only`: a failure only warns, whatever the check's severity
    (a day without items, a small day, where the figure says little about the pipeline)."""

    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
    warn_only: bool = False


NO_ITEMS = Verdict(False, "no items on this day", {"items": 0}, warn_only=True)


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


def judge_noise_share(figures: dict, *, max_noise_share: float) -> Verdict:
    """The share of items left as noise is at most `max_noise_share`."""
    if figures["items"] == 0:
        return NO_ITEMS
    noise = figures["noise_share"]
    return Verdict(
        noise <= max_noise_share,
        f"noise share {noise:.1%} (limit {max_noise_share:.0%})",
        {"noise_share": noise, "limit": max_noise_share},
    )


def judge_cluster_count(figures: dict, *, min_clusters: int) -> Verdict:
    """At least `min_clusters` clusters."""
    if figures["items"] == 0:
        return NO_ITEMS
    clusters = figures["clusters"]
    return Verdict(
        clusters >= min_clusters,
        f"{clusters} clusters (at least {min_clusters})",
        {"clusters": clusters, "limit": min_clusters},
    )


def judge_largest_share(figures: dict, *, max_largest_share: float) -> Verdict:
    """No cluster holds more than `max_largest_share` of the day."""
    if figures["items"] == 0:
        return NO_ITEMS
    largest = figures["largest_share"]
    return Verdict(
        largest <= max_largest_share,
        f"largest cluster holds {largest:.1%} of items (limit {max_largest_share:.0%})",
        {"largest_share": largest, "limit": max_largest_share},
    )


def judge_silhouette(figures: dict, *, min_silhouette: float) -> Verdict:
    """The silhouette is at least `min_silhouette`; it passes when there are too few clusters to compute it."""
    if figures["items"] == 0:
        return NO_ITEMS
    silhouette = figures["silhouette"]
    return Verdict(
        silhouette is None or silhouette >= min_silhouette,
        "silhouette not computed: fewer than 2 clusters"
        if silhouette is None
        else f"silhouette {silhouette:.3f} (at least {min_silhouette})",
        {"silhouette": silhouette, "limit": min_silhouette},
    )


def judge_balance(records: int, items: int, duplicates: int, quarantined: int, landing_balanced: bool) -> Verdict:
    """Every record read is an item, a duplicate or quarantined: the stored tables add up to what was read."""
    stored = items + duplicates + quarantined
    passed = stored == records and landing_balanced
    description = f"{records} records = {items} items + {duplicates} duplicates + {quarantined} quarantined"
    if not passed:
        description = f"records lost: {records} read for the day, {stored} stored" + (
            "" if landing_balanced else "; the landing files do not balance"
        )
    return Verdict(
        passed,
        description,
        {"records": records, "items": items, "duplicates": duplicates, "quarantined": quarantined},
    )


def judge_not_emptied(day: str, previous_items: int, items: int, acknowledged: bool) -> Verdict:
    """A day that had items does not drop to none unless the run says so: an emptied landing location (a missing
    share, a wrong path, files removed by mistake) would otherwise wipe a published day from the sheet."""
    held = previous_items > 0 and items == 0 and not acknowledged
    if held:
        description = (
            f"{day} had {previous_items} items and now has none: its outputs and sheet rows are kept. If its files "
            "were removed on purpose, re-run the day with the raw_items config allow_emptied_days: true"
        )
    elif previous_items > 0 and items == 0:
        description = f"{day} dropped from {previous_items} items to none, as the run allowed (allow_emptied_days)"
    else:
        description = f"{items} items (before: {previous_items})"
    return Verdict(not held, description, {"items": items, "previous_items": previous_items})


def judge_quarantine(records: int, quarantined: int, *, max_quarantine_share: float) -> Verdict:
    """At most `max_quarantine_share` of the day's records are quarantined; more means a source changed its format."""
    if records == 0:
        return NO_ITEMS
    share = quarantined / records
    return Verdict(
        share <= max_quarantine_share,
        f"{quarantined} of {records} records quarantined ({share:.1%}; limit {max_quarantine_share:.0%})",
        {"quarantined": quarantined, "records": records, "share": share, "limit": max_quarantine_share},
    )


def judge_unique_ids(items: pd.DataFrame) -> Verdict:
    """Every item_id occurs once in the stored items: joins downstream rely on it."""
    if items.empty:
        return NO_ITEMS
    repeated = items["item_id"][items["item_id"].duplicated()].unique().tolist()
    return Verdict(
        not repeated,
        f"{len(repeated)} repeated item ids" if repeated else f"{len(items)} items, ids unique",
        {"items": len(items), "repeated_ids": len(repeated), "examples": ", ".join(repeated[:5])},
    )


def judge_embeddings(item_ids: pd.Series, vectors: np.ndarray, expected_ids: pd.Series, dimension: int) -> Verdict:
    """One finite vector of `dimension` per expected item: `item_ids` and `vectors` as stored, `expected_ids` the day's
    items."""
    if len(expected_ids) == 0:
        return NO_ITEMS
    problems = []
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        problems.append(f"shape {vectors.shape}, expected (n, {dimension})")
    non_finite = int((~np.isfinite(vectors)).any(axis=1).sum()) if vectors.size else 0
    if non_finite:
        problems.append(f"{non_finite} vectors with NaN or infinity")
    if set(item_ids) != set(expected_ids) or len(item_ids) != len(expected_ids):
        problems.append(f"{len(item_ids)} vectors for {len(expected_ids)} items")
    return Verdict(
        not problems,
        "; ".join(problems) or f"{len(item_ids)} finite vectors of dimension {dimension}",
        {
            "vectors": len(item_ids),
            "dimension": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
            "non_finite": non_finite,
        },
    )


def judge_assignment(assignments: pd.DataFrame, items: pd.DataFrame) -> Verdict:
    """Every item of the day has a row in `assignments` with a cluster id, and no row names an unknown item."""
    if items.empty:
        return NO_ITEMS
    missing = sorted(set(items["item_id"]) - set(assignments["item_id"]))
    unknown = sorted(set(assignments["item_id"]) - set(items["item_id"]))
    null_ids = int(assignments["cluster_id"].isna().sum())
    passed = not missing and not unknown and not null_ids and len(assignments) == len(items)
    return Verdict(
        passed,
        f"{len(items)} items assigned"
        if passed
        else f"{len(missing)} items missing, {len(unknown)} unknown, {null_ids} "
        "without a cluster id: materialize item_embeddings and umap_coordinates for the day again",
        {"items": len(items), "assigned": len(assignments), "missing": len(missing), "unknown": len(unknown)},
    )
