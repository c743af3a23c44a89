"""Late items: how much a day that readers have seen moves when a few items arrive after it was published.

For each day of the quality benchmark's sets (HuffPost weeks, AG News days), a share of its items is held back at
random and the rest clustered with the defaults (what was published); then the late items land and the day is
materialized again, as the `clusters` asset does it: the stored clusters kept and the late items placed in them
(clustering.hold), or the whole day clustered again when more than `recluster_share` of it is new. Reported over
the items both runs have: the ARI between the two assignments, the share of unchanged cluster ids and the share of
unchanged story ids (stories.tracking on the day's clusters, no earlier day; a day that holds still keeps its
items' stories as the `stories` asset does), beside what clustering the whole day again would give. The cost of
holding still: the day published at 70% of its items and grown by ten increments of 3%, scored against the labels
(NMI, ARI) next to one full clustering of the same items.

    .venv/bin/python -m benchmarks.late_items [--late 0.03] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from sklearn import metrics

from benchmarks.quality import pipeline_labels
from benchmarks.quality_data import available, load_sets
from newsletter_pipeline.clustering import hold
from newsletter_pipeline.defs.params import ClusterParams, StoryParams
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.stories import tracking

FAMILIES = {"huffpost-week": "HuffPost weeks (May 2018)", "agnews-day": "AG News synthetic days"}
SEED = 42  # the pipeline's UMAP seed
RECLUSTER_SHARE = ClusteringResource().recluster_share
ASSIGN = ClusterParams().assign_similarity


def materialize(embeddings: np.ndarray, rows: np.ndarray, stored: dict | None) -> dict:
    """The day's clustering after a materialization of the items `rows` (sorted), as the asset makes it."""
    decision = hold.decide(
        None if stored is None else set(stored["rows"].tolist()),
        set(rows.tolist()),
        settings_changed=False,
        items_at_full=0 if stored is None else stored["items_at_full"],
        recluster_share=RECLUSTER_SHARE,
    )
    if not decision.keep:
        return {
            "rows": rows,
            "labels": pipeline_labels(embeddings[rows], SEED),
            "items_at_full": len(rows),
            "kept": False,
        }
    new = np.setdiff1d(rows, stored["rows"])
    placed, _, _ = hold.place_new_items(embeddings[stored["rows"]], stored["labels"], embeddings[new], ASSIGN)
    order = np.argsort(np.concatenate([stored["rows"], new]))
    labels = np.concatenate([stored["labels"], placed])[order]
    return {"rows": rows, "labels": labels, "items_at_full": stored["items_at_full"], "kept": True}


def story_ids(embeddings: np.ndarray, rows: np.ndarray, labels: np.ndarray, kept: dict | None = None) -> dict:
    """Row -> the story it counts in, as the `stories` asset makes them from the day's clusters (no earlier day:
    every story starts here, named after its cluster or its item); `kept`, the stories of a day that holds still."""
    items = pd.DataFrame({"item_id": [f"{r:08d}" for r in rows], "cluster_id": labels, "headline": ""})
    kept = {f"{r:08d}": story for r, story in (kept or {}).items()}
    params = StoryParams().model_dump()
    tracked = tracking.track_items(None, "2018-01-01", items, embeddings[rows], **params, kept=kept)
    return {int(item_id): story for item_id, story in zip(tracked.items["item_id"], tracked.items["tracked_as"])}


