"""Alert sensors against a real HTTP receiver on 127.0.0.1, for real failed runs and failed checks on a SQLite instance."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from newsletter_pipeline import alerts
from newsletter_pipeline.config import ConfigError
from newsletter_pipeline.defs.alert_sensors import check_failure_alert_sensor, run_failure_alert_sensor
from newsletter_pipeline.defs.params import QualityThresholds
from newsletter_pipeline.defs.resources import ClusteringResource
from newsletter_pipeline.defs.schedules import daily_job
from newsletter_pipeline_tests.conftest import ASSETS

SECRET = "XOXB-s3cr3t-T0KEN"
UI = "http://dagster.example:3000"
DAY = "2026-11-17"


class Receiver:
    """A webhook on 127.0.0.1 that records every body it is sent and answers with the queued statuses (then 200)."""

    def __init__(self):
        self.received: list[tuple[int, dict]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((status, body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        # A Slack webhook's path is its credential.
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/{SECRET}"

    @property
    def delivered(self) -> list[dict]:
        return [body for status, body in self.received if status == 200]


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    monkeypatch.setenv(alerts.WEBHOOK_VAR, server.url)
    monkeypatch.setenv(alerts.UI_VAR, UI)
    monkeypatch.setenv(alerts.TIMEOUT_VAR, "1")
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def instance(tmp_path):
    """A persistent instance (SQLite, run-sharded event log) in a temporary DAGSTER_HOME."""
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def tick(sensor, instance, cursor):
    """Evaluate the sensor once; returns its result and the cursor it leaves."""
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = sensor(context)
    return result, result.cursor if isinstance(result, dg.SensorResult) else cursor


def started(sensor, instance):
    """The cursor after a sensor's first tick, which starts after the runs that ended before it."""
    result, cursor = tick(sensor, instance, None)
    assert "first tick" in result.skip_reason.skip_message
    return cursor


def run_job(workspace, day=DAY, raw_items_only=True, **kwargs):
    """daily_newsletter_job for real on the workspace's resources, as the schedule launches it."""
    job = dg.Definitions(assets=ASSETS, jobs=[daily_job], resources=workspace.resources()).resolve_job_def(
        daily_job.name
    )
    selection = [dg.AssetKey("raw_items")] if raw_items_only else None
    return job.execute_in_process(raise_on_error=False, asset_selection=selection, **kwargs)


def break_store(workspace):
    """Outputs under a path that is a file: raw_items fails writing its first table."""
    (workspace.root / "blocker").write_text("not a folder")
    workspace.outputs = workspace.root / "blocker" / "outputs"


