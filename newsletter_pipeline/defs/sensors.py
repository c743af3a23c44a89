"""The sensors of the flow: the landing locations (a file that is new or changed requests runs for the days it
holds), and the automation that carries a day's changed stories forward to the days after it."""

import hashlib
import json

import dagster as dg

from newsletter_pipeline.defs.partitions import daily_partitions, partition_window
from newsletter_pipeline.defs.resources import LandingFolder
from newsletter_pipeline.defs.schedules import daily_job
from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import LandingFile


def _days_in(file: LandingFile, landing: LandingFolder) -> list[str]:
    """The days a file's records belong to, quarantined records included (their day must re-run too)."""
    parsed = parse.parse_file(file, landing.column_map, landing.date_format)
    return sorted(set(parsed.items["day"]) | set(parsed.rejects["day"].dropna()))


@dg.sensor(job=daily_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingFolder) -> dg.SensorResult:
    """Re-materialize the days whose landing files changed, so late items reach their day."""
    # The cursor remembers each file's content hash, stamp (size and time, or ETag) and days (a removed file re-runs
    # its days too), and the days that changed before they were partitions (today's items), to request once they
    # are. A file whose stamp is unchanged is not read: a tick costs a listing, not a year of files.
    state = json.loads(context.cursor) if context.cursor else {}
    seen: dict[str, dict] = state.get("files", {})
    current: dict[str, dict] = {}
    days: set[str] = set(state.get("pending", []))
    # A location that is missing or cannot be listed fails the tick, which then requests nothing: listed as empty,
    # every file would count as removed and every day it has seen would re-run without its items.
    for file in landing.files():
        earlier = seen.get(file.name, {})
        if file.stamp is not None and earlier.get("stamp") == file.stamp:
            current[file.name] = earlier  # same size and time (or ETag): not read again, however many files
            continue
        try:
            digest = hashlib.sha256(file.load()).hexdigest()
        except OSError as error:  # gone between listing and reading, or unreadable: look again next tick
            context.log.warning(f"{file.name}: {error}")
            if file.name in seen:
                current[file.name] = seen[file.name]
            continue
        if earlier.get("sha256") == digest:  # touched, not changed: its days stand
            current[file.name] = {**earlier, "stamp": file.stamp}
            continue
        current[file.name] = {"sha256": digest, "stamp": file.stamp, "days": _days_in(file, landing)}
        days |= set(current[file.name]["days"]) | set(seen.get(file.name, {}).get("days", []))
    for name in set(seen) - set(current):
        days |= set(seen[name]["days"])
    valid = set(daily_partitions.get_partition_keys())  # up to yesterday: today's partition is not complete
    # Still to come: today and tomorrow (items sent early). Other days are no partition and never will be:
    # raw_items quarantines their items.
    first_day, tomorrow = partition_window()
    pending = sorted(day for day in days - valid if first_day <= day <= tomorrow)
    # A run key per day and landing state: the same change never requests the same day twice.
    digest = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:12]
    requests = [dg.RunRequest(partition_key=day, run_key=f"{day}:{digest}") for day in sorted(days & valid)]
    if pending:
        context.log.info(f"not yet a partition, requested once it is: {', '.join(pending)}")
    return dg.SensorResult(
        run_requests=requests, cursor=json.dumps({"files": current, "pending": pending}, sort_keys=True)
    )


# Evaluates the assets' automation conditions (defs/assets/common.py after_update_of): when a day's stories change
# (a late item, a re-run), the next day's stories and each day's sheet rows are redone, a day at a time. Runs with
# the daemon (`make daemon`), like the other sensors; on by default, since ids built on an outdated state would
# otherwise stay in the sheet.
stories_follow_sensor = dg.AutomationConditionSensorDefinition(
    "stories_follow_sensor",
    target=dg.AssetSelection.assets("stories", "sheet_export"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
