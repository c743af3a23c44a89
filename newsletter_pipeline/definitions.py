"""All Dagster definitions, built in one place."""

import dagster as dg

from newsletter_pipeline.defs.config_checks import load_settings

# Every setting is checked before a module reads one (the start date, the schedule's hour): one ConfigError names them
# all.
load_settings()

from newsletter_pipeline.defs.alert_sensors import check_failure_alert_sensor, run_failure_alert_sensor
from newsletter_pipeline.defs.assets import ASSETS
from newsletter_pipeline.defs.pools import in_process_pool_guard_executor
from newsletter_pipeline.defs.resources import resources_from_env
from newsletter_pipeline.defs.schedules import daily_job, daily_schedule
from newsletter_pipeline.defs.sensors import landing_sensor, stories_follow_sensor

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[daily_job],
    schedules=[daily_schedule],
    sensors=[landing_sensor, run_failure_alert_sensor, check_failure_alert_sensor, stories_follow_sensor],
    resources=resources_from_env(),
    # One process for the whole run: the model loads once instead of once per step. The pool guard frees the `gpu` and
    # `sheets` slots of a run killed mid-step and never lets a step wait on a pool silently (defs/pools.py).
    executor=in_process_pool_guard_executor,
)
