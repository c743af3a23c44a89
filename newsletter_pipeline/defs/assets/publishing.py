"""Step 6, raw_items + clusters + stories -> sheet_export: the day's rows in the sheet."""

import dagster as dg

from newsletter_pipeline.defs.assets.common import DAILY, after_update_of
from newsletter_pipeline.defs.io_manager import by_day
from newsletter_pipeline.defs.resources import SheetsResource
from newsletter_pipeline.defs.results import materialized
from newsletter_pipeline.publishing import export


# The `sheets` pool (limit 1 in dagster.yaml) serializes exports: a tab is rewritten whole, and two runs
# writing different days at once would otherwise lose one run's rows.
@dg.asset(
    **DAILY,
    ins={"clusters": dg.AssetIn(metadata={"tables": ["clusters", "cluster_summaries"]})},
    kinds={"googlesheets"},
    pool="sheets",
    io_manager_key="store",
    automation_condition=after_update_of("stories"),  # the rows show the story ids: redone with them
)
def sheet_export(context: dg.AssetExecutionContext, raw_items, clusters, stories, sheets: SheetsResource):
    """The day's clusters and items in the sheet layout; a re-run replaces the day's rows. Stores no table."""
    sheets.validate()  # missing or malformed credentials fail here, naming the variable, before any work
    stories_by_day, clusters_by_day, per_day = by_day(context, stories), by_day(context, clusters), {}
    for day, day_items in by_day(context, raw_items).items():
        day_clusters = clusters_by_day[day]
        tables = export.sheet_tables(
            day, day_items, day_clusters["clusters"], day_clusters["cluster_summaries"], stories_by_day[day]
        )
        totals = sheets.write(day, tables)
        per_day[day] = {"cluster_rows": len(tables["clusters"]), "item_rows": len(tables["items"])}
        context.log.info(
            f"{day}: wrote {len(tables['clusters'])} cluster rows and {len(tables['items'])} item rows; sheet totals "
            f"{totals}"
        )
    yield from materialized(
        context, "sheet_export", None, per_day, destination=sheets.destination, layout_version=export.LAYOUT_VERSION
    )
