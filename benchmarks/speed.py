"""Speed benchmark: embedding throughput, cold and warm days, peak memory, BERTopic, backfills, start-up.

    .venv/bin/python -m benchmarks.speed                 # everything (about 50 minutes on 2 cores)
    .venv/bin/python -m benchmarks.speed --only day --sizes 500,2000

Every day and backfill runs in a fresh process, as a Dagster run does, through `dg.materialize` with the
project's assets and resources; times are medians of `--repeats` runs, and ratios are taken within one
benchmark run. Items are HuffPost's (../shared/datasets), re-dated to one day for the day sizes.
Results go to stdout as Markdown; benchmarks/README.md keeps the recorded table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HUFFPOST = REPO.parent / "shared" / "datasets" / "huffpost_news_category_v3_10k.jsonl"
DAY = "2026-01-15"
BACKFILL_FIRST, BACKFILL_DAYS = "2018-05-01", 30


def huffpost_records() -> list[dict]:
    if not HUFFPOST.exists():
        sys.exit(f"{HUFFPOST} is absent: the speed benchmark needs ../shared/datasets beside the repo")
    return [json.loads(line) for line in HUFFPOST.open(encoding="utf-8")]


def write_landing(folder: Path, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)


# --- the worker: one Dagster run in this process --------------------------------------------------------------


def worker(args) -> None:
    """Materialize every asset for a day or a range, in this process; print timings and peak memory as JSON."""
    started = time.perf_counter()
    import dagster as dg

    from newsletter_pipeline.definitions import defs
    from newsletter_pipeline.defs.resources import resources_from_env

    resources = resources_from_env(
        {
            "NEWSLETTER_DATA_DIR": args.data,
            "NEWSLETTER_EMBED_DEVICE": "cpu",
            "NEWSLETTER_EMBED_BACKEND": args.backend,
            "NEWSLETTER_CLUSTER_ACCELERATOR": "cpu",
            "NEWSLETTER_EMBED_CACHE": args.cache,
            "NEWSLETTER_MODEL_CACHE_DIR": str(REPO / "data" / "cache" / "models"),
        }
    )
    imported = time.perf_counter()
    run = (
        {"partition_key": args.first}
        if args.first == args.last
        else {
            "tags": {"dagster/asset_partition_range_start": args.first, "dagster/asset_partition_range_end": args.last}
        }
    )
    result = dg.materialize(
        list(defs.assets), resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=True, **run
    )
    steps = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if event.asset_key.path[-1] == "item_embeddings":
            steps.update(
                {
                    key: metadata[key].value
                    for key in ("embed_seconds", "texts_encoded", "cache_hits", "device")
                    if key in metadata
                }
            )
    # Per-day times: in the materialization of a one-day run, in each day's observation in a range run.
    per_day = [e.materialization.metadata for e in result.get_asset_materialization_events()]
    per_day += [
        e.event_specific_data.asset_observation.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    for metadata in per_day:
        if "reused" in metadata and metadata["reused"].value is True:
            continue  # a reused day reports the time of the run that made it
        for key in ("umap_seconds", "cluster_seconds"):
            if key in metadata:
                steps[key] = round(steps.get(key, 0) + metadata[key].value, 3)
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 2),
                "import_seconds": round(imported - started, 2),
                "peak_rss_mb": _peak_rss_mb(),
                **steps,
            }
        )
    )


def inprocess_worker(args) -> None:
    """A day materialized in a process that has already run another day (model loaded, imports and numba done), as
    BERTopic's timing has it; then the same day again. Prints the two times as JSON."""
    import dagster as dg

    from newsletter_pipeline.definitions import defs
    from newsletter_pipeline.defs.resources import resources_from_env

    def materialize(data: str) -> float:
        resources = resources_from_env(
            {
                "NEWSLETTER_DATA_DIR": data,
                "NEWSLETTER_EMBED_DEVICE": "cpu",
                "NEWSLETTER_CLUSTER_ACCELERATOR": "cpu",
                "NEWSLETTER_EMBED_BACKEND": args.backend,
                "NEWSLETTER_MODEL_CACHE_DIR": str(REPO / "data" / "cache" / "models"),
            }
        )
        start = time.perf_counter()
        dg.materialize(
            list(defs.assets),
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=True,
            partition_key=args.first,
        )
        return time.perf_counter() - start

    materialize(args.warmup)  # another day's data: not timed
    cold = materialize(args.data)
    print(json.dumps({"cold": round(cold, 2), "warm": round(materialize(args.data), 2)}))


