"""Daily partitions: one partition per calendar day (UTC) of item publication."""

import dagster as dg

from newsletter_pipeline.config import load_config

# The first day that can be materialized; set NEWSLETTER_START_DATE to reach older archives.
START_DATE = load_config().get("NEWSLETTER_START_DATE")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE)
