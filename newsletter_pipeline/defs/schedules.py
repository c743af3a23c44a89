"""The daily job and its schedule: each morning, materialize yesterday."""

import dagster as dg

from newsletter_pipeline.config import load_config
from newsletter_pipeline.defs.partitions import GROUP

# Hour (UTC) at which yesterday's partition runs; late enough for the morning newsletters to land.
SCHEDULE_HOUR = load_config().integer("NEWSLETTER_SCHEDULE_HOUR")

daily_job = dg.define_asset_job(
    "daily_newsletter_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Every asset of one day, from the landing files to the sheet.",
)

# For daily partitions this targets the last complete day: the run at 06:00 on the 2nd does the 1st.
daily_schedule = dg.build_schedule_from_partitioned_job(daily_job, hour_of_day=SCHEDULE_HOUR, minute_of_hour=0)
