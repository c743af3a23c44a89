"""A sensor on the landing locations: a file that is new or changed requests runs for the days it holds."""

import hashlib
import json

import dagster as dg

from newsletter_pipeline.defs.partitions import daily_partitions
from newsletter_pipeline.defs.resources import LandingFolder
from newsletter_pipeline.defs.schedules import daily_job
from newsletter_pipeline.stages import parse


def _days_in(file: parse.LandingFile, column_map: dict[str, str]) -> list[str]:
    """The days a file's records belong to, quarantined records included (their day must re-run too)."""
    parsed = parse.parse_file(file, column_map)
    return sorted(set(parsed.items["day"]) | set(parsed.rejects["day"].dropna()))


@dg.sensor(job=daily_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingFolder) -> dg.SensorResult:
    """Re-materialize the days whose landing files changed, so late items reach their day."""
    # The cursor remembers each file's content hash and days: a removed file re-runs its days too.
    seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, dict] = {}
    days: set[str] = set()
    for file in landing.files():
        digest = hashlib.sha256(file.load()).hexdigest()
        if seen.get(file.name, {}).get("sha256") == digest:
            current[file.name] = seen[file.name]
            continue
        current[file.name] = {"sha256": digest, "days": _days_in(file, landing.column_map)}
        days |= set(current[file.name]["days"]) | set(seen.get(file.name, {}).get("days", []))
    for name in set(seen) - set(current):
        days |= set(seen[name]["days"])
    valid = set(daily_partitions.get_partition_keys())  # up to yesterday: today's partition is not complete
    # A run key per day and landing state: the same change never requests the same day twice.
    state = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:12]
    requests = [dg.RunRequest(partition_key=day, run_key=f"{day}:{state}") for day in sorted(days & valid)]
    if days - valid:
        context.log.info(f"not yet a partition (today or later, or outside the partitions): {', '.join(sorted(days - valid))}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(current, sort_keys=True))
