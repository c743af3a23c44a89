"""The pure stages on real libraries: the shipped model, UMAP, HDBSCAN, c-TF-IDF and the quality figures."""

import numpy as np
import pandas as pd
import pytest

from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, label, reduce
from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.params import ClusterParams, QualityThresholds, ReduceParams
from newsletter_pipeline.embedding import embed
from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import local_files
from newsletter_pipeline_tests.conftest import SAMPLE

# The defaults the assets use (defs/params.py), as the plain values the work functions take.
REDUCE, CLUSTER = ReduceParams().model_dump(), ClusterParams().model_dump()
LIMITS = QualityThresholds()


@pytest.fixture(scope="module")
def sample_day(embedder):
    """The sample's first day: items and their real embeddings."""
    items = parse.items_for_day(parse.parse_landing(local_files(SAMPLE)), "2026-11-16").items
    return items, embedder.embed(embed.item_texts(items))


def test_shipped_model_embeds_offline_to_unit_vectors(embedder):
    vectors = embedder.embed(["Storm Odile makes landfall", "Hurricane hits the coast", "Central bank cuts rates"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same-story texts are closer than different stories: the weights are real.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert embedder.embed([]).shape == (0, 384)


def test_device_resolution():
    assert embed.resolve_device("cpu") == "cpu"
    assert embed.resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        embed.resolve_device("tpu")


def test_item_text_is_headline_then_description():
    items = pd.DataFrame({"headline": ["A", "B"], "short_description": ["desc", ""]})
    assert embed.item_texts(items) == ["A. desc", "B"]


def test_umap_and_hdbscan_find_the_sample_stories_deterministically(sample_day):
    items, vectors = sample_day
    first = reduce.reduce_embeddings(vectors, **REDUCE)
    second = reduce.reduce_embeddings(vectors, **REDUCE)
    assert first.method == "umap" and first.cluster.shape == (len(items), 5) and first.plot.shape == (len(items), 2)
    assert np.array_equal(first.cluster, second.cluster)
    clustering = cluster.cluster_items(vectors, first.cluster, first.method, **CLUSTER)
    assert np.array_equal(
        clustering.labels, cluster.cluster_items(vectors, second.cluster, second.method, **CLUSTER).labels
    )
    assert clustering.method == "hdbscan" and clustering.n_clusters >= 4
    # The storm is one cluster of storm items only, holding nearly all of them (an item about oil prices
    # "as Storm Odile threatens refineries" may sit with the commodities instead).
    storm = items["headline"].str.contains("Odile").to_numpy()
    storm_cluster = np.bincount(clustering.labels[storm & (clustering.labels != NOISE)]).argmax()
    in_cluster = clustering.labels == storm_cluster
    assert (storm & in_cluster).sum() >= 0.8 * storm.sum()
    assert storm[in_cluster].all()


def test_the_plot_comes_from_the_clustering_layout_in_one_umap_run(sample_day, monkeypatch):
    import umap

    _, vectors = sample_day
    fits = []
    fit_transform = umap.UMAP.fit_transform
    monkeypatch.setattr(umap.UMAP, "fit_transform", lambda self, x, **kw: fits.append(self) or fit_transform(self, x))
    first = reduce.reduce_embeddings(vectors, **REDUCE)
    assert [model.n_components for model in fits] == [5]  # no second UMAP run for the picture
    second = reduce.reduce_embeddings(vectors, **REDUCE)
    np.testing.assert_array_equal(first.plot, second.plot)  # deterministic, as the clusters are
    # The picture keeps the clusters together: a clustered item's nearest item in it is mostly in its own cluster.
    labels = cluster.cluster_items(vectors, first.cluster, first.method, **CLUSTER).labels
    distances = np.linalg.norm(first.plot[:, None] - first.plot[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    clustered = labels != NOISE
    alike = labels[distances.argmin(axis=1)] == labels
    assert alike[clustered].mean() >= 0.85, alike[clustered].mean()


def test_small_day_falls_back_to_agglomerative(embedder):
    texts = [
        "Storm Odile makes landfall on the coast",
        "Storm Odile floods coastal towns",
        "Central bank cuts interest rates",
        "Central bank lowers its key rate",
        "A museum opens a sculpture hall",
    ]
    vectors = embedder.embed(texts)
    reduction = reduce.reduce_embeddings(vectors, **REDUCE)
    assert reduction.method == "small-day" and reduction.plot.shape == (5, 2)
    result = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER)
    assert result.method == "agglomerative"
    labels = result.labels.tolist()
    assert labels[0] == labels[1] != NOISE and labels[2] == labels[3] != NOISE and labels[0] != labels[2]
    assert labels[4] == NOISE


@pytest.mark.parametrize("n", [0, 1, 2])
def test_degenerate_sizes(n):
    vectors = np.eye(max(n, 1), 384, dtype=np.float32)[:n]
    reduction = reduce.reduce_embeddings(vectors, **REDUCE)
    result = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER)
    assert reduction.plot.shape == (n, 2) and len(result.labels) == n


def test_cluster_ids_are_numbered_by_size():
    assert cluster.renumber_by_size(np.array([5, 7, 7, NOISE, 7, 5, 2])).tolist() == [1, 0, 0, NOISE, 0, 1, 2]


def test_ctfidf_prefers_words_distinctive_of_a_cluster():
    keywords = label.ctfidf_keywords(
        {0: "storm odile storm odile coast flood", 1: "bank rates cut bank rates", NOISE: "coast news today"}
    )
    assert keywords[0][0] == "storm odile"  # the bigram says it all; its words are not repeated
    assert "storm" not in keywords[0] and "odile" not in keywords[0]
    assert keywords[1][0] in ("bank rates", "bank", "rates")


def test_summaries_label_each_cluster(sample_day):
    items, vectors = sample_day
    reduction = reduce.reduce_embeddings(vectors, **REDUCE)
    labels = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER).labels
    summaries = label.summarize_clusters(items, vectors, labels)
    assert list(summaries.columns) == label.SUMMARY_COLUMNS
    assert summaries["size"].sum() == (labels != NOISE).sum()
    storm = summaries[summaries["title"].str.contains("Odile")].iloc[0]
    assert "odile" in storm["label"].lower()
    assert storm["n_sources"] >= 3 and len(storm["top_headlines"].split("\n")) == 3


def test_quality_figures_and_verdicts():
    vectors = np.vstack([np.tile([1, 0, 0], (4, 1)), np.tile([0, 1, 0], (4, 1)), [[0, 0, 1]]]).astype(np.float32)
    vectors += np.random.default_rng(0).normal(0, 0.01, vectors.shape).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, NOISE])
    figures = quality.cluster_figures(vectors, labels)
    assert (
        figures["clusters"] == 2
        and figures["noise_share"] == pytest.approx(1 / 9)
        and figures["largest_share"] == pytest.approx(4 / 9)
    )
    assert figures["silhouette"] > 0.9
    assert all(o.passed for o in checks.judge_clusters(figures, LIMITS))
    strict = QualityThresholds(max_noise_share=0.1, min_clusters=3, max_largest_share=0.4, min_silhouette=1.0)
    verdicts = {o.check.name: o for o in checks.judge_clusters(figures, strict)}
    assert not any(o.passed for o in verdicts.values())
    assert verdicts["noise_share"].severity == verdicts["cluster_count"].severity == checks.ERROR
    assert verdicts["largest_cluster_share"].severity == verdicts["silhouette"].severity == checks.WARN
    # A small day, clustered by the fallback, fails the same checks only as warnings: it still reaches the sheet.
    small = checks.judge_clusters(figures, strict, small_day=True)
    assert not any(o.passed for o in small) and {o.severity for o in small} == {checks.WARN}
    assert all(o.description.endswith("(small day: a warning only)") for o in small if o.check.small_day_warns)