def land_bad_records(workspace):
    """3 good items and 2 without a headline on DAY: 40% quarantined, over the 5% of quarantine_share (WARN)."""
    rows = [
        {"headline": f"Rate decision, part {i}", "link": f"https://x.test/{i}", "date": DAY, "source": "Wire"}
        for i in range(3)
    ]
    rows += [{"link": f"https://x.test/bad{i}", "date": DAY, "source": "Wire"} for i in range(2)]
    (workspace.landing / "wire.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_messages_are_slack_shaped_and_escaped():
    message = alerts.run_failure_message(
        "http://ui:3000/", "abc", "daily_newsletter_job", DAY, ["step raw_items: ValueError: a < b & c"]
    )
    assert set(message) == {"text", "blocks"}
    assert message["text"].splitlines() == [
        "Run failed: daily_newsletter_job",
        f"Day: {DAY}",
        "Failed: step raw_items: ValueError: a &lt; b &amp; c",
        "Run: http://ui:3000/runs/abc",
    ]
    block = message["blocks"][0]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"].endswith("<http://ui:3000/runs/abc|Open the run in Dagster>")
    long = alerts.run_failure_message("http://ui", "r", "j", None, ["x" * 5000])
    assert "Day: none" in long["text"] and len(long["text"]) < 1000


def test_settings_name_what_to_fix_and_never_quote_the_webhook():
    with pytest.raises(ConfigError) as refused:
        alerts.AlertSettings.from_env(
            {
                alerts.WEBHOOK_VAR: f"hooks.slack.com/services/{SECRET}",
                alerts.UI_VAR: "localhost:3000",
                alerts.TIMEOUT_VAR: "soon",
            }
        )
    assert [p.split(" ")[0] for p in refused.value.problems] == [alerts.WEBHOOK_VAR, alerts.UI_VAR, alerts.TIMEOUT_VAR]
    assert SECRET not in str(refused.value)
    assert alerts.AlertSettings.from_env({}) == alerts.AlertSettings()
    settings = alerts.AlertSettings.from_env(
        {alerts.WEBHOOK_VAR: f"https://hooks.slack.com/services/{SECRET}", alerts.UI_VAR: "https://d.example/"}
    )
    assert settings.ui_url == "https://d.example" and SECRET not in repr(settings)


def test_without_a_webhook_the_sensors_skip_and_say_why(monkeypatch, instance):
    monkeypatch.delenv(alerts.WEBHOOK_VAR, raising=False)
    for sensor in (run_failure_alert_sensor, check_failure_alert_sensor):
        result, cursor = tick(sensor, instance, None)
        assert alerts.WEBHOOK_VAR in result.skip_message and cursor is None


def test_a_failed_run_is_alerted_once(receiver, instance, workspace):
    cursor = started(run_failure_alert_sensor, instance)
    assert run_job(
        workspace.add_sample(), partition_key="2026-11-16", instance=instance
    ).success  # a run that succeeds is no alert
    break_store(workspace)
    failed = run_job(workspace, partition_key=DAY, instance=instance)
    assert not failed.success

    result, cursor = tick(run_failure_alert_sensor, instance, cursor)
    assert [body["text"].splitlines() for body in receiver.delivered] == [
        [
            "Run failed: daily_newsletter_job",
            f"Day: {DAY}",
            f"Failed: step raw_items: NotADirectoryError: [Errno 20] Not a directory: '{workspace.outputs}/quarantine'",
            f"Run: {UI}/runs/{failed.run_id}",
        ]
    ]
    # Evaluated again, from its cursor: nothing new is sent.
    result, cursor = tick(run_failure_alert_sensor, instance, cursor)
    assert len(receiver.received) == 1 and result.skip_reason.skip_message == "no new failures"


def test_failed_checks_are_alerted_once_per_check_and_day(receiver, instance, workspace):
    cursor = started(check_failure_alert_sensor, instance)
    land_bad_records(workspace)
    run = run_job(workspace, partition_key=DAY, instance=instance)
    assert run.success  # a WARN check does not fail the run

    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    (message,) = receiver.delivered
    assert message["text"].splitlines() == [
        "Check failed: raw_items quarantine_share (WARN)",
        f"Asset: raw_items  Day: {DAY}  Severity: WARN  Job: daily_newsletter_job",
        f"{DAY}: 2 of 5 records quarantined (40.0%; limit 5%)",
        "Figures: limit=0.05, quarantined=2, records=5, share=0.4",
        f"Run: {UI}/runs/{run.run_id}",
    ]
    assert tick(check_failure_alert_sensor, instance, cursor)[0].skip_reason.skip_message == "no new failures"

    # A range run: one alert per failed check and day (the 16th has no items: two raw_items checks warn),
    # none for the range's combined results.
    tags = {"dagster/asset_partition_range_start": "2026-11-16", "dagster/asset_partition_range_end": DAY}
    ranged = run_job(workspace, tags=tags, instance=instance)
    tick(check_failure_alert_sensor, instance, cursor)
    alerted = [body["text"].splitlines()[:2] for body in receiver.delivered[1:]]
    assert sorted(alerted) == sorted(
        [
            *(
                [
                    f"Check failed: raw_items {check} (WARN)",
                    "Asset: raw_items  Day: 2026-11-16  Severity: WARN  Job: daily_newsletter_job",
                ]
                for check in ("unique_item_id", "quarantine_share")
            ),
            [
                "Check failed: raw_items quarantine_share (WARN)",
                f"Asset: raw_items  Day: {DAY}  Severity: WARN  Job: daily_newsletter_job",
            ],
        ]
    )
    assert all(body["text"].endswith(f"/runs/{ranged.run_id}") for body in receiver.delivered[1:])


def test_a_post_that_fails_is_retried_and_delivered_once(receiver, instance, workspace, caplog, capsys):
    cursor = started(check_failure_alert_sensor, instance)
    land_bad_records(workspace)
    tags = {"dagster/asset_partition_range_start": "2026-11-16", "dagster/asset_partition_range_end": DAY}
    run_job(workspace, tags=tags, instance=instance)  # 3 failed checks in one run

    # The second post gets a 500: the first is kept as sent, the tick stops there.
    receiver.statuses = [200, 500]
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    assert [status for status, _ in receiver.received] == [200, 500]
    assert "HTTP 500" in result.skip_reason.skip_message
    # The receiver answers too slowly: bounded by the timeout, and retried again.
    receiver.delay, receiver.statuses = 3.0, [200]
    start = time.monotonic()
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    assert time.monotonic() - start < 2.5 and "did not answer within 1 s" in result.skip_reason.skip_message
    receiver.delay = 0.0
    time.sleep(3.0)  # the slow answer lands (and is recorded) before the next tick
    # The receiver is back: the two alerts not yet delivered go out, the first is not repeated.
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    texts = [body["text"] for status, body in receiver.received if status == 200]
    refused = [body["text"] for status, body in receiver.received if status != 200]
    assert len(texts) == 3 + 1  # three alerts, and the slow one that the sensor gave up on
    assert len(set(texts)) == 3 and refused[0] in texts
    assert json.loads(cursor)["sent"] == []

    # Down for good: reported without the URL, and the cursor stays.
    receiver.server.shutdown()
    receiver.server.server_close()
    run_job(workspace, partition_key=DAY, instance=instance)
    result, after = tick(check_failure_alert_sensor, instance, cursor)
    assert (
        "unreachable" in result.skip_reason.skip_message and json.loads(after)["after"] == json.loads(cursor)["after"]
    )
    shown = caplog.text + "".join(capsys.readouterr()) + result.skip_reason.skip_message + after
    assert SECRET not in shown and "/services/" not in shown


@pytest.mark.slow
def test_an_error_check_alerts_its_check_and_its_run(receiver, instance, workspace):
    """A blocking ERROR check stops the day: one check alert (which figure) and one run alert (which step), each once."""
    runs, checks = started(run_failure_alert_sensor, instance), started(check_failure_alert_sensor, instance)
    workspace.add_sample()
    workspace.clustering = ClusteringResource(quality=QualityThresholds(min_clusters=100))
    run = run_job(workspace, raw_items_only=False, partition_key=DAY, instance=instance)
    assert not run.success
    for _ in range(2):
        runs = tick(run_failure_alert_sensor, instance, runs)[1]
        checks = tick(check_failure_alert_sensor, instance, checks)[1]
    heads = sorted(body["text"].splitlines()[0] for body in receiver.delivered)
    assert heads == ["Check failed: clusters cluster_count (ERROR)", "Run failed: daily_newsletter_job"]
    run_alert = next(body["text"] for body in receiver.delivered if body["text"].startswith("Run failed"))
    assert (
        "step clusters: DagsterAssetCheckFailedError: 1 blocking asset check failed with ERROR severity: clusters: cluster_count"
        in run_alert
    )
    assert len(receiver.received) == 2


def test_a_message_the_receiver_keeps_refusing_is_dropped_and_the_rest_go_out(
    receiver, instance, workspace, caplog, capsys
):
    cursor = started(check_failure_alert_sensor, instance)
    land_bad_records(workspace)
    tags = {"dagster/asset_partition_range_start": "2026-11-16", "dagster/asset_partition_range_end": DAY}
    run_job(workspace, tags=tags, instance=instance)  # 3 failed checks in one run
    # The first message is refused as malformed on every try; a refused URL (403) or a rate limit (429) in between is
    # not counted against it.
    receiver.statuses = [400, 429, 403, 400, 400]
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    for _ in range(3):
        result, cursor = tick(check_failure_alert_sensor, instance, cursor)
        assert receiver.delivered == [] and "HTTP 4" in result.skip_reason.skip_message
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    refused = receiver.received[0][1]["text"]
    assert [status for status, _ in receiver.received] == [400, 429, 403, 400, 400, 200, 200]
    assert len(receiver.delivered) == 2 and refused not in [body["text"] for body in receiver.delivered]
    logged = caplog.text + "".join(capsys.readouterr())
    assert "refused 3 times" in logged and "dropped" in logged and SECRET not in logged
    assert json.loads(cursor) == {"after": json.loads(cursor)["after"], "sent": []}
    result, cursor = tick(check_failure_alert_sensor, instance, cursor)
    assert len(receiver.received) == 7 and result.skip_reason.skip_message == "no new failures"
