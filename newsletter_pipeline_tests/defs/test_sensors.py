"""The landing sensor requests runs for exactly the days whose files changed."""

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg

from newsletter_pipeline.defs.resources import LandingFolder
from newsletter_pipeline.defs.sensors import landing_sensor
from newsletter_pipeline_tests.conftest import SAMPLE, SAMPLE_DAYS


def tick(landing, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(cursor=cursor, resources={"landing": LandingFolder(path=str(landing))}) as context:
        return landing_sensor(context)


def test_new_changed_and_removed_files_request_their_days(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "landing")
    first = tick(tmp_path / "landing")
    assert sorted(r.partition_key for r in first.run_requests) == SAMPLE_DAYS
    # Nothing changed: nothing requested.
    assert tick(tmp_path / "landing", first.cursor).run_requests == []
    # A late item for the 17th lands in a new file: only the 17th re-runs, under a new run key.
    late = {
        "headline": "Late correction on the rate decision",
        "link": "https://x.test/late",
        "date": "2026-11-17",
        "source": "Late",
    }
    (tmp_path / "landing" / "late.jsonl").write_text(json.dumps(late) + "\n")
    second = tick(tmp_path / "landing", first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-11-17"]
    assert second.run_requests[0].run_key not in {r.run_key for r in first.run_requests}
    # The file is removed again: its day re-runs without it.
    (tmp_path / "landing" / "late.jsonl").unlink()
    assert [r.partition_key for r in tick(tmp_path / "landing", second.cursor).run_requests] == ["2026-11-17"]


def test_days_that_are_not_partitions_yet_are_not_requested(tmp_path):
    (tmp_path / "future.jsonl").write_text(
        json.dumps({"headline": "Tomorrow's news today", "date": "2999-01-01"}) + "\n"
    )
    assert tick(tmp_path).run_requests == []


def test_a_day_that_is_not_a_partition_yet_is_requested_once_it_is(tmp_path):
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    (tmp_path / "early.jsonl").write_text(json.dumps({"headline": "Sent before the day is over", "date": today}) + "\n")
    first = tick(tmp_path)
    assert first.run_requests == [] and json.loads(first.cursor)["pending"] == [today]
    # Nothing changes in the landing folder; the day stays pending until it is a partition.
    assert json.loads(tick(tmp_path, first.cursor).cursor)["pending"] == [today]


def test_a_tick_reads_only_the_files_whose_size_or_time_changed(tmp_path, monkeypatch):
    shutil.copytree(SAMPLE, tmp_path / "landing")
    first = tick(tmp_path / "landing")
    reads = []
    real_read = Path.read_bytes

    def counted(path: Path) -> bytes:
        reads.append(path.name)
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    # Nothing changed: the listing's sizes and times say so, and no file is read.
    unchanged = tick(tmp_path / "landing", first.cursor)
    assert unchanged.run_requests == [] and reads == []
    # A file touched, not changed: read once to see that its content is the same; nothing requested.
    touched = sorted((tmp_path / "landing").iterdir())[0]
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = tick(tmp_path / "landing", unchanged.cursor)
    assert again.run_requests == [] and reads == [touched.name]
    reads.clear()
    assert tick(tmp_path / "landing", again.cursor).run_requests == [] and reads == []  # its new time is kept
