"""Step 4, reduction and clustering: UMAP (reduce), HDBSCAN and its second stage (cluster), labels, plots."""
