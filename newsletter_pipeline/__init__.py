"""newsletter_pipeline: daily newsletter items -> topic clusters -> a sheet, as Dagster assets."""
