"""Sensors that post an alert for each failed run and each failed check to a Slack-compatible webhook.

Both read the instance's run status changes (RUN_FAILURE; or every end of a run, for its check results) after a
cursor, the storage id of the last run fully alerted. The cursor also keeps the alerts already posted for the
run in hand, so a post that fails (receiver down, 5xx, timeout) is retried on the next tick and one that
succeeded is never posted again. Runs that ended before a sensor's first tick are not alerted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import dagster as dg

from newsletter_pipeline import alerts

RUN_ENDS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
# A tick must end within the sensor's time limit (60 s): at most this many posts, none started after this many
# seconds, and none after the first that fails.
MAX_POSTS_PER_TICK = 20
TICK_SECONDS = 30
FETCH_LIMIT = 100
# A message the receiver refuses as malformed (400, 413, 415, 422) on this many ticks is logged and dropped.
REFUSALS_BEFORE_DROPPING = 3

Alert = tuple[str, dict]  # dedupe key, payload


def _run_ends(instance: dg.DagsterInstance, event_types, after: int) -> list[dg.EventLogRecord]:
    """Run status changes of these types after storage id `after`, oldest first."""
    records = []
    for event_type in event_types:
        records += instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=FETCH_LIMIT,
            ascending=True,
        ).records
    return sorted(records, key=lambda r: r.storage_id)[:FETCH_LIMIT]


def _latest_id(instance: dg.DagsterInstance, event_types) -> int:
    ids = [r.storage_id for t in event_types for r in instance.fetch_run_status_changes(t, limit=1).records]
    return max(ids, default=-1)


def _ours(context: dg.SensorEvaluationContext, run: dg.DagsterRun) -> bool:
    """A run of this code location; runs launched without one (the CLI, tests) count too."""
    origin = run.remote_job_origin
    if origin is None or context.code_location_origin is None:
        return True
    repository = origin.repository_origin
    return (
        repository.code_location_origin.location_name == context.code_location_origin.location_name
        and repository.repository_name == context.repository_name
    )


def _job(run: dg.DagsterRun) -> str:
    # Materializations started from the asset graph run in Dagster's hidden asset jobs.
    return "asset materialization" if run.job_name.startswith("__") else run.job_name


def _day(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    if "dagster/asset_partition_range_start" in tags:
        return f"{tags['dagster/asset_partition_range_start']}...{tags.get('dagster/asset_partition_range_end', '')}"
    return None


def _error_summary(error) -> str:
    """The innermost cause of a serialized error, which is the user's exception rather than Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip().removeprefix("dagster._core.errors.")


def run_failure_alerts(
    instance: dg.DagsterInstance, run: dg.DagsterRun, record: dg.EventLogRecord, ui_url: str
) -> list[Alert]:
    """One alert for a failed run, naming each failed step and its error."""
    steps = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    failures = [
        f"step {r.event_log_entry.step_key}: "
        f"{_error_summary(r.event_log_entry.dagster_event.event_specific_data.error)}"
        for r in steps
    ]
    run_error = getattr(record.event_log_entry.dagster_event.event_specific_data, "error", None)
    if not failures and run_error is not None:  # failed outside any step, e.g. a resource or the run worker
        failures = [_error_summary(run_error)]
    return [(run.run_id, alerts.run_failure_message(ui_url, run.run_id, _job(run), _day(run), failures))]


def check_failure_alerts(
    instance: dg.DagsterInstance, run: dg.DagsterRun, record: dg.EventLogRecord, ui_url: str
) -> list[Alert]:
    """One alert per failed check evaluation of the run (ERROR and WARN alike), per day."""
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    # A range run records each day's result and also one for the whole range: the days say it more precisely.
    per_day = {e.asset_check_key for e in evaluations if e.partition is not None}
    found = []
    for e in evaluations:
        if e.passed or (e.partition is None and e.asset_check_key in per_day):
            continue
        asset = e.asset_key.to_user_string()
        day = e.partition or _day(run)
        figures = {
            k: v.value
            for k, v in e.metadata.items()
            if k != "day" and isinstance(v.value, (int, float, str)) and len(str(v.value)) < 80
        }
        payload = alerts.check_failure_message(
            ui_url, run.run_id, _job(run), day, asset, e.check_name, e.severity.value, e.description, figures
        )
        found.append((json.dumps([run.run_id, f"{asset}:{e.check_name}", e.partition]), payload))
    return found