def test_empty_day_is_a_warning_not_a_failure_of_the_run():
    figures = quality.cluster_figures(np.zeros((0, 3), dtype=np.float32), np.array([], dtype=int))
    outcomes = checks.judge_clusters(figures, LIMITS)
    assert all(not o.passed and o.severity == checks.WARN and o.description == "no items on this day" for o in outcomes)


def test_data_checks_catch_broken_outputs():
    items = pd.DataFrame({"item_id": ["a", "b", "b"]})
    assert not quality.judge_unique_ids(items).passed
    assert quality.judge_unique_ids(items.drop_duplicates()).passed
    good = np.ones((2, 4), dtype=np.float32)
    ids = pd.Series(["a", "b"])
    assert quality.judge_embeddings(ids, good, ids, 4).passed
    assert not quality.judge_embeddings(ids, good, ids, 384).passed
    assert not quality.judge_embeddings(
        ids, np.array([[1, np.nan, 0, 0], [1, 1, 1, 1]], dtype=np.float32), ids, 4
    ).passed
    assert not quality.judge_embeddings(ids[:1], good[:1], ids, 4).passed
    assignments = pd.DataFrame({"item_id": ["a"], "cluster_id": [0]})
    assert not quality.judge_assignment(assignments, pd.DataFrame({"item_id": ["a", "b"]})).passed
    assert quality.judge_assignment(assignments, pd.DataFrame({"item_id": ["a"]})).passed