def _peak_rss_mb() -> int:
    """This process's own peak resident memory. Not getrusage's ru_maxrss: Linux carries that across exec, so a
    worker started by a big parent would report the parent's size."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_worker(data: Path, first: str, last: str, backend: str = "auto", cache: str = "1") -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.speed",
        "--worker",
        "--data",
        str(data),
        "--first",
        first,
        "--last",
        last,
        "--backend",
        backend,
        "--cache",
        cache,
    ]
    return timed_worker(command, f"{first}..{last}")


def timed_worker(command: list[str], what: str) -> dict:
    """Run a worker process; the figures it prints last (JSON), with the whole process's seconds added."""
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode:
        sys.exit(f"run failed ({what}):\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = round(time.perf_counter() - started, 3)  # with interpreter start and imports
    return figures


# --- sections ----------------------------------------------------------------------------------------------


def throughput(records: list[dict], repeats: int) -> list[str]:
    """The pipeline's EmbeddingResource against plain sentence-transformers encode on the same texts.

    A second plain instance is the control: it shows how far two identical calls differ on this machine. Each round
    runs every encoder once, starting with a different one each round, and each encoder's ratio to plain encode is
    taken within the round; the table gives the median ratio and its range."""
    from sentence_transformers import SentenceTransformer

    from newsletter_pipeline.defs.resources import EmbeddingResource
    from newsletter_pipeline.embedding import embed
    from newsletter_pipeline.items.parse import normalize_record

    texts = embed.item_texts(_frame([normalize_record(r, "huffpost", str(i)) for i, r in enumerate(records[:2000])]))
    path = embed.resolve_model_path(embed.DEFAULT_MODEL)
    plain, control = (SentenceTransformer(path, device="cpu", local_files_only=True) for _ in range(2))
    resource_ = EmbeddingResource(device="cpu", backend="torch", cache=False)
    encode = dict(batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    candidates = {
        "plain encode": lambda: plain.encode(texts, **encode),
        "plain encode, a second instance (control)": lambda: control.encode(texts, **encode),
        "pipeline (torch)": lambda: resource_.embed(texts),
    }
    try:
        for name, backend in (("pipeline (openvino)", "openvino"), ("pipeline (openvino int8)", "openvino-int8")):
            other = EmbeddingResource(
                device="cpu", backend=backend, cache=False, model_cache_dir=str(REPO / "data" / "cache" / "models")
            )
            other.embed(texts[:8])  # exported once (cached on disk), loaded here: not timed
            candidates[name] = functools.partial(other.embed, texts)
    except Exception as error:  # the backends are optional; say why one is missing
        print(f"openvino backend not measured: {error}", file=sys.stderr)
    for fn in candidates.values():
        fn()  # warm-up: the model loads and first-call allocations happen outside the timing
    names = list(candidates)
    times = {name: [] for name in names}
    vectors = {}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # a different one first each round
            start = time.perf_counter()
            vectors[name] = candidates[name]()
            times[name].append(time.perf_counter() - start)
    lines = [
        f"{repeats} rounds of {len(texts)} texts",
        "",
        "| encoder | median s | texts/s | vs plain encode: median of rounds (min to max) | cosine to plain, min |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        ratios = [base / mine for base, mine in zip(times["plain encode"], times[name], strict=True)]
        cosine = float((np.asarray(vectors[name]) * vectors["plain encode"]).sum(axis=1).min())
        median = statistics.median(times[name])
        lines.append(
            f"| {name} | {median:.2f} | {len(texts) / median:.0f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.2f} to {max(ratios):.2f}) | {cosine:.5f} |"
        )
    print("throughput times:", json.dumps({k: [round(t, 2) for t in v] for k, v in times.items()}), file=sys.stderr)
    return lines


def backends(repeats: int) -> list[str]:
    """What another backend keeps: cosine to the PyTorch vectors, and cluster NMI on HuffPost's May weeks over the
    quality seeds."""
    from sklearn.metrics import normalized_mutual_info_score

    from benchmarks import quality, quality_data
    from newsletter_pipeline.embedding import embed
    from newsletter_pipeline.embedding.openvino_backend import openvino_encoder

    items, categories, weeks, _ = quality_data.huffpost_sets()
    texts = embed.item_texts(items)
    variants = {"torch": quality_data.cached_embeddings(texts)}
    for name, int8 in (("openvino", False), ("openvino-int8", True)):
        try:
            encoder = openvino_encoder(
                embed.resolve_model_path(embed.DEFAULT_MODEL), REPO / "data" / "cache" / "models", int8=int8
            )
        except ImportError as error:  # int8 needs nncf (the int8 extra)
            print(f"{name} not measured: {error}", file=sys.stderr)
            continue
        variants[name] = encoder.encode(texts, embed.CPU_BATCH)
    lines = [
        "| backend | cosine to PyTorch, min / mean | NMI vs categories (3 weeks x 3 seeds, mean) | difference to "
        "PyTorch |",
        "|---|---|---|---|",
    ]
    nmi = {}
    for name, vectors in variants.items():
        scores = [
            normalized_mutual_info_score(categories[rows], quality.pipeline_labels(vectors[rows], seed))
            for rows in weeks.values()
            for seed in quality.SEEDS
        ]
        nmi[name] = float(np.mean(scores))
        cosine = (vectors * variants["torch"]).sum(axis=1)
        lines.append(
            f"| {name} | {cosine.min():.5f} / {cosine.mean():.5f} | {nmi[name]:.3f} | {nmi[name] - nmi['torch']:+.3f} |"
        )
    return lines


def layouts(records: list[dict], sizes: list[int], out: Path) -> list[str]:
    """The plot's 2-D layout: a second full UMAP run (before 2026-11-24) against the pass the pipeline now makes from
    its clustering layout and graph (reduce.plot_layout_from), and PCA of the clustering layout (free, for scale).

    Readability, measured: of each clustered item's 10 nearest neighbours in the picture, the share in its own
    cluster, and in its own HuffPost category; trustworthiness (scikit-learn, 10 neighbours, cosine on the
    embeddings; 3,000 items). The pictures go to `out` to be looked at."""
    from sklearn.manifold import trustworthiness

    from benchmarks import quality_data
    from newsletter_pipeline.clustering import cluster, plot, reduce
    from newsletter_pipeline.defs.params import ClusterParams, ReduceParams
    from newsletter_pipeline.embedding import embed
    from newsletter_pipeline.items.parse import normalize_record

    params = ReduceParams()
    reduce.reduce_embeddings(np.random.RandomState(0).rand(64, 8).astype(np.float32), **params.model_dump())  # numba
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| items | layout | s | clustered neighbours in own cluster | in own category | trustworthiness |",
        "|---|---|---|---|---|---|",
    ]
    for size in sizes:
        chosen = records[:size]
        vectors = quality_data.cached_embeddings(
            embed.item_texts(_frame([normalize_record(r, "huffpost", str(i)) for i, r in enumerate(chosen)]))
        )
        categories = np.array([r["category"] for r in chosen])
        knn = None
        if reduce.EXACT_KNN_MIN_ITEMS <= size <= reduce.EXACT_KNN_MAX_ITEMS:
            knn = reduce.exact_cosine_knn(vectors, params.n_neighbors)
        umap_kw = {"n_neighbors": params.n_neighbors, "metric": params.metric, "random_state": params.random_state}
        layout, graph = reduce._umap(
            vectors, n_components=params.n_components, min_dist=params.min_dist, knn=knn, **umap_kw
        )
        labels = cluster.cluster_items(vectors, layout, "umap", **ClusterParams().model_dump()).labels
        clustered = labels != cluster.NOISE
        sample = np.random.RandomState(0).choice(size, min(size, 3000), replace=False)
        summaries = _frame_of(sorted(set(labels[clustered].tolist())))
        from_layout = {
            "graph": graph,
            "layout": layout,
            "min_dist": params.plot_min_dist,
            "random_state": params.random_state,
        }
        candidates = (
            (
                "second full UMAP run (before)",
                reduce._umap,
                (vectors,),
                {"n_components": 2, "min_dist": params.plot_min_dist, "knn": knn, **umap_kw},
            ),
            (
                f"from the clustering layout, {reduce.plot_epochs_for(size, params.plot_epochs)} epochs (now)",
                reduce.plot_layout_from,
                (),
                {**from_layout, "epochs": reduce.plot_epochs_for(size, params.plot_epochs)},
            ),
            ("from the clustering layout, 200 epochs", reduce.plot_layout_from, (), {**from_layout, "epochs": 200}),
            ("PCA of the clustering layout", reduce.plot_layout_small, (layout,), {}),
        )
        for index, (name, make, args, kwargs) in enumerate(candidates):
            start = time.perf_counter()
            xy = make(*args, **kwargs)
            seconds = time.perf_counter() - start
            xy = xy[0] if isinstance(xy, tuple) else xy  # _umap gives (layout, graph)
            trust = trustworthiness(vectors[sample], xy[sample], n_neighbors=10, metric="cosine")
            lines.append(
                f"| {size:,} | {name} | {seconds:.2f} | {_neighbours_alike(xy[clustered], labels[clustered]):.3f} | "
                f"{_neighbours_alike(xy[clustered], categories[clustered]):.3f} | {trust:.3f} |"
            )
            picture = plot.cluster_scatter_png(xy, labels, summaries, f"{name}, {size:,} items")
            (out / f"layout-{size}-{index}.png").write_bytes(picture)
    lines.append(f"\nPictures: {out}")
    return lines


def _neighbours_alike(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
    return float((labels[nearest] == labels[:, None]).mean())


def _frame_of(cluster_ids: list[int]):
    import pandas as pd

    return pd.DataFrame({"cluster_id": cluster_ids, "label": [""] * len(cluster_ids)})


def _frame(rows):
    import pandas as pd

    from newsletter_pipeline.items.parse import ITEM_COLUMNS

    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def days(records: list[dict], sizes: list[int], repeats: int, work: Path, backend: str = "auto") -> list[str]:
    """A whole day (every asset) cold (empty outputs, no embedding cache) and warm (the same day again), each in a new
    process.

    "Cold" is about the data: the machine's numba cache, exported models and file cache are warm, as on any day but
    the first."""
    lines = [
        f"backend: {backend}",
        "",
        "| items | cold s (median) | warm s (median) | cold / warm | warm, of which process start-up and imports s | "
        "embedding step cold / warm s | UMAP s, cold | peak memory, cold | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        cold, warm = [], []
        for attempt in range(_repeats(size, repeats)):
            data = work / f"day-{size}-{attempt}"
            shutil.rmtree(data, ignore_errors=True)
            write_landing(data / "landing", [{**r, "date": DAY} for r in records[:size]])
            cold.append(run_worker(data, DAY, DAY, backend))
            warm.append(run_worker(data, DAY, DAY, backend))
            assert (
                warm[-1]["texts_encoded"] == 0
                and warm[-1]["device"].startswith("none")
                and "umap_seconds" not in warm[-1]
            ), warm[-1]
            shutil.rmtree(data, ignore_errors=True)
        c, w = (statistics.median(f["process_seconds"] for f in runs) for runs in (cold, warm))
        ce, we = (statistics.median(f["embed_seconds"] for f in runs) for runs in (cold, warm))
        startup = statistics.median(f["process_seconds"] - f["seconds"] + f["import_seconds"] for f in warm)
        peak = max(f["peak_rss_mb"] for f in cold)
        umap_seconds = statistics.median(f.get("umap_seconds", 0) for f in cold)
        lines.append(
            f"| {size:,} | {c:.1f} | {w:.1f} | {c / w:.1f} | {startup:.1f} | {ce:.1f} / {we:.2f} "
            f"({ce / max(we, 1e-3):.0f}x) | {umap_seconds:.1f} | {peak:,} MB | {len(cold)} |"
        )
        print(
            f"day {size}: cold {[f['process_seconds'] for f in cold]} warm {[f['process_seconds'] for f in warm]}",
            file=sys.stderr,
        )
    return lines


def _repeats(size: int, repeats: int) -> int:
    """One run fewer for 10,000 items: each takes minutes, and their spread is small next to their length."""
    return max(1, repeats - 1) if size >= 10_000 else repeats


def bertopic(records: list[dict], sizes: list[int], repeats: int, work: Path) -> list[str]:
    """BERTopic.fit_transform with the same model on the same items (model loaded beforehand, not timed), against the
    pipeline's whole day under the same conditions: in a process whose model is loaded and imports are done."""
    try:
        from bertopic import BERTopic
    except ImportError:
        return ["BERTopic is not installed (pip install '.[bench]'): not measured."]
    from sentence_transformers import SentenceTransformer

    from newsletter_pipeline.embedding import embed
    from newsletter_pipeline.items.parse import normalize_record

    model = SentenceTransformer(embed.resolve_model_path(embed.DEFAULT_MODEL), device="cpu", local_files_only=True)
    lines = [
        "| items | BERTopic.fit_transform s | pipeline day, same process conditions: cold s | pipeline / BERTopic | "
        "pipeline day, warm s | runs |",
        "|---|---|---|---|---|---|",
    ]
    warmup = work / "warmup"
    shutil.rmtree(warmup, ignore_errors=True)
    write_landing(warmup / "landing", [{**r, "date": DAY} for r in records[-100:]])
    for size in sizes:
        docs = embed.item_texts(_frame([normalize_record(r, "huffpost", str(i)) for i, r in enumerate(records[:size])]))
        times, cold, warm = [], [], []
        for attempt in range(_repeats(size, repeats)):
            start = time.perf_counter()
            BERTopic(embedding_model=model).fit_transform(docs)
            times.append(time.perf_counter() - start)
            data = work / f"inprocess-{size}-{attempt}"
            shutil.rmtree(data, ignore_errors=True)
            write_landing(data / "landing", [{**r, "date": DAY} for r in records[:size]])
            command = [
                sys.executable,
                "-m",
                "benchmarks.speed",
                "--worker",
                "--data",
                str(data),
                "--first",
                DAY,
                "--last",
                DAY,
                "--warmup",
                str(warmup),
            ]
            figures = json.loads(_run(command, {**os.environ, "PYTHONWARNINGS": "ignore"}))
            cold.append(figures["cold"])
            warm.append(figures["warm"])
            shutil.rmtree(data, ignore_errors=True)
        b, c, w = statistics.median(times), statistics.median(cold), statistics.median(warm)
        lines.append(f"| {size:,} | {b:.1f} | {c:.1f} | {c / b:.2f} | {w:.1f} | {len(times)} |")
        print(f"bertopic {size}: {times}; pipeline cold {cold} warm {warm}", file=sys.stderr)
    return lines


# BERTopic as a user runs it by hand: a script that loads the same weights with sentence-transformers (PyTorch) and
# runs BERTopic with its defaults; timed from the process's start to its exit.
BERTOPIC_SCRIPT = """
import json, sys
from bertopic import BERTopic
from sentence_transformers import SentenceTransformer
docs = json.load(open(sys.argv[2], encoding="utf-8"))
model = SentenceTransformer(sys.argv[1], device="cpu", local_files_only=True)
topics, _ = BERTopic(embedding_model=model).fit_transform(docs)
print(len(set(topics)))
"""


def whole(records: list[dict], sizes: list[int], repeats: int, work: Path) -> list[str]:
    """A cold day as a user compares them, whole processes from start to exit, in pairs: `dagster asset materialize`
    of every asset for one day in a new data folder (no outputs, no embedding cache; the machine's exported model
    and numba cache are there, as after its first run) against a plain BERTopic script on the same texts."""
    try:
        import bertopic  # noqa: F401
    except ImportError:
        return ["BERTopic is not installed (pip install '.[bench]'): not measured."]
    from newsletter_pipeline.embedding import embed
    from newsletter_pipeline.items.parse import normalize_record

    dagster = str(Path(sys.executable).with_name("dagster"))
    weights = embed.resolve_model_path(embed.DEFAULT_MODEL)
    lines = [
        "| items | pipeline, `dagster asset materialize` s | BERTopic script s | pipeline / BERTopic (median of pairs) "
        "| runs |",
        "|---|---|---|---|---|",
    ]
    for size in sizes:
        chosen = [{**r, "date": DAY} for r in records[:size]]
        docs = work / f"docs-{size}.json"
        docs.write_text(
            json.dumps(
                embed.item_texts(_frame([normalize_record(r, "huffpost", str(i)) for i, r in enumerate(chosen)]))
            ),
            encoding="utf-8",
        )
        ours, theirs = [], []
        for attempt in range(_repeats(size, repeats)):
            data, home = work / f"whole-{size}-{attempt}", work / f"whole-home-{size}-{attempt}"
            shutil.rmtree(data, ignore_errors=True)
            write_landing(data / "landing", chosen)
            home.mkdir(parents=True, exist_ok=True)
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
            env = {
                **os.environ,
                "DAGSTER_HOME": str(home),
                "NEWSLETTER_DATA_DIR": str(data),
                "NEWSLETTER_MODEL_CACHE_DIR": str(REPO / "data" / "cache" / "models"),
                "PYTHONWARNINGS": "ignore",
            }
            command = [dagster, "asset", "materialize", "-m", "newsletter_pipeline.definitions", "--select", "*"]
            ours.append(_timed_process([*command, "--partition", DAY], env))
            theirs.append(_timed_process([sys.executable, "-c", BERTOPIC_SCRIPT, weights, str(docs)]))
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
        ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
        lines.append(
            f"| {size:,} | {statistics.median(ours):.1f} | {statistics.median(theirs):.1f} | {ratio:.2f} | "
            f"{len(ours)} |"
        )
        print(f"whole {size}: pipeline {ours} bertopic {theirs}", file=sys.stderr)
    return lines


RERUN_DAYS, RERUN_ITEMS, EMPTY_DAY = 30, 2_000, "2026-02-15"


def rerun(records: list[dict], repeats: int, work: Path) -> list[str]:
    """A warm re-run against the process's own start-up, with history: 30 days of 2,000 HuffPost items each in the
    landing folder, materialized (outputs and workbook) as one range run; then the last day again, and a day without
    items (the start-up: Python, imports, Dagster's run set-up, every asset finding nothing to do), each in a new
    process. The empty day is run once first, unmeasured, since its first export writes the workbook."""
    data = work / "rerun"
    shutil.rmtree(data, ignore_errors=True)
    days = [(dt.date(2026, 1, 1) + dt.timedelta(days=n)).isoformat() for n in range(RERUN_DAYS)]
    pool = records * 2
    for n, day in enumerate(days):
        start = (n * RERUN_ITEMS) % len(records)  # the 10,000 records in turn; each day's links are its own
        chosen = [{**r, "date": day, "link": f"{r['link']}?day={day}"} for r in pool[start : start + RERUN_ITEMS]]
        write_landing(data / "landing" / day, chosen)
    setup = run_worker(data, days[0], days[-1])
    run_worker(data, EMPTY_DAY, EMPTY_DAY)
    warm = [run_worker(data, days[-1], days[-1]) for _ in range(repeats)]
    empty = [run_worker(data, EMPTY_DAY, EMPTY_DAY) for _ in range(repeats)]
    assert all(w["texts_encoded"] == 0 for w in warm), warm
    w, e = (statistics.median(f["process_seconds"] for f in runs) for runs in (warm, empty))
    shutil.rmtree(data, ignore_errors=True)
    return [
        f"history: {RERUN_DAYS} days of {RERUN_ITEMS:,} items, materialized as one range run in "
        f"{setup['process_seconds']:.0f} s",
        "",
        "| run, each in a new process | s (median) | runs |",
        "|---|---|---|",
        f"| the last day again (warm) | {w:.2f} | {repeats} |",
        f"| a day without items (the start-up) | {e:.2f} | {repeats} |",
        f"| **warm re-run beyond start-up** (target 1.5 s) | **{w - e:.2f}** | |",
    ]


def backfill(records: list[dict], work: Path) -> list[str]:
    """30 days as one range run against 30 one-day runs (a process each, as `dagster job backfill` launches them)."""
    import datetime as dt

    first = dt.date.fromisoformat(BACKFILL_FIRST)
    last = (first + dt.timedelta(days=BACKFILL_DAYS - 1)).isoformat()
    chosen = [r for r in records if BACKFILL_FIRST <= r["date"][:10] <= last]
    single, many = work / "backfill-single", work / "backfill-many"
    for data in (single, many):
        shutil.rmtree(data, ignore_errors=True)
        write_landing(data / "landing", chosen)
    one = run_worker(single, BACKFILL_FIRST, last)
    each = [
        run_worker(many, (first + dt.timedelta(days=i)).isoformat(), (first + dt.timedelta(days=i)).isoformat())
        for i in range(BACKFILL_DAYS)
    ]
    total = sum(f["process_seconds"] for f in each)
    return [
        "| how | items | runs | total s | embedding s | UMAP s |",
        "|---|---|---|---|---|---|",
        f"| one range run | {len(chosen):,} | 1 | {one['process_seconds']:.1f} | {one['embed_seconds']:.1f} | "
        f"{one.get('umap_seconds', 0):.1f} |",
        f"| one run per day | {len(chosen):,} | {BACKFILL_DAYS} | {total:.1f} | "
        f"{sum(f['embed_seconds'] for f in each):.1f} | "
        f"{sum(f.get('umap_seconds', 0) for f in each):.1f} |",
        f"| ratio | | | {total / one['process_seconds']:.1f}x | | |",
    ]


def cache_lookup(work: Path, repeats: int) -> list[str]:
    """A cold day's lookup (500 new texts) against a year of cache segments, on local disk and on moto's S3 server:
    key columns read one segment at a time against READ_AHEAD at a time."""
    from newsletter_pipeline.embedding import embed_cache
    from newsletter_pipeline.storage import ParquetStore
    from newsletter_pipeline_tests.s3_server import moto_s3_server

    rng = np.random.default_rng(0)
    lines = [
        "| store | segments | texts per segment | one at a time, s | 16 at a time, s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    with moto_s3_server() as s3:
        stores = {
            "local disk": ParquetStore(str(work / "cache-lookup")),
            "S3 (moto server on 127.0.0.1)": ParquetStore(
                f"s3://{s3.new_bucket()}/outputs", endpoint_url=s3.endpoint_url
            ),
        }
        for name, store in stores.items():
            cache = embed_cache.EmbeddingCache(store, "bench", "torch-fp32")
            first = np.datetime64("2025-01-01")
            for offset in range(365):
                vectors = rng.normal(size=(300, 384)).astype(np.float32)
                cache.save(
                    str(first + offset),
                    [f"{offset}-{i}" for i in range(300)],
                    vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                )
            keys = embed_cache.text_keys([f"new text {i}" for i in range(500)])
            times, parallel = {}, embed_cache.READ_AHEAD
            for read_ahead in (1, parallel):
                embed_cache.READ_AHEAD = read_ahead
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    found = embed_cache.EmbeddingCache(store, "bench", "torch-fp32").lookup(keys, ["2026-01-01"])
                    runs.append(time.perf_counter() - start)
                    assert found.hits == 0 and found.segments_read == 365
                embed_cache.READ_AHEAD = parallel
                times[read_ahead] = statistics.median(runs)
            one, many = times[1], times[parallel]
            lines.append(f"| {name} | 365 | 300 | {one:.2f} | {many:.2f} | {one / many:.1f}x |")
    return lines


def startup(repeats: int, work: Path) -> list[str]:
    """Loading the Definitions, the first UMAP call without and with numba's cache, and `dagster dev` until it
    answers."""
    python = sys.executable
    load = [_timed_process([python, "-c", "import newsletter_pipeline.definitions"]) for _ in range(repeats)]
    umap_script = (
        "import time, numpy as np; from newsletter_pipeline.clustering import reduce; from "
        "newsletter_pipeline.defs.params import ReduceParams; x = np.random.default_rng(0).normal(size=(300, "
        "384)).astype('float32');t = time.perf_counter(); reduce.reduce_embeddings(x, **ReduceParams().model_dump()); "
        "print(time.perf_counter() - t)"
    )
    numba_dir = work / "numba-cache"
    shutil.rmtree(numba_dir, ignore_errors=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_dir)}
    first = float(_run([python, "-c", umap_script], env))
    later = [float(_run([python, "-c", umap_script], env)) for _ in range(repeats)]
    dev = [_dagster_dev_seconds(work) for _ in range(repeats)]
    return [
        "| what | median s | runs |",
        "|---|---|---|",
        f"| python -c 'import newsletter_pipeline.definitions' (whole process) | {statistics.median(load):.1f} | "
        f"{repeats} |",
        f"| first UMAP of a process (300 items, both layouts), empty numba cache | {first:.1f} | 1 |",
        f"| the same in a new process, numba cache filled | {statistics.median(later):.1f} | {repeats} |",
        f"| dagster dev until its code location has loaded | {statistics.median(dev):.1f} | {repeats} |",
    ]


def _run(command: list[str], env=None) -> str:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip().splitlines()[-1]


def _timed_process(command: list[str], env=None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _dagster_dev_seconds(work: Path) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = Path(tempfile.mkdtemp(dir=work))
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    dagster = Path(sys.executable).with_name("dagster")
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Ready means the code location has loaded (the webserver answers /server_info a little earlier).
        query = json.dumps(
            {
                "query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                "locationOrLoadError { __typename } } } } }"
            }
        ).encode()
        while time.perf_counter() - start < 180:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=2) as answer:
                    entries = json.load(answer)["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(
                    e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                    for e in entries
                ):
                    return time.perf_counter() - start
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("dagster dev's code location did not load within 180 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the daemon's children may ignore SIGTERM while starting
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        default="throughput,backends,layouts,day,whole,rerun,bertopic,backfill,cache,startup",
        help="comma-separated sections",
    )
    parser.add_argument("--sizes", default="500,2000,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data"), parser.add_argument("--first"), parser.add_argument("--last")
    (
        parser.add_argument("--backend", default="auto"),
        parser.add_argument("--cache", default="1"),
        parser.add_argument("--warmup"),
    )
    args = parser.parse_args()
    if args.worker:
        return inprocess_worker(args) if args.warmup else worker(args)
    sections, sizes = args.only.split(","), [int(s) for s in args.sizes.split(",")]
    records = huffpost_records()
    import sentence_transformers
    import torch

    print(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}; "
        f"CUDA: {'yes' if torch.cuda.is_available() else 'no (GPU rows not run)'}\n"
    )
    with tempfile.TemporaryDirectory(prefix="speed-") as folder:
        work = Path(folder)
        for name, fn in (
            ("throughput", lambda: throughput(records, args.repeats)),
            ("day", lambda: days(records, sizes, args.repeats, work, args.backend)),
            ("backends", lambda: backends(args.repeats)),
            (
                "layouts",
                lambda: layouts(records, [s for s in sizes if s >= 2000] or sizes, REPO / "test-artifacts" / "layouts"),
            ),
            ("bertopic", lambda: bertopic(records, sizes, args.repeats, work)),
            ("whole", lambda: whole(records, sizes, args.repeats, work)),
            ("rerun", lambda: rerun(records, args.repeats, work)),
            ("backfill", lambda: backfill(records, work)),
            ("cache", lambda: cache_lookup(work, args.repeats)),
            ("startup", lambda: startup(args.repeats, work)),
        ):
            if name in sections:
                print(f"### {name}\n", *fn(), "", sep="\n", flush=True)


if __name__ == "__main__":
    main()
