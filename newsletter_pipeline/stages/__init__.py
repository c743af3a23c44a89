"""The pipeline's pure work, one module per stage: parse, embed, reduce, cluster, label, export (and quality, plot)."""