def _unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_second_stage_merges_similar_clusters_only():
    # Clusters 0 and 1 point almost the same way (one topic split by HDBSCAN); cluster 2 is another topic.
    vectors = _unit([[1, 0.1, 0], [1, 0, 0.1], [1, 0.2, 0], [1, 0, 0.2], [0, 1, 0], [0, 1, 0.1]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    merged = cluster.merge_similar(vectors, labels, similarity=0.35)
    assert merged[0] == merged[2] != merged[4]
    assert len(set(cluster.merge_similar(vectors, labels, similarity=0.999).tolist())) == 3


def test_second_stage_assigns_close_noise_and_leaves_outliers():
    vectors = _unit([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.1], [1, 0.3, 0], [0, 0, 1]])
    labels = np.array([0, 0, 1, 1, NOISE, NOISE])
    assigned, similarity = cluster.assign_noise(vectors, labels, similarity=0.3)
    # The item near cluster 0 joins it, with its similarity recorded; the orthogonal one stays noise.
    assert assigned.tolist() == [0, 0, 1, 1, 0, NOISE]
    assert similarity[4] > 0.9 and np.isnan(similarity[[0, 1, 2, 3, 5]]).all()


def test_hdbscan_settings_record_the_second_stage(sample_day):
    items, vectors = sample_day
    reduction = reduce.reduce_embeddings(vectors, **REDUCE, with_plot=False)
    assert reduction.plot.shape == (len(items), 0)
    plain = cluster.cluster_items(
        vectors,
        reduction.cluster,
        reduction.method,
        **{**CLUSTER, "merge_similarity": None, "assign_similarity": None},
    )
    staged = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER)
    assert staged.settings["hdbscan_clusters"] == plain.n_clusters >= staged.n_clusters
    assert (staged.labels == NOISE).sum() == staged.settings["hdbscan_noise"] - staged.settings["assigned_from_noise"]
    assert (staged.labels == NOISE).sum() <= (plain.labels == NOISE).sum()


def _judged(vectors: np.ndarray) -> dict[str, checks.Outcome]:
    reduction = reduce.reduce_embeddings(vectors, **REDUCE, with_plot=False)
    labels = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER).labels
    outcomes = checks.judge_clusters(quality.cluster_figures(vectors, labels), LIMITS)
    return {o.check.name: o for o in outcomes}


def test_default_thresholds_pass_a_real_day_and_flag_vectors_without_topics(sample_day):
    _, vectors = sample_day
    assert all(o.passed for o in _judged(vectors).values())
    # A day of random directions still gets clusters from UMAP and HDBSCAN; the silhouette tells it apart.
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(vectors.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    silhouette = _judged(noise)["silhouette"]
    assert not silhouette.passed and silhouette.metadata["silhouette"] < LIMITS.min_silhouette
