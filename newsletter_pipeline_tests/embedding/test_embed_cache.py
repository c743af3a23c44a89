"""The embedding cache, the exact neighbours and numba cache behind UMAP, and the GPU switches (CPU-only here)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from newsletter_pipeline.clustering import gpu, reduce
from newsletter_pipeline.defs.params import ReduceParams
from newsletter_pipeline.defs.resources import ClusteringResource, EmbeddingResource
from newsletter_pipeline.embedding import embed, embed_cache
from newsletter_pipeline.storage import ParquetStore, code_fingerprint, fingerprint
from newsletter_pipeline_tests.conftest import REPO, SAMPLE_DAYS

TEXTS = {
    "2026-11-16": [
        "Storm Odile makes landfall. Thousands evacuated",
        "Central bank cuts rates",
        "Storm Odile makes landfall. Thousands evacuated",
    ],
    "2026-11-17": ["Central bank cuts rates", "Rover finds ice on Mars", "Café owners protest new rules"],
}


class Counting:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, embedder: EmbeddingResource):
        self.embedder, self.texts = embedder, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self.embedder.embed(texts)


def run_days(embedder, store, days, model=None, variant=None):
    """What item_embeddings does for a run: one cached embed for all its days, then one segment per day."""
    cache = embed_cache.EmbeddingCache(store, model or embedder.model, variant or embedder.variant, embedder.dimension)
    counting = Counting(embedder)
    texts = [text for day in days for text in TEXTS[day]]
    vectors, figures = embed_cache.embed_with_cache(cache, texts, days, counting)
    offset = 0
    for day in days:
        cache.save(day, TEXTS[day], vectors[offset : offset + len(TEXTS[day])])
        offset += len(TEXTS[day])
    return vectors, figures, counting.texts


def test_a_warm_run_embeds_nothing_and_gives_the_same_vectors(embedder, store: ParquetStore):
    days = list(TEXTS)
    cold, cold_figures, encoded = run_days(embedder, store, days)
    # Four distinct texts among six: each is embedded once, whichever day it is on.
    assert sorted(encoded) == sorted(set(TEXTS[days[0]] + TEXTS[days[1]]))
    assert cold_figures["cache_hits"] == 0 and cold_figures["texts_encoded"] == 4
    np.testing.assert_allclose(cold, embedder.embed(TEXTS[days[0]] + TEXTS[days[1]]), atol=1e-6)
    assert store.days(f"embedding_cache/{embed_cache.namespace(embedder.model, embedder.variant)}") == days

    warm, warm_figures, encoded = run_days(embedder, store, days)
    assert encoded == [] and warm_figures["cache_hits"] == 6 and warm_figures["texts_encoded"] == 0
    np.testing.assert_array_equal(warm, cold)
    # A run that finds everything needs neither the model nor its dimension.
    unknown = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant)
    texts = TEXTS[days[0]] + TEXTS[days[1]]
    found, _ = embed_cache.embed_with_cache(unknown, texts, days, lambda _: pytest.fail("the model was asked"))
    np.testing.assert_array_equal(found, cold)
    assert unknown.dimension == 384
    # A day whose texts are all in its own segment reads no other.
    _, figures, _ = run_days(embedder, store, days[:1])
    assert figures["cache_segments_read"] == 1


def test_only_new_or_changed_texts_reach_the_model(embedder, tmp_path):
    store = ParquetStore(str(tmp_path))
    run_days(embedder, store, ["2026-11-16"])
    cache = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant, embedder.dimension)
    counting = Counting(embedder)
    # One character more is another text; a text seen on another day is found in that day's segment.
    texts = ["Central bank cuts rates!", "Central bank cuts rates", "Storm Odile makes landfall. Thousands evacuated"]
    vectors, figures = embed_cache.embed_with_cache(cache, texts, ["2026-11-20"], counting)
    assert counting.texts == ["Central bank cuts rates!"]
    assert figures["cache_hits"] == 2
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-6)


def test_other_models_variants_and_dimensions_never_share_vectors(embedder, tmp_path):
    store = ParquetStore(str(tmp_path))
    run_days(embedder, store, ["2026-11-16"])
    _, figures, encoded = run_days(embedder, store, ["2026-11-16"], variant="openvino-fp32")
    assert figures["cache_hits"] == 0 and len(encoded) == 2
    # A segment copied in from a model of another dimension is skipped, not misread.
    other = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant, 8)
    assert other.lookup(embed_cache.text_keys(TEXTS["2026-11-16"]), ["2026-11-16"]).hits == 0
    assert embed_cache.namespace("all-MiniLM-L6-v2", "torch-fp32") != embed_cache.namespace(
        "all-MiniLM-L6-v2", "torch-fp16"
    )


def test_saving_an_unchanged_day_writes_nothing(embedder, tmp_path):
    store = ParquetStore(str(tmp_path))
    run_days(embedder, store, ["2026-11-16"])
    cache = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant, embedder.dimension)
    day = "2026-11-16"
    vectors = embedder.embed(TEXTS[day])
    assert cache.save(day, TEXTS[day], vectors) is False
    assert cache.save(day, TEXTS[day][:1], vectors[:1]) is True  # the day's items changed: its segment follows


def checks_of(result, asset: str) -> list[tuple]:
    return sorted(
        (e.check_name, e.passed, e.description, e.severity)
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == asset
    )


def _metadata(result, asset: str):
    return next(
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset
    ).materialization.metadata


@pytest.mark.slow
def test_rematerializing_an_unchanged_day_skips_every_costly_step(workspace, monkeypatch):
    workspace.add_sample()
    day = SAMPLE_DAYS[0]
    from newsletter_pipeline import quality
    from newsletter_pipeline.clustering import cluster, label, plot
    from newsletter_pipeline.defs import resources
    from newsletter_pipeline.stories import tracking

    first_run = workspace.materialize(day)
    first = _metadata(first_run, "item_embeddings")
    before = workspace.store.read("item_embeddings", day)
    coords_before = workspace.store.read("umap_coordinates", day)
    clusters_before = workspace.store.read("clusters", day)
    assert _metadata(first_run, "umap_coordinates")["reused"].value is False
    # The warm run must not even load the model, nor run UMAP on the unchanged vectors.
    monkeypatch.setattr(resources, "_cached_encoder", lambda *args: pytest.fail("the model was loaded"))
    monkeypatch.setattr(reduce, "reduce_embeddings", lambda *args, **kwargs: pytest.fail("UMAP ran again"))
    # Nor cluster, label, draw, judge or track stories again: their inputs are unchanged.
    for module, step in (
        (cluster, "cluster_items"),
        (label, "summarize_clusters"),
        (plot, "cluster_scatter_png"),
        (quality, "cluster_figures"),
        (tracking, "track_items"),
    ):
        monkeypatch.setattr(module, step, lambda *args, step=step, **kwargs: pytest.fail(f"{step} ran again"))
    second_run = workspace.materialize(day)
    second = _metadata(second_run, "item_embeddings")
    assert _metadata(second_run, "umap_coordinates")["reused"].value is True
    for asset in ("clusters", "stories"):
        # The same metadata, but `rows` (the IO manager counts the rows it writes, and it writes none) and the step
        # times, which were the first run's.
        timed = {key for key in _metadata(first_run, asset) if key.endswith("_seconds")}
        assert asset == "stories" or timed
        expected = (_metadata(first_run, asset).keys() - {"rows"} - timed) | {"reused"}
        assert expected == _metadata(second_run, asset).keys()
        assert _metadata(second_run, asset)["reused"].value is True
    assert _metadata(second_run, "clusters")["plot"] == _metadata(first_run, "clusters")["plot"]
    # The cluster checks report what they found then, and still gate the export.
    assert checks_of(second_run, "clusters") == checks_of(first_run, "clusters")
    assert len(checks_of(first_run, "clusters")) >= 5
    # The workbook holds the day's rows already: it is not rewritten.
    assert _metadata(first_run, "sheet_export")["sheet"].value == "written"
    assert _metadata(second_run, "sheet_export")["sheet"].value == "unchanged"
    assert workspace.store.read("umap_coordinates", day).equals(coords_before)
    assert workspace.store.read("clusters", day)[["item_id", "cluster_id"]].equals(
        clusters_before[["item_id", "cluster_id"]]
    )
    # A side table gone (the labels, the items' stories): the step is done again, since the report vouches for them too.
    monkeypatch.undo()
    os.remove(workspace.store.path("cluster_summaries", day))
    os.remove(workspace.store.path("story_items", day))
    fourth_run = workspace.materialize(day)
    assert "reused" not in _metadata(fourth_run, "clusters") and "reused" not in _metadata(fourth_run, "stories")
    assert workspace.store.exists("cluster_summaries", day) and workspace.store.exists("story_items", day)
    # Other UMAP settings are another result: computed again, not reused, and so are the steps after it.
    workspace.clustering = ClusteringResource(reduce=ReduceParams(random_state=7))
    third_run = workspace.materialize(day)
    assert _metadata(third_run, "umap_coordinates")["reused"].value is False
    assert "reused" not in _metadata(third_run, "clusters") and "reused" not in _metadata(third_run, "stories")
    assert not workspace.store.read("umap_coordinates", day)["x"].equals(coords_before["x"])
    assert first["cache_hits"].value == 0 and first["texts_encoded"].value > 0
    assert second["cache_hits"].value == len(before) and second["texts_encoded"].value == 0
    assert second["device"].value.startswith("none") and second["dimension"].value == 384
    after = workspace.store.read("item_embeddings", day)
    assert after["item_id"].tolist() == before["item_id"].tolist()
    np.testing.assert_array_equal(np.stack(after["embedding"]), np.stack(before["embedding"]))


def test_fingerprints_follow_every_input():
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    ids = pd.Series(["a", "b", "c"], name="item_id")
    base = fingerprint(ids, vectors, {"n_neighbors": 15}, False)
    assert fingerprint(ids.copy(), vectors.copy(), {"n_neighbors": 15}, False) == base
    changed = vectors.copy()
    changed[1, 2] += 1e-6
    assert (
        len(
            {
                base,
                fingerprint(ids, changed, {"n_neighbors": 15}, False),
                fingerprint(ids, vectors, {"n_neighbors": 30}, False),
                fingerprint(ids, vectors, {"n_neighbors": 15}, True),
                fingerprint(ids[::-1].reset_index(drop=True), vectors, {"n_neighbors": 15}, False),
                fingerprint(ids, vectors.reshape(4, 3), {"n_neighbors": 15}, False),
            }
        )
        == 6
    )
    frame = pd.DataFrame({"item_id": ids, "headline": ["x", "y", "z"]})
    assert fingerprint(frame) == fingerprint(frame.copy()) != fingerprint(frame.assign(headline=["x", "y", "Z"]))
    assert code_fingerprint((), ("no-such-distribution",)) == code_fingerprint((), ("another-missing-one",))
    assert code_fingerprint(("newsletter_pipeline.clustering.reduce",), ("umap-learn",)) != code_fingerprint(
        ("newsletter_pipeline.clustering.cluster",), ("umap-learn",)
    )


def test_the_cache_can_be_turned_off(embedder, tmp_path):
    off = EmbeddingResource(device="cpu", cache=False)
    assert off.embedding_cache(ParquetStore(str(tmp_path))) is None
    vectors, figures = embed_cache.embed_with_cache(
        off.embedding_cache(ParquetStore(str(tmp_path))), ["Rover finds ice on Mars"], ["2026-11-16"], off.embed
    )
    assert figures == {"cache": "off", "texts_encoded": 1} and vectors.shape == (1, 384)
    assert not any(tmp_path.iterdir())


def test_exact_neighbours_match_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    indices, distances = reduce.exact_cosine_knn(vectors, 10)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :10]
    assert (indices[:, 0] == np.arange(600)).all() and np.allclose(distances[:, 0], 0)
    np.testing.assert_array_equal(np.sort(indices[:, 1:], axis=1), np.sort(expected[:, 1:], axis=1))
    np.testing.assert_allclose(distances, 1 - np.take_along_axis(similarity, indices, axis=1), atol=1e-5)
    assert (np.diff(distances, axis=1) >= -1e-7).all()


def test_large_days_get_exact_neighbours_once(monkeypatch):
    calls = []
    exact = reduce.exact_cosine_knn
    monkeypatch.setattr(reduce, "exact_cosine_knn", lambda vectors, k: calls.append(k) or exact(vectors, k))
    vectors = np.random.default_rng(1).normal(size=(reduce.EXACT_KNN_MIN_ITEMS, 16)).astype(np.float32)
    result = reduce.reduce_embeddings(vectors, **ReduceParams().model_dump())
    assert calls == [15] and result.library == "umap-learn"
    assert result.cluster.shape == (len(vectors), 5) and result.plot.shape == (len(vectors), 2)
    assert np.isfinite(result.cluster).all() and np.isfinite(result.plot).all()


def test_a_model_whose_dimension_changed_under_its_name_is_refused(embedder, tmp_path):
    store = ParquetStore(str(tmp_path))
    run_days(embedder, store, ["2026-11-16"])
    cache = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant)
    texts = ["Central bank cuts rates", "An unseen headline"]
    with pytest.raises(ValueError, match="dimension 384 but the model gives 8"):
        embed_cache.embed_with_cache(
            cache, texts, ["2026-11-20"], lambda batch: np.ones((len(batch), 8), dtype=np.float32) / np.sqrt(8)
        )


def test_broken_vectors_are_not_cached(embedder, tmp_path):
    store = ParquetStore(str(tmp_path))
    cache = embed_cache.EmbeddingCache(store, embedder.model, embedder.variant)
    vectors = embedder.embed(TEXTS["2026-11-16"])
    vectors[1] = np.nan
    cache.save("2026-11-16", TEXTS["2026-11-16"], vectors)
    found = cache.lookup(embed_cache.text_keys(TEXTS["2026-11-16"]), ["2026-11-16"])
    # Rows 0 and 2 are one text, cached once; the broken row 1 is left for the next run to compute again.
    assert found.hit.tolist() == [True, False, True]


def test_umap_compiles_once_into_numba_cache(tmp_path):
    """A new process finds umap-learn's compiled functions in numba's on-disk cache."""
    script = (
        "import numpy as np\nfrom newsletter_pipeline.clustering import reduce\nfrom newsletter_pipeline.defs.params import ReduceParams\n"
        "x = np.random.default_rng(0).normal(size=(40, 16)).astype('float32')\n"
        "reduce.reduce_embeddings(x, **ReduceParams().model_dump(), with_plot=False)\n"
        "print(reduce.enable_numba_cache())"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 20  # umap-learn's own functions were switched to caching
    cached = [p.name for p in Path(tmp_path).rglob("*.nbi")]
    assert any(name.startswith(("layouts.", "umap_.")) for name in cached), cached


def test_gpu_switches_fall_back_to_the_cpu_without_cuml(monkeypatch):
    monkeypatch.setattr(gpu, "cuml_available", lambda: False)
    assert gpu.use_cuml("cpu") is False and gpu.use_cuml("auto") is False
    assert ClusteringResource(accelerator="auto").gpu is False
    with pytest.raises(ValueError, match=r"install the gpu extra"):
        gpu.use_cuml("cuml")
    with pytest.raises(ValueError, match="auto, cpu, cuml"):
        gpu.use_cuml("tpu")
    assert embed.default_batch_size("cpu") == 64 and embed.default_batch_size("cuda:0") == 256
    with pytest.raises(ValueError, match="backend must be one of"):
        embed.load_encoder(backend="tensorflow", model_cache_dir="unused")
    with pytest.raises(ValueError, match="runs on the CPU"):
        embed.load_encoder(backend="openvino", device="cuda", model_cache_dir="unused")


def _unit(rng, n: int, dimension: int = 8) -> np.ndarray:
    vectors = rng.normal(size=(n, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_lookup_finds_texts_of_any_day_among_many_segments(store: ParquetStore):
    # More segments than are read at once, so the parallel batches and their early stop are both exercised.
    rng = np.random.default_rng(0)
    cache = embed_cache.EmbeddingCache(store, "m", "v")
    days = [f"2026-{month:02d}-{day:02d}" for month in (1, 2) for day in range(1, 21)]
    saved = {}
    for day in days:
        texts = [f"{day} item {i}" for i in range(3)]
        saved[day] = (texts, _unit(rng, 3))
        cache.save(day, *saved[day])
    fresh = embed_cache.EmbeddingCache(store, "m", "v")
    # The oldest day's texts (read last, newest first), one from the middle, one never seen.
    texts = saved[days[0]][0] + saved[days[17]][0][:1] + ["never embedded"]
    found = fresh.lookup(embed_cache.text_keys(texts), days=["2026-03-01"])
    assert found.hit.tolist() == [True, True, True, True, False] and found.segments_read == len(days)
    np.testing.assert_array_equal(found.vectors[:3], saved[days[0]][1])
    np.testing.assert_array_equal(found.vectors[3], saved[days[17]][1][0])
    # Everything found among the newest segments: the older ones are not read.
    recent = fresh.lookup(embed_cache.text_keys(saved[days[-1]][0]))
    assert recent.hits == 3 and recent.segments_read == embed_cache.READ_AHEAD


def test_a_long_input_reports_its_progress_and_gives_the_same_vectors(embedder, monkeypatch):
    monkeypatch.setattr(embed, "PROGRESS_STEP", 16)  # a "long day" of 40 texts: three steps
    texts = [f"Headline number {n} about the storm, the summit or the chip" for n in range(40)]
    reports = []
    stepped = embedder.embed(texts, report=lambda done, total: reports.append((done, total)))
    assert reports == [(16, 40), (32, 40), (40, 40)]
    whole = embedder.embed(texts)  # no report: one call
    assert stepped.shape == whole.shape == (40, embedder.dimension)
    assert np.min(np.sum(stepped * whole, axis=1)) > 0.9999  # the same vectors, whatever the steps
    assert embedder.embed(texts[:10], report=lambda done, total: reports.append((done, total))).shape == (10, 384)
    assert len(reports) == 3  # a short input is one call and reports nothing
