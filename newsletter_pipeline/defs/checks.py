"""The checks of each asset: names, descriptions and specs."""

import dagster as dg

from newsletter_pipeline.defs.partitions import daily_partitions

# Blocking: a failure of ERROR severity stops the assets downstream in the same run; WARN never does.
CHECKS = {
    # A guard on the stored table: parsing keeps one copy of a repeated id, and joins downstream rely on it.
    "raw_items": {
        "unique_item_id": "Every item_id occurs once in the day's stored items.",
        "records_balance": "Records read = items + duplicates + quarantined: nothing is lost (ERROR).",
        "quarantine_share": "At most the limit's share of the day's records is quarantined (WARN).",
        "day_not_emptied": "A day that had items keeps them unless the run allows it to drop to none (allow_emptied_days); "
        "a held day keeps its outputs and sheet rows (ERROR).",
    },
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
    """Partitioned like the assets, so each check is recorded against its day.

    Partitioned check specs are a preview feature of Dagster 1.13 (it warns so); the pinned version is
    the one tested here.
    """
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True, partitions_def=daily_partitions)
        for name, text in CHECKS[asset].items()
    ]
