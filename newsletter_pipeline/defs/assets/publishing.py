"""Step 6, raw_items + clusters + stories -> sheet_export: the day's rows in the sheet."""

import calendar

import dagster as dg
import pandas as pd

from newsletter_pipeline.defs.assets.common import DAILY, after_update_of
from newsletter_pipeline.defs.io_manager import OutputStore, by_day
from newsletter_pipeline.defs.resources import SheetsResource
from newsletter_pipeline.defs.results import materialized
from newsletter_pipeline.publishing import export
from newsletter_pipeline.storage import ParquetStore, code_fingerprint
from newsletter_pipeline.stories import tracking

ROW_KIND = {"clusters": "cluster", "items": "item", "stories": "story"}  # metadata: cluster_rows, item_rows, story_rows
# Each month's stories tab as last made, `<root>/stories_tab/<YYYY-MM>.parquet`, kept by the state it was made from:
# making it from a month of stories takes seconds, and every export of the month's days shows the same tab.
STORIES_TAB = "stories_tab"


def month_stories(stored: ParquetStore, month: str) -> pd.DataFrame:
    """The stories tab of `month` (YYYY-MM), from its latest story state: a later day's than the one exported when
    there is one, so re-exporting an earlier day does not take the tab back in time."""
    latest = max(d for d in stored.days("story_state") if d[:7] == month)
    made_from = stored.read_metadata("story_state", latest).get("inputs")  # a state before 2026-11-24 has none
    key = made_from and f"{latest}/{made_from}/{code_fingerprint(('newsletter_pipeline.stories.tracking',), ())}"
    if key and stored.made_from(STORIES_TAB, month, key):
        return stored.read(STORIES_TAB, month)
    last = f"{month}-{calendar.monthrange(int(month[:4]), int(month[5:]))[1]:02d}"
    tab = tracking.story_tab(stored.read("story_state", latest), f"{month}-01", last)
    if key:
        stored.write(STORIES_TAB, month, tab, {"inputs": key})
    return tab


# The `sheets` pool (limit 1 in dagster.yaml) serializes exports: a tab is rewritten whole, and two runs
# writing different days at once would otherwise lose one run's rows.
@dg.asset(
    **DAILY,
    ins={
        "clusters": dg.AssetIn(metadata={"tables": ["clusters", "cluster_summaries"]}),
        "stories": dg.AssetIn(metadata={"tables": ["stories", "story_items"]}),
    },
    kinds={"googlesheets"},
    pool="sheets",
    io_manager_key="store",
    automation_condition=after_update_of("stories"),  # the rows show the story ids: redone with them
)
def sheet_export(
    context: dg.AssetExecutionContext,
    raw_items,
    clusters,
    stories,
    sheets: SheetsResource,
    store: dg.ResourceParam[OutputStore],
):
    """The day's clusters and items in the sheet layout, and its month's stories tab rewritten; a re-run replaces
    the day's rows. Stores no output table (only the month's stories tab, kept to be reused: STORIES_TAB)."""
    sheets.validate()  # missing or malformed credentials fail here, naming the variable, before any work
    stories_by_day, clusters_by_day, per_day = by_day(context, stories), by_day(context, clusters), {}
    # Each month's stories tab once, not once a day: every day of a month shows the same tab.
    tabs = {month: month_stories(store.parquet, month) for month in sorted({day[:7] for day in context.partition_keys})}
    for day, day_items in by_day(context, raw_items).items():
        day_clusters, day_stories = clusters_by_day[day], stories_by_day[day]
        tables = export.sheet_tables(
            day,
            day_items,
            day_clusters["clusters"],
            day_clusters["cluster_summaries"],
            day_stories["stories"],
            day_stories["story_items"],
            tabs[day[:7]],
        )
        totals = sheets.write(day, tables)
        per_day[day] = {f"{ROW_KIND[kind]}_rows": len(table) for kind, table in tables.items()}
        per_day[day]["sheet"] = "unchanged" if totals.unchanged else "written"
        done = "already held" if totals.unchanged else "wrote"  # the workbook held these rows: nothing rewritten
        context.log.info(
            f"{day}: {done} {len(tables['clusters'])} cluster rows, {len(tables['items'])} item rows and "
            f"{len(tables['stories'])} story rows for {day[:7]}; sheet totals {dict(totals)}"
        )
    yield from materialized(
        context, "sheet_export", None, per_day, destination=sheets.destination, layout_version=export.LAYOUT_VERSION
    )
