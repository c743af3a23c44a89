"""The parameters of the clustering steps and the checks: each one's default and the reason for it, declared once.

They are Dagster Config classes because Dagster nests only its own Config in a resource's config: the launchpad sets
them under `resources.clustering.config.reduce`, `.cluster`, `.quality` and `.stories`. The work functions take the
plain values (`**params.model_dump()`), so they can be called without Dagster.
"""

import dagster as dg
from pydantic import Field


class ReduceParams(dg.Config):
    """UMAP settings; the defaults are BERTopic's (the quality benchmark tried n_neighbors 30: benchmarks/README.md)."""

    n_neighbors: int = Field(
        default=15,
        description=(
            "Neighbours per point (default 15); capped at items - 1. On the quality benchmark, 30 scored the same or "
            "lower (HuffPost weeks NMI 0.363 vs 0.366, ARI 0.238 vs 0.242) and was less stable across seeds (ARI 0.60 "
            "vs 0.72)."
        ),
    )
    n_components: int = Field(
        default=5,
        description="Dimensions handed to HDBSCAN (default 5). Few enough for density estimates to work, enough to "
        "keep topics apart.",
    )
    min_dist: float = Field(
        default=0.0,
        description="How tightly UMAP may pack points (default 0.0): tight packing is what density clustering wants.",
    )
    metric: str = Field(
        default="cosine",
        description="Distance between embeddings (default cosine): sentence embeddings are compared by angle.",
    )
    plot_min_dist: float = Field(
        default=0.1,
        description="min_dist of the 2-D layout for plots (default 0.1): a little spread makes clusters readable.",
    )
    plot_epochs: int = Field(
        default=100,
        ge=1,
        le=500,
        description=(
            "Optimisation epochs of the 2-D plot layout on a day of 2,000 items or more (default 100); smaller days "
            "get more, up to 500, for the same ~0.3 s. The layout starts from the clustering layout and its UMAP "
            "graph instead of a second full UMAP run: 0.3 s at 2,000 items instead of 5.5 s, the pictures as "
            'readable (benchmarks/README.md, "One layout"); 200 epochs cost twice as much for little more.'
        ),
    )
    random_state: int = Field(
        default=42,
        description="Seed (default 42). A fixed seed makes UMAP deterministic, so the same day gives the same "
        "clusters.",
    )
    min_items: int = Field(
        default=20,
        description=(
            "Below this many items (default 20) UMAP's neighbourhood graph is too thin to trust: the day skips UMAP "
            "and is clustered by the small-day fallback on the embeddings themselves."
        ),
    )


class ClusterParams(dg.Config):
    """HDBSCAN settings and the small-day fallback."""

    min_cluster_size: int | None = Field(
        default=None,
        description=(
            "Smallest group HDBSCAN calls a cluster (default: auto = sqrt(items)/4, between 3 and 50: 5 for 350 items, "
            "11 for 2,000). Small on purpose: HDBSCAN finds the dense groups and the merge step builds topics from "
            "them; a fixed size fits neither a day of 40 items nor one of 2,000."
        ),
    )
    min_samples: int | None = Field(
        default=1,
        description=(
            "How conservative HDBSCAN is (default 1: the least). Higher values call more items noise; HDBSCAN's own "
            "default (= min_cluster_size) leaves a fifth to a third of news items unclustered. None = half of "
            "min_cluster_size."
        ),
    )
    cluster_selection_method: str = Field(
        default="leaf",
        description=(
            "'leaf' (default) takes the condensed tree's leaves: small, homogeneous groups for the merge step to join. "
            "'eom' picks the most persistent clusters, which on news collapses a day into a few mixed ones (the "
            "baseline)."
        ),
    )
    cluster_selection_epsilon: float = Field(
        default=0.0,
        description="Merge clusters closer than this in UMAP space (default 0.0: no merging).",
    )
    merge_similarity: float | None = Field(
        default=0.35,
        ge=-1.0,
        le=1.0,
        description=(
            "Second stage: HDBSCAN groups whose centroids (mean embeddings) have cosine similarity above this, by "
            "average linkage, become one cluster (default 0.35). Lower merges more: on the benchmark's HuffPost weeks "
            "0.40 gives 11.8 clusters (NMI 0.381, ARI 0.219), 0.35 gives 8.1 (NMI 0.366, ARI 0.242), 0.30 gives 5.7 "
            "(NMI 0.347, ARI 0.305); the sample's distinct stories stay apart at all three. None turns merging off."
        ),
    )
    assign_similarity: float | None = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description=(
            "Second stage: a noise item joins the cluster whose centroid is most similar to it when that cosine "
            "similarity is at least this (default 0.3); items further from every cluster stay noise. None turns it "
            "off."
        ),
    )
    fallback_distance: float = Field(
        default=0.55,
        description=(
            "Small days (below ReduceParams.min_items): items whose average cosine distance is under this (default "
            "0.55, about similarity 0.45 in all-MiniLM-L6-v2, where same-story headlines sit) join one cluster."
        ),
    )