def late_run(embeddings: np.ndarray, late: float, holdout_seed: int) -> dict:
    """Publish the day without a random `late` share, then materialize it whole; compare the items both have."""
    n = len(embeddings)
    held = np.random.default_rng(holdout_seed).choice(n, size=max(1, round(late * n)), replace=False)
    kept = np.setdiff1d(np.arange(n), held)
    published = materialize(embeddings, kept, None)
    after = materialize(embeddings, np.arange(n), published)
    shared = after["labels"][kept]
    everything = pipeline_labels(embeddings, SEED)
    full = everything[kept]
    every, stories = np.arange(n), story_ids(embeddings, kept, published["labels"])
    # The stories asset keeps the earlier items' stories when the day held still (its clusters did).
    later = story_ids(embeddings, every, after["labels"], stories if after["kept"] else None)
    again = story_ids(embeddings, every, everything)
    return {
        "kept": after["kept"],
        "ari": metrics.adjusted_rand_score(published["labels"], shared),
        "same_id": float((published["labels"] == shared).mean()),
        "same_story": float(np.mean([later[r] == stories[r] for r in kept])),
        "full_ari": metrics.adjusted_rand_score(published["labels"], full),
        "full_same_id": float((published["labels"] == full).mean()),
        "full_same_story": float(np.mean([again[r] == stories[r] for r in kept])),
    }


def increments(embeddings: np.ndarray, truth: np.ndarray, steps: int = 10, step: float = 0.03) -> dict:
    """The day published at 70% of its items and grown by `steps` increments of `step`, against one full run."""
    n = len(embeddings)
    order = np.random.default_rng(0).permutation(n)
    start = n - round(steps * step * n)
    state, reclusterings = materialize(embeddings, np.sort(order[:start]), None), 0
    for k in range(1, steps + 1):
        state = materialize(embeddings, np.sort(order[: min(n, start + round(k * step * n))]), state)
        reclusterings += not state["kept"]
    labels, full = truth[state["rows"]], pipeline_labels(embeddings[state["rows"]], SEED)
    return {
        "held": (
            metrics.normalized_mutual_info_score(labels, state["labels"]),
            metrics.adjusted_rand_score(labels, state["labels"]),
        ),
        "full": (metrics.normalized_mutual_info_score(labels, full), metrics.adjusted_rand_score(labels, full)),
        "reclusterings": reclusterings,
    }


def _late_row(name: str, items, late: float, figures: list[dict]) -> str:
    aris = [f["ari"] for f in figures]

    def share(key: str) -> str:
        return f"{np.mean([f[key] for f in figures]):.1%}"

    return (
        f"| {name} | {items} | {late:.0%} | {sum(f['kept'] for f in figures)} of {len(figures)} | "
        f"{np.mean(aris):.3f} ({min(aris):.3f}) | {share('same_id')} | {share('same_story')} | "
        f"{np.mean([f['full_ari'] for f in figures]):.3f} | {share('full_same_id')} | {share('full_same_story')} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--late", type=float, default=0.03, help="share of a day's items that arrive late (0.03)")
    parser.add_argument("--repeats", type=int, default=2, help="random hold-backs per day (2)")
    parser.add_argument("--no-growth", action="store_true", help="skip the ten-increments table")
    args = parser.parse_args(argv)
    if not available():
        print("../shared/datasets is absent: the late-items benchmark needs the HuffPost and AG News files")
        return 2
    print(
        "| set | items | late | held still | ARI, mean (min) | same cluster id | same story id | whole day again: ARI "
        "| same id | same story id |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    growth = []
    for family, title in FAMILIES.items():
        runs = []
        for labelled in (s for s in load_sets() if s.family == family):
            figures = [late_run(labelled.embeddings, args.late, seed) for seed in range(args.repeats)]
            runs += figures
            print(_late_row(labelled.name, len(labelled.embeddings), args.late, figures))
            if not args.no_growth:
                growth.append((title, labelled.name, increments(labelled.embeddings, labelled.labels)))
        print(_late_row(f"**{title}**", "", args.late, runs))
    if growth:
        print(
            "\n| set | day | full clusterings in 10 increments | NMI held | ARI held | NMI full | ARI full |\n"
            "|---|---|---|---|---|---|---|"
        )
    for title, name, figures in growth:
        (nmi_held, ari_held), (nmi_full, ari_full) = figures["held"], figures["full"]
        print(
            f"| {title} | {name} | {figures['reclusterings']} | {nmi_held:.3f} | {ari_held:.3f} | {nmi_full:.3f} | "
            f"{ari_full:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
