"""Benchmark: cluster quality on labelled real news, against a BERTopic-default baseline on the same embeddings.

Run: .venv/bin/python -m benchmarks.quality   (about 10 minutes on 2 cores; the first run also embeds the items)

Sets (benchmarks/quality_data.py): HuffPost's full weeks of May 2018 labelled by category, and AG News cut
into synthetic days of 500 to 2,000 items labelled by class. Both methods cluster the same embeddings,
made by the pipeline's own embedding code. The pipeline is `clustering.reduce` + `clustering.cluster` with the
defaults the assets use; the baseline is BERTopic's defaults: UMAP(n_neighbors=15, n_components=5,
min_dist=0.0, metric=cosine) and HDBSCAN(min_cluster_size=10, metric=euclidean, eom).

Printed as Markdown for benchmarks/README.md: per set and per family (mean) NMI and ARI against the labels
(noise counted as one group), homogeneity, completeness, noise share, cluster count and median cluster size,
each the mean over the seeds, and seed-to-seed ARI (the first seed's clusters against each other seed's); the targets
with pass/fail; and the distributions of the quality-check figures on
every single day of HuffPost's May 2018, with a random-vector control, behind the check thresholds.
Exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
from sklearn import metrics

from benchmarks.quality_data import LabelledSet, available, load_sets, use_backend
from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, reduce
from newsletter_pipeline.defs.params import ClusterParams, ReduceParams, StoryParams

SEEDS = (42, 7, 1234)  # 42 is the pipeline's default; the others measure seed-to-seed stability
FAMILIES = {
    "huffpost-week": "HuffPost weeks (May 2018)",
    "agnews-day": "AG News synthetic days",
    "huffpost-held-out": "HuffPost held out (two-month windows)",
    "agnews-held-out": "AG News held out (other shuffle)",
}
METRICS = ["nmi", "ari", "homogeneity", "completeness", "noise", "noise_max", "clusters", "median_size", "seed_ari"]


def pipeline_labels(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """The pipeline's clustering with its defaults and the given UMAP seed."""
    reduction = reduce.reduce_embeddings(embeddings, **ReduceParams(random_state=seed).model_dump(), with_plot=False)
    return cluster.cluster_items(embeddings, reduction.cluster, reduction.method, **ClusterParams().model_dump()).labels