class QualityThresholds(dg.Config):
    """Limits of the checks. Failing an ERROR check keeps the day out of the sheet."""

    max_quarantine_share: float = Field(
        default=0.05,
        description="WARN when more than this share of a day's records is quarantined (default 0.05): a source changed "
        "its format.",
    )
    # The cluster thresholds come from `python -m benchmarks.quality` (table in benchmarks/README.md): the
    # figures of the default pipeline on 24 real HuffPost days of May 2018 (20 to 75 items), 3 HuffPost weeks
    # and 6 AG News days of 500 to 2,000 items, and on days of random vectors (no topics) as a control.
    max_noise_share: float = Field(
        default=0.3,
        description=(
            "ERROR above this share of items left as noise (default 0.3). Real days stay at or below 0.154 (median "
            "0.047; weeks at most 0.034, AG News days 0.077): twice the worst real day means most of a story-rich day "
            "would be missing from the sheet. It does not catch meaningless vectors (random ones leave at most 0.23 as "
            "noise): the silhouette check does."
        ),
    )
    min_clusters: int = Field(
        default=1,
        description="ERROR below this many clusters on a day with items (default 1; real days have 2 to 10): nothing "
        "to publish.",
    )
    max_largest_share: float = Field(
        default=0.7,
        description=(
            "WARN when one cluster holds more than this share of the day (default 0.7). Real days reach 0.65 (a day "
            "when politics is half the news; median 0.38): above every real day, likely several stories merged."
        ),
    )
    min_silhouette: float = Field(
        default=0.035,
        description=(
            "WARN below this silhouette (cosine, on the embeddings, noise left out; default 0.035). Real days score "
            "0.052 to 0.126, weeks of 350 items 0.041 to 0.062, AG News days 0.053 to 0.068; days of random vectors "
            "(no topics at all) 0.013 to 0.038, 9 in 10 of them below 0.035. Below every real set, above most "
            "structure-free ones: a warning that the clusters are no tighter than noise. Not computed with fewer than "
            "2 clusters."
        ),
    )


class StoryParams(dg.Config):
    """How the items of different days are joined into stories (stories.tracking)."""

    match_threshold: float = Field(
        default=0.55,
        ge=0.0,
        le=1.0,
        description=(
            "Least cosine similarity of an item's all-MiniLM-L6-v2 embedding to a story's centroid (the mean of its "
            "items') for the item to continue the story (default 0.55). Tuned on the first half of the Wikipedia "
            "Current Events Portal's September 2015 (benchmarks/README.md, 'Stories across days'): from 0.52 to 0.58 "
            "story ARI over the month stays at 0.30 or more, 0.50 lets unrelated events chain into one story (0.29), "
            "0.60 splits ongoing stories (0.23); 0.55 sits in the middle of that range. On HuffPost's May 2018 days it "
            "keeps a story on 2+ days as pure as a day's cluster or purer (median category purity 1.00)."
        ),
    )
    cohesion_threshold: float = Field(
        default=0.65,
        ge=0.0,
        le=1.0,
        description=(
            "Least cosine similarity of a clustered item that continues no story to the centroid of its cluster's "
            "such items for it to start the cluster's story with them (default 0.65); below it the item starts a "
            "story of its own. A day's cluster is a topic that can hold several stories: without the test, HuffPost's "
            "May 2018 stories on 2+ days had a median category purity of 0.75, with it 1.00. From 0.6 to 0.8 story "
            "ARI on WCEP moves by 0.02 and purity not at all (benchmarks/README.md, 'Stories across days'); on the "
            "sample's days the items of one story sit at 0.65 to 0.9 from their cluster's centroid and the odd items "
            "of a mixed cluster at 0.3 to 0.6, so 0.65 keeps a story's items together and the odd ones apart."
        ),
    )
    lookback_days: int = Field(
        default=7,
        ge=1,
        description=(
            "Days a story may go unseen and still continue (default 7: a weekly newsletter, or a story that pauses "
            "over a weekend, picks up where it left); a story not seen for more days no longer continues (a story "
            "readers have seen stays in the state for the month's stories tab: 31 days, or the look-back if longer). "
            "1 matches yesterday's stories only."
        ),
    )
