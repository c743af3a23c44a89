"""What every daily asset shares: the partitions and backfill policy, timing, and reading vector columns."""

import time
from contextlib import contextmanager

import dagster as dg
import numpy as np
import pandas as pd

from newsletter_pipeline.defs.partitions import GROUP, daily_partitions
from newsletter_pipeline.storage import column_to_vectors

# A range of days runs as one run: the model loads once and every day is written on its own.
DAILY = {"partitions_def": daily_partitions, "backfill_policy": dg.BackfillPolicy.single_run(), "group_name": GROUP}


@contextmanager
def timed(timings: dict, key: str):
    """Record the seconds the block takes under `timings[key]`."""
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 3)


def vectors_of(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A stored table's vector column as a matrix (its dimension is in the file's metadata, `attrs`)."""
    return column_to_vectors(frame[column], int(frame.attrs.get("dimension", 0)))


def after_update_of(asset: str) -> dg.AutomationCondition:
    """Run a day again once `asset` has been updated for the day it depends on, when this day is already
    materialized (a new day waits for its schedule) and nothing of it is running. A run that updates both (a range
    run, the daily run) handles the change itself, so it sets off nothing."""
    return (
        (
            dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated())
            .allow(dg.AssetSelection.assets(asset))
            .since_last_handled()
        )
        & ~dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_in_progress()
    ).with_label(f"{asset} of the day it reads was updated")