def baseline_labels(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """BERTopic's default UMAP and HDBSCAN (a fixed seed here, so the baseline is reproducible too)."""
    import hdbscan
    import umap

    coords = umap.UMAP(
        n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed, n_jobs=1
    ).fit_transform(embeddings)
    return hdbscan.HDBSCAN(min_cluster_size=10, metric="euclidean", cluster_selection_method="eom").fit(coords).labels_


METHODS = {"pipeline": pipeline_labels, "baseline": baseline_labels}
# The pipeline's clusters of each set at each seed, made once per benchmark run: the quality table, the check
# figures and the story figures all read the default seed's.
_PIPELINE_RUNS: dict[tuple[str, str, int], np.ndarray] = {}


def pipeline_run(labelled: LabelledSet, seed: int) -> np.ndarray:
    key = (labelled.family, labelled.name, seed)
    if key not in _PIPELINE_RUNS:
        _PIPELINE_RUNS[key] = pipeline_labels(labelled.embeddings, seed)
    return _PIPELINE_RUNS[key]


@dataclass
class Result:
    family: str
    name: str
    items: int
    method: str
    figures: dict


def score(truth: np.ndarray, labels: np.ndarray) -> dict:
    """Agreement with the true labels; noise (-1) is one more group, as the metrics see any label."""
    sizes = np.bincount(labels[labels != cluster.NOISE]) if (labels != cluster.NOISE).any() else np.array([0])
    return {
        "nmi": metrics.normalized_mutual_info_score(truth, labels),
        "ari": metrics.adjusted_rand_score(truth, labels),
        "homogeneity": metrics.homogeneity_score(truth, labels),
        "completeness": metrics.completeness_score(truth, labels),
        "noise": float((labels == cluster.NOISE).mean()),
        "clusters": int((sizes > 0).sum()),
        "median_size": float(np.median(sizes[sizes > 0])) if (sizes > 0).any() else 0.0,
    }


def run_set(labelled: LabelledSet, seeds: tuple[int, ...]) -> tuple[list[Result], bool]:
    """Both methods on one set, every seed; and whether the pipeline repeats itself exactly with the first seed."""
    results, deterministic = [], True
    for method, function in METHODS.items():
        runs = [
            pipeline_run(labelled, seed) if method == "pipeline" else function(labelled.embeddings, seed)
            for seed in seeds
        ]
        # Every figure is the mean over the seeds: one seed of the baseline moves its NMI by up to 0.08.
        per_seed = [score(labelled.labels, run) for run in runs]
        figures = {name: float(np.mean([f[name] for f in per_seed])) for name in per_seed[0]}
        figures["noise_max"] = max(f["noise"] for f in per_seed)
        figures["seed_ari"] = (
            float(np.mean([metrics.adjusted_rand_score(runs[0], other) for other in runs[1:]]))
            if len(runs) > 1
            else 1.0
        )
        results.append(Result(labelled.family, labelled.name, len(labelled.items), method, figures))
        if method == "pipeline":
            deterministic = bool(np.array_equal(runs[0], function(labelled.embeddings, seeds[0])))
    return results, deterministic


def family_means(results: list[Result]) -> dict[tuple[str, str], dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        groups.setdefault((result.family, result.method), []).append(result.figures)
    return {key: {m: float(np.mean([f[m] for f in rows])) for m in METRICS} for key, rows in groups.items()}


def _wins(results: list[Result], family: str, metric: str, margin: float = 0.0) -> str:
    """On how many sets of the family the pipeline beats the baseline by the margin."""
    by_set: dict[str, dict[str, float]] = {}
    for r in (r for r in results if r.family == family):
        by_set.setdefault(r.name, {})[r.method] = r.figures[metric]
    wins = sum(f["pipeline"] - f["baseline"] >= margin for f in by_set.values())
    return f"{wins} of {len(by_set)} sets"


def _versus(means: dict, results: list[Result], family: str, metric: str, margin: float) -> tuple[str, bool]:
    pipeline, baseline = means[(family, "pipeline")][metric], means[(family, "baseline")][metric]
    measured = (
        f"{pipeline:.3f} vs {baseline:.3f} ({pipeline - baseline:+.3f}; {_wins(results, family, metric, margin)})"
    )
    return measured, pipeline - baseline >= margin


# The pipeline's family means (NMI, ARI) of the table of 2026-11-22: later changes may not lose more than
# REFERENCE_SLACK on any of them (issue 14 kept per-day quality where it was while stories changed).
REFERENCE_2026_11_22 = {
    "huffpost-week": (0.366, 0.242),
    "agnews-day": (0.465, 0.352),
    "huffpost-held-out": (0.333, 0.159),
    "agnews-held-out": (0.455, 0.318),
}
REFERENCE_SLACK = 0.02


def targets(means: dict, results: list[Result], deterministic: bool) -> list[tuple[str, str, bool]]:
    """The targets on the sets the defaults were tuned on: (target, measured, met).

    Retired on 2026-11-24 (issue 14), still reported: HuffPost NMI 0.10 above the baseline (HuffPost's coarse
    categories cap NMI near 0.41 even with the true number of clusters) and seed-to-seed ARI 0.9 (the fixed seed
    makes a day reproducible; what readers see is measured by benchmarks.late_items)."""
    worst_noise = max(r.figures["noise_max"] for r in results if r.method == "pipeline")
    lost = {
        family: max(
            reference[0] - means[(family, "pipeline")]["nmi"], reference[1] - means[(family, "pipeline")]["ari"]
        )
        for family, reference in REFERENCE_2026_11_22.items()
        if (family, "pipeline") in means
    }
    return [
        (
            f"NMI and ARI of every family within {REFERENCE_SLACK} of the 2026-11-22 table",
            ", ".join(f"{family} {round(-loss, 3) + 0.0:+.3f}" for family, loss in lost.items()) + " (worst change)",
            all(loss <= REFERENCE_SLACK for loss in lost.values()),
        ),
        ("HuffPost weeks: ARI >= baseline + 0.05", *_versus(means, results, "huffpost-week", "ari", 0.05)),
        ("AG News days: NMI >= baseline", *_versus(means, results, "agnews-day", "nmi", 0.0)),
        ("AG News days: ARI >= baseline", *_versus(means, results, "agnews-day", "ari", 0.0)),
        ("noise share <= 15% on every set and seed", f"worst {worst_noise:.1%}", worst_noise <= 0.15),
        (
            "same input and seed: identical clusters",
            "identical on every set" if deterministic else "differs",
            deterministic,
        ),
    ]


def reported(means: dict, results: list[Result]) -> list[tuple[str, str]]:
    """Figures that were targets once (retired 2026-11-24) and are still worth watching."""
    seed_ari = min(means[(f, "pipeline")]["seed_ari"] for f in ("huffpost-week", "agnews-day"))
    return [
        ("HuffPost weeks: NMI against the baseline", _versus(means, results, "huffpost-week", "nmi", 0.0)[0]),
        ("seed-to-seed ARI", f"{seed_ari:.2f} (lower family mean)"),
    ]


def held_out(means: dict, results: list[Result]) -> list[tuple[str, str, bool]]:
    """The same comparisons on sets the defaults were not tuned on: an estimate free of selection."""
    return [
        ("HuffPost held out: NMI >= baseline", *_versus(means, results, "huffpost-held-out", "nmi", 0.0)),
        ("HuffPost held out: ARI >= baseline + 0.05", *_versus(means, results, "huffpost-held-out", "ari", 0.05)),
        ("AG News held out: NMI >= baseline", *_versus(means, results, "agnews-held-out", "nmi", 0.0)),
        ("AG News held out: ARI >= baseline", *_versus(means, results, "agnews-held-out", "ari", 0.0)),
    ]


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _figures(figures: dict) -> list[str]:
    return [
        f"{figures['nmi']:.3f}",
        f"{figures['ari']:.3f}",
        f"{figures['homogeneity']:.3f}",
        f"{figures['completeness']:.3f}",
        f"{figures['noise']:.1%}",
        f"{figures['noise_max']:.1%}",
        f"{figures['clusters']:.1f}",
        f"{figures['median_size']:.1f}",
        f"{figures['seed_ari']:.2f}",
    ]


def quality_table(results: list[Result], means: dict) -> str:
    header = [
        "set",
        "items",
        "method",
        "NMI",
        "ARI",
        "homogeneity",
        "completeness",
        "noise",
        "noise, worst seed",
        "clusters",
        "median size",
        "seed ARI",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for family, title in FAMILIES.items():
        for result in (r for r in results if r.family == family):
            lines.append(_row([result.name, result.items, result.method, *_figures(result.figures)]))
        for method in METHODS:
            lines.append(
                _row(
                    [
                        f"**{title}, mean**",
                        "",
                        f"**{method}**",
                        *(f"**{v}**" for v in _figures(means[(family, method)])),
                    ]
                )
            )
    return "\n".join(lines)


def check_figures(sets: list[LabelledSet]) -> dict[str, list[dict]]:
    """The figures the cluster-quality checks judge, on every set the pipeline might meet, and on random vectors."""
    figures: dict[str, list[dict]] = {}
    rng = np.random.default_rng(0)
    for labelled in sets:
        labels = pipeline_run(labelled, SEEDS[0])
        # Small days (below ReduceParams.min_items) take the agglomerative fallback, whose checks only warn.
        family = (
            labelled.family if len(labelled.items) >= ReduceParams().min_items else "huffpost-day, small (fallback)"
        )
        figures.setdefault(family, []).append(quality.cluster_figures(labelled.embeddings, labels))
        if labelled.family == "huffpost-day" and len(labelled.items) >= ReduceParams().min_items:
            # Control: a day of the same size whose vectors are random directions, i.e. no topics at all.
            noise = rng.standard_normal(labelled.embeddings.shape).astype(np.float32)
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            figures.setdefault("control: random vectors", []).append(
                quality.cluster_figures(noise, pipeline_labels(noise, SEEDS[0]))
            )
    return figures


def distribution_table(figures: dict[str, list[dict]]) -> str:
    header = ["sets", "n", "figure", "min", "10th pct", "median", "90th pct", "max"]
    lines = [_row(header), _row(["---"] * len(header))]
    for family, rows in figures.items():
        for figure in ("noise_share", "largest_share", "clusters", "silhouette"):
            values = np.array([r[figure] for r in rows if r[figure] is not None], dtype=float)
            if not len(values):
                continue
            cells = [
                np.min(values),
                np.percentile(values, 10),
                np.median(values),
                np.percentile(values, 90),
                np.max(values),
            ]
            shown = [f"{v:.0f}" if figure == "clusters" else f"{v:.3f}" for v in cells]
            lines.append(_row([family, len(values), figure, *shown]))
    return "\n".join(lines)


def story_table(days: list[LabelledSet]) -> str:
    """Stories over consecutive real days: how long they run, how close their items' matches are, how pure they stay.

    HuffPost has no story labels; a story's purity is the share of its items in its most common category, next
    to the same figure for single-day clusters. A chain much less pure than a day's cluster has drifted."""
    import pandas as pd

    from newsletter_pipeline.stories import tracking as stories

    state, chains, active, day_purity, similarities = None, {}, {}, [], []
    for labelled in sorted(days, key=lambda s: s.name):
        labels = pipeline_run(labelled, SEEDS[0])
        items = pd.DataFrame(
            {
                "item_id": [f"{labelled.name}/{i:05d}" for i in range(len(labels))],
                "cluster_id": labels,
                "headline": labelled.items["headline"].to_numpy(),
            }
        )
        tracked = stories.track_items(state, labelled.name, items, labelled.embeddings, **StoryParams().model_dump())
        state = tracked.state
        similarities += tracked.items["similarity"].dropna().tolist()
        per_item = items[["item_id"]].merge(tracked.items, on="item_id")  # the day's item order
        for story, members in per_item.groupby("tracked_as"):
            chains.setdefault(story, []).extend(labelled.labels[members.index.to_numpy()].tolist())
            active[story] = active.get(story, 0) + 1
        for cluster_id in sorted(set(labels.tolist()) - {-1}):
            categories = labelled.labels[labels == cluster_id].tolist()
            day_purity.append(max(categories.count(c) for c in set(categories)) / len(categories))
    long = [story for story, n in active.items() if n >= 2]

    def purity(story: str) -> float:
        items = chains[story]
        return max(items.count(c) for c in set(items)) / len(items)

    rows = [
        ("days", len(days)),
        ("stories", len(chains)),
        ("stories on 2 days or more", len(long)),
        ("longest story, days", max(active.values(), default=0)),
        (
            "similarity of an item that continued a story, min / median",
            f"{min(similarities, default=0):.2f} / {np.median(similarities) if similarities else 0:.2f}",
        ),
        ("category purity of a day's cluster, median", f"{np.median(day_purity):.2f}"),
        ("category purity of a story on 2+ days, median", f"{np.median([purity(s) for s in long]) if long else 0:.2f}"),
    ]
    return _row(["figure", "value"]) + "\n" + _row(["---"] * 2) + "\n" + "\n".join(_row(list(r)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", default=",".join(map(str, SEEDS)), help="UMAP seeds, the first the pipeline's (default 42,7,1234)"
    )
    parser.add_argument(
        "--backend",
        default="torch",
        help="embedding backend: torch (default, the reference the tables were recorded with) or the pipeline's auto",
    )
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if not available():
        print(
            "../shared/datasets is absent: the quality benchmark needs the HuffPost and AG News files beside the repo"
        )
        return 2
    variant = use_backend(args.backend)
    sets = load_sets(with_days=True)
    results, deterministic = [], True
    for labelled in (s for s in sets if s.family in FAMILIES):
        set_results, repeats = run_set(labelled, seeds)
        results += set_results
        deterministic &= repeats
        print(
            f"  {labelled.family} {labelled.name}: "
            + ", ".join(f"{r.method} NMI {r.figures['nmi']:.3f} ARI {r.figures['ari']:.3f}" for r in set_results),
            file=sys.stderr,
            flush=True,
        )
    means = family_means(results)
    met = targets(means, results, deterministic)
    print(f"## Cluster quality, {dt.date.today().isoformat()}\n")
    print(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        + ", ".join(
            f"{name} {version(name)}" for name in ("scikit-learn", "umap-learn", "hdbscan", "sentence-transformers")
        )
        + f"; seeds {', '.join(map(str, seeds))}; vectors {variant}.\n"
    )
    print(quality_table(results, means) + "\n")
    print(
        _row(["target", "measured (pipeline vs baseline; sets where the pipeline meets it)", "met"])
        + "\n"
        + _row(["---"] * 3)
    )
    print("\n".join(_row([name, measured, "yes" if ok else "**no**"]) for name, measured, ok in met) + "\n")
    print(_row(["reported (targets retired 2026-11-24)", "measured"]) + "\n" + _row(["---"] * 2))
    print("\n".join(_row(list(row)) for row in reported(means, results)) + "\n")
    print(_row(["held out (not tuned on)", "measured", "met"]) + "\n" + _row(["---"] * 3))
    print(
        "\n".join(_row([name, measured, "yes" if ok else "no"]) for name, measured, ok in held_out(means, results))
        + "\n"
    )
    print("### Quality-check figures (pipeline defaults, seed 42)\n")
    print(
        distribution_table(
            check_figures([s for s in sets if s.family in ("huffpost-day", "huffpost-week", "agnews-day")])
        )
        + "\n"
    )
    print("### Stories across HuffPost's May 2018 days (pipeline defaults, seed 42)\n")
    print(story_table([s for s in sets if s.family == "huffpost-day"]))
    return 0 if all(ok for _, _, ok in met) else 1


if __name__ == "__main__":
    sys.exit(main())
