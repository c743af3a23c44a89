"""Late items: how much a day that readers have seen moves when a few items arrive after it was published.

For each day of the quality benchmark's sets (HuffPost weeks, AG News days), a share of its items is held back at
random; the rest is clustered with the defaults (what was published), then the whole day is clustered again (the
re-run when the late items land). Reported over the items both runs have: the ARI between the two assignments,
and the share of items whose cluster id is unchanged (a cluster's id is what its story id is made of on a day that
starts stories). Issue 14's target, once days hold still: ARI at least 0.98 with 3% late.

    .venv/bin/python -m benchmarks.late_items [--late 0.03] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from sklearn import metrics

from benchmarks.quality import pipeline_labels
from benchmarks.quality_data import available, load_sets

FAMILIES = {"huffpost-week": "HuffPost weeks (May 2018)", "agnews-day": "AG News synthetic days"}
SEED = 42  # the pipeline's UMAP seed


def late_run(embeddings: np.ndarray, late: float, holdout_seed: int) -> dict:
    """Cluster the day without a random `late` share, then whole; compare the items both runs have."""
    n = len(embeddings)
    held = np.random.default_rng(holdout_seed).choice(n, size=max(1, round(late * n)), replace=False)
    kept = np.setdiff1d(np.arange(n), held)
    before = pipeline_labels(embeddings[kept], SEED)
    after = pipeline_labels(embeddings, SEED)[kept]
    return {"ari": metrics.adjusted_rand_score(before, after), "same_id": float((before == after).mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--late", type=float, default=0.03, help="share of a day's items that arrive late (0.03)")
    parser.add_argument("--repeats", type=int, default=2, help="random hold-backs per day (2)")
    args = parser.parse_args(argv)
    if not available():
        print("../shared/datasets is absent: the late-items benchmark needs the HuffPost and AG News files")
        return 2
    print("| set | items | late | ARI, mean (min) | same cluster id, mean |\n|---|---|---|---|---|")
    for family, title in FAMILIES.items():
        runs = []
        for labelled in (s for s in load_sets() if s.family == family):
            figures = [late_run(labelled.embeddings, args.late, seed) for seed in range(args.repeats)]
            runs += figures
            aris = [f["ari"] for f in figures]
            print(
                f"| {labelled.name} | {len(labelled.embeddings)} | {args.late:.0%} | {np.mean(aris):.3f} "
                f"({min(aris):.3f}) | {np.mean([f['same_id'] for f in figures]):.1%} |"
            )
        aris = [f["ari"] for f in runs]
        print(
            f"| **{title}** | | {args.late:.0%} | **{np.mean(aris):.3f}** ({min(aris):.3f}) | "
            f"**{np.mean([f['same_id'] for f in runs]):.1%}** |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
