"""Daily partitions: one partition per calendar day (UTC) of item publication; the asset group they make up."""

import datetime as dt

import dagster as dg

from newsletter_pipeline.config import load_config

# The first day that can be materialized; set NEWSLETTER_START_DATE to reach older archives.
START_DATE = load_config().get("NEWSLETTER_START_DATE")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE)

# The group of every daily asset; the daily job selects it.
GROUP = "newsletter"


def partition_window() -> tuple[str, str]:
    """The days an item may have: from the first partition to tomorrow (UTC), for items sent a little early."""
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    return daily_partitions.start.strftime("%Y-%m-%d"), tomorrow.isoformat()
