"""Step 1 and 2, landing files -> raw_items: the day's items, duplicates and quarantined records."""

import dagster as dg
from pydantic import Field

from newsletter_pipeline.defs import checks
from newsletter_pipeline.defs.assets.common import DAILY
from newsletter_pipeline.defs.checks import check_specs
from newsletter_pipeline.defs.io_manager import KEEP, UNASSIGNED, OutputStore
from newsletter_pipeline.defs.partitions import partition_window
from newsletter_pipeline.defs.resources import ClusteringResource, LandingFolder
from newsletter_pipeline.defs.results import checked, markdown, materialized
from newsletter_pipeline.items import index, parse

RAW_ITEMS_TABLES = ("raw_items", "duplicates", "quarantine")


class RawItemsConfig(dg.Config):
    """Run config of raw_items (launchpad: ops.raw_items.config)."""

    allow_emptied_days: bool = Field(
        default=False,
        description="Let a day that had items drop to none (its landing files were removed on purpose). Without it "
        "such a day is held: its outputs and sheet rows stay, and the day_not_emptied check fails, so a missing or "
        "emptied landing location never wipes a published day.",
    )
    parse_all: bool = Field(
        default=False,
        description="Parse every landing file, as before the landing index, which is then neither read nor written "
        "(a run otherwise parses only the files that can hold its days). The result is the same; this is for "
        "comparison. To rebuild the index, delete <output root>/landing_index/.",
    )


@dg.asset(**DAILY, kinds={"parquet"}, io_manager_key="store", check_specs=check_specs("raw_items"))
def raw_items(
    context: dg.AssetExecutionContext,
    config: RawItemsConfig,
    landing: LandingFolder,
    store: dg.ResourceParam[OutputStore],
    clustering: ClusteringResource,
):
    """The day's newsletter items from the landing locations; every record an item, a duplicate or quarantined.

    Its value is the items table; its side tables are `duplicates` and `quarantine` (records of no day under
    `quarantine/unassigned.parquet`)."""
    listing = landing.listing()  # a location that is missing or cannot be listed fails here, before anything is written
    for skipped in listing.skipped:
        context.log.warning(f"{skipped.name}: {skipped.reason}")
    first_day, last_day = partition_window()
    # Only the files that can hold the run's days are parsed; the index of what each file holds lives in the store.
    reading = index.read_landing(
        listing.files,
        store.parquet,
        context.partition_keys,
        landing.column_map,
        first_day=first_day,
        last_day=last_day,
        date_format=landing.date_format,
        use_index=not config.parse_all,
    )
    if reading.rebuilt:
        context.log.info(f"{reading.rebuilt}: every landing file was parsed to make it")
    if reading.unsaved:
        context.log.warning(f"the landing index could not be written ({reading.unsaved}): the next run parses again")
    parsed = reading.parsed
    for warning in parsed.warnings:
        context.log.warning(warning)
    # Records that belong to no day (no usable date, or a date outside the partitions) are kept in one table.
    unassigned = parsed.rejects[parsed.rejects["day"].isna()].reset_index(drop=True)
    for reject in unassigned.itertuples():
        context.log.warning(
            f"{reject.file}, record {reject.position}: {reject.reason}; it belongs to no day until fixed"
        )
    written, per_day, found = {UNASSIGNED: {"quarantine": unassigned}}, {}, {}
    for day in context.partition_keys:
        today = parse.items_for_day(parsed, day)
        # The day's items as stored before this run (its own earlier output): a day is never emptied by accident.
        previous = len(store.parquet.read("raw_items", day)) if store.parquet.exists("raw_items", day) else 0
        emptied = checks.DAY_NOT_EMPTIED.evaluate(day, previous, len(today.items), config.allow_emptied_days)
        found[day] = (today, emptied)
        if emptied.passed:
            written[day] = {"raw_items": today.items, "duplicates": today.duplicates, "quarantine": today.rejects}
        else:  # held: the stored day stays as it was, and the check blocks the export
            written[day] = KEEP
            context.log.error(emptied.description)
        for reject in today.rejects.itertuples():
            context.log.warning(f"{reject.file}, record {reject.position}: {reject.reason}")
        tables = written[day] or {table: store.parquet.read(table, day) for table in RAW_ITEMS_TABLES}
        per_day[day] = {
            "records": today.records,
            "items": len(tables["raw_items"]),
            "duplicates": len(tables["duplicates"]),
            "quarantined": len(tables["quarantine"]),
            "sources": int(tables["raw_items"]["source"].nunique()),
            **({} if emptied.passed else {"held": True}),
        }
        if len(tables["quarantine"]):
            reasons = tables["quarantine"].groupby("reason").size().sort_values(ascending=False)
            per_day[day]["quarantine_reasons"] = markdown(list(reasons.items()), ("reason", "records"))
    skipped = {"skipped_entries": len(listing.skipped)}
    if listing.skipped:
        skipped["skipped"] = markdown([(s.name, s.reason) for s in listing.skipped], ("entry", "why it was not read"))
    yield from materialized(
        context,
        "raw_items",
        written,
        per_day,
        landing_files=reading.listed,
        files_parsed=reading.parsed_files,
        files_from_index=reading.from_index,
        files_reindexed=reading.reindexed,
        records_read=parsed.records,
        records_without_a_day=len(unassigned),
        **skipped,
    )
    outcomes = {}
    for day, (today, emptied) in found.items():
        stored = {table: store.parquet.read(table, day) for table in RAW_ITEMS_TABLES}  # judged as stored
        counts = {table: len(frame) for table, frame in stored.items()}
        outcomes[day] = [
            checks.UNIQUE_ITEM_ID.evaluate(stored["raw_items"]),
            checks.RECORDS_BALANCE.evaluate(
                today.records, counts["raw_items"], counts["duplicates"], counts["quarantine"], reading.balanced
            ),
            checks.QUARANTINE_SHARE.evaluate(today.records, counts["quarantine"], limits=clustering.quality),
            emptied,
        ]
    yield from checked(context, "raw_items", outcomes)
