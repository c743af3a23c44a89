"""Dagster wiring: thin definitions around the pure stages in `newsletter_pipeline.stages`."""
