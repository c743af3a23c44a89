"""Daily partitions: one partition per calendar day (UTC) of item publication."""

import os

import dagster as dg

# The first day that can be materialized; set NEWSLETTER_START_DATE to reach older archives.
START_DATE = os.environ.get("NEWSLETTER_START_DATE", "2018-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE)