def _evaluate(
    context: dg.SensorEvaluationContext, event_types, find: Callable[..., list[Alert]]
) -> dg.SensorResult | dg.SkipReason:
    """Post the alerts of the runs that ended after the cursor, in order; the cursor moves only past what was posted."""
    try:
        settings = alerts.AlertSettings.from_env()
    except ValueError as error:
        return dg.SkipReason(f"alerts are not sent: {error}")
    if not settings.webhook_url:
        return dg.SkipReason(
            f"{alerts.WEBHOOK_VAR} is not set: no alerts are sent; set it to a Slack incoming-webhook URL "
            "(docs/alerts.md)"
        )
    if context.cursor is None:
        start = _latest_id(context.instance, event_types)
        return dg.SensorResult(
            cursor=json.dumps({"after": start, "sent": []}),
            skip_reason=f"first tick: alerting on runs that end after event {start}",
        )
    state = json.loads(context.cursor)
    after, sent, refusals = state["after"], set(state["sent"]), state.get("refused", {})
    posted, problem, started = 0, None, time.monotonic()
    for record in _run_ends(context.instance, event_types, after):
        run = context.instance.get_run_by_id(record.event_log_entry.run_id)
        try:
            found = (
                find(context.instance, run, record, settings.ui_url) if run is not None and _ours(context, run) else []
            )
        except Exception as error:  # end the tick with its cursor saved, so what was posted is not posted again
            problem = (
                f"reading the failures of run {run.run_id} failed, retried on the next tick: "
                f"{type(error).__name__}: {error}"
            )
            context.log.error(problem)
            break
        for key, payload in found:
            if key in sent:
                continue
            left = TICK_SECONDS - (time.monotonic() - started)
            if posted == MAX_POSTS_PER_TICK or left < 1:
                problem = "more alerts than one tick posts: the rest follow on the next tick"
                break
            try:
                # Never past the tick's budget: a tick that overruns Dagster's limit loses its cursor and posts again.
                alerts.post(settings.webhook_url, payload, min(settings.timeout_seconds, left))
            except alerts.AlertDeliveryError as error:
                if error.rejects_message:
                    refusals[key] = refusals.get(key, 0) + 1
                if refusals.get(key, 0) >= REFUSALS_BEFORE_DROPPING:
                    # The receiver keeps refusing this one message (a payload it cannot take): log it, and let the
                    # alerts behind it through instead of holding them all back.
                    context.log.error(
                        f"an alert for run {run.run_id} was refused {refusals[key]} times ({error}); dropped: "
                        f"{payload['text']}"
                    )
                    sent.add(key)
                    refusals.pop(key)
                    continue
                problem = f"an alert for run {run.run_id} was not delivered, retried on the next tick: {error}"
                context.log.error(problem)
                break
            refusals.pop(key, None)
            sent.add(key)
            posted += 1
        if problem:
            break
        # Every alert of this run is out: past its event, the run is never read again.
        after, sent, refusals = record.storage_id, set(), {}
    cursor = json.dumps({"after": after, "sent": sorted(sent), **({"refused": refusals} if refusals else {})})
    # No run is requested, so the tick always reads as skipped: the reason says what it did.
    done = f"posted {posted} alert{'s' if posted != 1 else ''}" if posted else "no new failures"
    return dg.SensorResult(cursor=cursor, skip_reason=f"{done}; {problem}" if problem and posted else problem or done)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert_sensor(context: dg.SensorEvaluationContext):
    """Post an alert for every failed run of this code location: its job, day, failed steps and a link."""
    return _evaluate(context, (dg.DagsterEventType.RUN_FAILURE,), run_failure_alerts)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext):
    """Post an alert for every failed asset check (ERROR or WARN) of each run that ended: check, asset, day, figures, a
    link."""
    return _evaluate(context, RUN_ENDS, check_failure_alerts)


ALERT_SENSORS = [run_failure_alert_sensor, check_failure_alert_sensor]
