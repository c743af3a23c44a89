"""Storage in one place: the OutputStore IO manager writes every asset's tables and loads them back, as the assets
and a notebook user read them, for one day and for a range of days."""

import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from newsletter_pipeline.defs.io_manager import KEEP, UNASSIGNED, OutputStore, Stored
from newsletter_pipeline_tests.conftest import ASSETS, REPO, SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]
# Each asset's value is its own table; its side tables are read by name (README, "Outputs").
TABLES = {
    "raw_items": ["raw_items", "duplicates", "quarantine"],
    "item_embeddings": ["item_embeddings"],
    "umap_coordinates": ["umap_coordinates"],
    "clusters": ["clusters", "cluster_summaries"],
    "stories": ["stories", "story_state"],
}


def test_each_asset_value_loads_for_a_day_as_stored(workspace):
    assert workspace.add_sample().materialize(DAY).success
    defs = dg.Definitions(assets=ASSETS, resources=workspace.resources())
    for asset, tables in TABLES.items():
        value = defs.load_asset_value(asset, partition_key=DAY)
        stored = workspace.store.read(asset, DAY)
        pd.testing.assert_frame_equal(value, stored)
        assert value.attrs == stored.attrs and len(value) > 0, asset
        for table in tables:
            assert workspace.store.exists(table, DAY), (asset, table)
    # The file metadata travels with the value: what the assets downstream read off their inputs.
    embeddings = defs.load_asset_value("item_embeddings", partition_key=DAY)
    assert embeddings.attrs["model"] == "all-MiniLM-L6-v2" and embeddings.attrs["dimension"] == "384"
    assert defs.load_asset_value("umap_coordinates", partition_key=DAY).attrs["method"] == "umap"


def test_the_project_definitions_load_a_day_in_a_fresh_process(workspace):
    """What a notebook user types, with only the environment pointing at the outputs."""
    assert workspace.add_sample().materialize(DAY).success
    script = (
        "from newsletter_pipeline.definitions import defs\n"
        f"clusters = defs.load_asset_value('clusters', partition_key='{DAY}')\n"
        "print(len(clusters), sorted(clusters.columns))\n"
    )
    env = {**os.environ, "NEWSLETTER_OUTPUT_ROOT": str(workspace.outputs), "DAGSTER_HOME": str(workspace.root)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = workspace.store.read("clusters", DAY)
    assert done.stdout.strip() == f"{len(expected)} {sorted(expected.columns)}"


def test_a_range_writes_every_day_and_a_held_day_keeps_its_files(tmp_path):
    store = OutputStore(root=str(tmp_path))
    first, second = SAMPLE_DAYS[:2]
    frame = pd.DataFrame({"item_id": ["a", "b"]})
    context = dg.build_output_context(asset_key=dg.AssetKey("raw_items"), partition_key=first)
    store.handle_output(context, {first: {"raw_items": frame, "duplicates": frame.iloc[:0]}})
    logged = {key: getattr(value, "value", value) for key, value in context.get_logged_metadata().items()}
    assert logged == {"path": store.parquet.path("raw_items", first), "rows": 2}

    # A range: each day written on its own; KEEP leaves a day's stored files as they were.
    ranged = dg.build_output_context(
        asset_key=dg.AssetKey("raw_items"),
        asset_partitions_def=dg.DailyPartitionsDefinition(start_date=first),
        asset_partition_key_range=dg.PartitionKeyRange(first, second),
    )
    later = pd.DataFrame({"item_id": ["c"]})
    store.handle_output(ranged, {first: KEEP, second: {"raw_items": later}, UNASSIGNED: {"quarantine": later.iloc[:0]}})
    pd.testing.assert_frame_equal(store.parquet.read("raw_items", first), frame)
    pd.testing.assert_frame_equal(store.parquet.read("raw_items", second), later)
    assert store.parquet.exists("quarantine", UNASSIGNED)
    assert getattr(ranged.get_logged_metadata()["days_written"], "value", None) == 1

    # A Stored table keeps its metadata; a missing day is an error that names the run's days.
    again = dg.build_output_context(asset_key=dg.AssetKey("raw_items"), partition_key=first)
    store.handle_output(again, {first: {"raw_items": Stored(frame, {"source": "test"})}})
    assert store.parquet.read("raw_items", first).attrs == {"source": "test"}
    with pytest.raises(ValueError, match=r"one entry per day of the run"):
        store.handle_output(ranged, {first: {"raw_items": frame}})
