"""Step 3, raw_items -> item_embeddings: one sentence vector per item, from the cache or the model."""

import time

import dagster as dg
import pyarrow as pa

from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.assets.common import DAILY, timed, vectors_of
from newsletter_pipeline.defs.checks import check_specs
from newsletter_pipeline.defs.io_manager import OutputStore, Stored, by_day
from newsletter_pipeline.defs.resources import EmbeddingResource
from newsletter_pipeline.defs.results import checked, materialized
from newsletter_pipeline.embedding import embed, embed_cache
from newsletter_pipeline.storage import vectors_to_arrow_column


@dg.asset(
    **DAILY,
    kinds={"pytorch", "parquet"},
    pool="gpu",
    io_manager_key="store",
    check_specs=check_specs("item_embeddings"),
)
def item_embeddings(
    context: dg.AssetExecutionContext, raw_items, embedder: EmbeddingResource, store: dg.ResourceParam[OutputStore]
):
    """One float32 sentence embedding per item: from the embedding cache, else computed on the GPU resource (CPU when
    there is none). Its value: item_id and embedding, with the model, variant and dimension in the file's metadata."""
    items = by_day(context, raw_items)
    texts = {day: embed.item_texts(day_items) for day, day_items in items.items()}
    timings: dict = {}
    choice = embedder.choice
    (context.log.warning if choice.fallback else context.log.info)(
        f"embedding backend: {choice.backend} ({choice.reason})"
    )
    cache = embedder.embedding_cache(store.parquet)
    # Every day of the run in one pass: the model is loaded once and the texts no day has seen go in large batches.
    with timed(timings, "embed_seconds"):
        all_texts = [text for day_texts in texts.values() for text in day_texts]
        started = time.monotonic()

        def report(done: int, total: int) -> None:  # a long day: a line in the run log every PROGRESS_STEP texts
            elapsed = time.monotonic() - started
            left = elapsed * (total - done) / done
            context.log.info(f"embedding: {done:,} of {total:,} new texts, {elapsed:.0f} s, about {left:.0f} s left")

        vectors, cache_figures = embed_cache.embed_with_cache(
            cache, all_texts, list(items), lambda new: embedder.embed(new, report)
        )
    # The dimension comes from the vectors, or from the model on an empty run, so every day's file has the same schema.
    dimension = vectors.shape[1] if len(vectors) else embedder.dimension
    vectors = vectors.reshape(len(vectors), dimension)
    metadata = {"model": embedder.model, "variant": embedder.variant, "dimension": str(dimension)}
    written, day_vectors, offset = {}, {}, 0
    for day, day_items in items.items():
        day_vectors[day] = vectors[offset : offset + len(day_items)]
        offset += len(day_items)
        table = pa.table(
            {
                "item_id": pa.array(day_items["item_id"], pa.string()),
                "embedding": vectors_to_arrow_column(day_vectors[day]),
            }
        )
        written[day] = {"item_embeddings": Stored(table, metadata)}
    device = (
        embedder.device_used
        if cache_figures["texts_encoded"]
        else "none: no items"
        if not len(vectors)
        else "none: every vector came from the cache"
    )
    run_metadata = {"model": embedder.model, "variant": embedder.variant, "dimension": dimension, "device": device}
    if cache_figures["texts_encoded"]:
        run_metadata["items_per_second"] = round(
            cache_figures["texts_encoded"] / max(timings["embed_seconds"], 1e-9), 1
        )
    per_day = {day: {"items": len(day_items)} for day, day_items in items.items()}
    yield from materialized(context, "item_embeddings", written, per_day, **run_metadata, **cache_figures, **timings)
    outcomes = {}
    for day, day_items in items.items():
        if cache is not None:
            cache.save(day, texts[day], day_vectors[day])  # after the day's file: the cache never runs ahead of it
        stored = store.parquet.read("item_embeddings", day)  # judged as stored
        outcomes[day] = [
            checks.EMBEDDINGS_VALID.evaluate(
                stored["item_id"], vectors_of(stored, "embedding"), day_items["item_id"], dimension
            )
        ]
    yield from checked(context, "item_embeddings", outcomes)
