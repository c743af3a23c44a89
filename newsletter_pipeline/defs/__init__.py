"""Dagster wiring: thin definitions around the work packages (landing, items, embedding, clustering, stories,
publishing)."""
