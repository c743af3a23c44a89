"""The daily assets, one module per step of the flow: raw items -> embeddings -> UMAP coordinates -> clusters ->
stories -> sheet export.

Each asset takes its upstream tables as arguments and returns its own tables for every day of its run (one day, or
a range in a single-run backfill); the OutputStore IO manager (defs/io_manager.py) writes one Parquet file per table
and day, so a range run leaves the same files as per-day runs. Check results are judged on the tables as stored.
"""

from newsletter_pipeline.defs.assets.clustering import clusters, umap_coordinates
from newsletter_pipeline.defs.assets.embedding import item_embeddings
from newsletter_pipeline.defs.assets.items import raw_items
from newsletter_pipeline.defs.assets.publishing import sheet_export
from newsletter_pipeline.defs.assets.stories import stories

# In the order data moves.
ASSETS = [raw_items, item_embeddings, umap_coordinates, clusters, stories, sheet_export]
