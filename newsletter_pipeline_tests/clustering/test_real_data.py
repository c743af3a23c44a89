"""Real news items from ../shared/datasets (skipped when absent): read as they are, clustered sensibly."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from newsletter_pipeline import quality
from newsletter_pipeline.clustering import cluster, label, reduce
from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.params import ClusterParams, QualityThresholds, ReduceParams
from newsletter_pipeline.embedding import embed
from newsletter_pipeline.items import parse
from newsletter_pipeline_tests.conftest import needs_datasets

# The defaults the assets use (defs/params.py), as the plain values the work functions take.
REDUCE, CLUSTER = ReduceParams().model_dump(), ClusterParams().model_dump()
LIMITS = QualityThresholds()


def shared_file(name: str) -> parse.LandingFile:
    """A dataset of ../shared read in place (a link to it from a landing folder would be refused: it points outside)."""
    source = needs_datasets(name)
    return parse.LandingFile(str(source), source.read_bytes)


@pytest.fixture(scope="module")
def huffpost():
    file = shared_file("huffpost_news_category_v3_10k.jsonl")
    return Path(file.name), parse.parse_landing([file])


def test_every_huffpost_record_is_an_item_or_a_counted_repeat(huffpost):
    source, parsed = huffpost
    lines = sum(1 for line in source.open() if line.strip())
    assert len(parsed.items) + len(parsed.duplicates) + len(parsed.rejects) == lines == 10_000
    assert parsed.rejects.empty and parsed.items["item_id"].is_unique
    assert parsed.items["day"].min() == "2018-05-01" and parsed.items["day"].max() == "2022-09-23"


def test_a_busy_huffpost_day_clusters_better_than_chance(huffpost, embedder):
    items = parse.items_for_day(huffpost[1], "2018-05-15").items
    vectors = embedder.embed(embed.item_texts(items))
    reduction = reduce.reduce_embeddings(vectors, **REDUCE)
    result = cluster.cluster_items(vectors, reduction.cluster, reduction.method, **CLUSTER)
    score = normalized_mutual_info_score(items["category"], result.labels)
    # The same cluster sizes dealt at random: NMI of small days is high by chance alone, so compare with that.
    rng = np.random.default_rng(0)
    chance = np.mean(
        [normalized_mutual_info_score(items["category"], rng.permutation(result.labels)) for _ in range(50)]
    )
    assert score > chance + 0.05, (score, chance)
    assert adjusted_rand_score(items["category"], result.labels) > 0.05  # ARI is 0 for chance
    figures = quality.cluster_figures(vectors, result.labels)
    assert all(o.passed for o in checks.judge_clusters(figures, LIMITS) if o.severity == checks.ERROR)
    summaries = label.summarize_clusters(items, vectors, result.labels)
    assert summaries["keywords"].str.len().gt(0).all()


def test_ag_news_without_dates_is_rejected_with_a_reason():
    file = shared_file("ag_news_test.csv")
    parsed = parse.parse_landing([file])
    assert parsed.items.empty and len(parsed.rejects) == 7_600
    assert set(parsed.rejects["reason"]) == {"missing date (looked for: date, published, published_at)"}
    assert set(parsed.rejects["file"]) == {file.name}
