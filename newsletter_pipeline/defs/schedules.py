"""The daily job and its schedule: each morning, materialize yesterday."""

import os

import dagster as dg

# Hour (UTC) at which yesterday's partition runs; late enough for the morning newsletters to land.
SCHEDULE_HOUR = int(os.environ.get("NEWSLETTER_SCHEDULE_HOUR", "6"))

daily_job = dg.define_asset_job(
    "daily_newsletter_job",
    selection=dg.AssetSelection.groups("newsletter"),
    description="Every asset of one day, from the landing files to the sheet.",
)

# For daily partitions this targets the last complete day: the run at 06:00 on the 2nd does the 1st.
daily_schedule = dg.build_schedule_from_partitioned_job(daily_job, hour_of_day=SCHEDULE_HOUR, minute_of_hour=0)
