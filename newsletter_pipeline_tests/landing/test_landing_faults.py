"""Issue 12's faults of the landing side, each reproduced the way a user meets it: files in the landing folder, a Dagster
run, the outputs read back. Every run keeps the balance: records = items + duplicates + quarantined."""

import csv
import gzip
import io
import json
import logging
import os

import dagster as dg
import pytest

from newsletter_pipeline.config import split_locations
from newsletter_pipeline.defs.assets.items import raw_items
from newsletter_pipeline.defs.resources import LandingFolder
from newsletter_pipeline.defs.sensors import landing_sensor
from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import LandingError, local_listing
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import SAMPLE

DAY = "2026-11-16"


def story(n: int, **fields) -> dict:
    """A distinct, well-formed record of DAY."""
    return {
        "headline": f"Council approves budget line {n} for the harbour",
        "link": f"https://news.test/{n}",
        "date": f"{DAY}T0{n % 10}:00:00Z",
        "source": "Harbour Post",
        **fields,
    }


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def materialize_items(workspace, day: str = DAY, **kwargs):
    """raw_items alone, as a run of the day does it first."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [raw_items], partition_key=day, resources=workspace.resources(), instance=instance, **kwargs
    )
    result.warnings = [
        entry.user_message for entry in instance.all_logs(result.run_id) if entry.level == logging.WARNING
    ]
    return result


def figures(result) -> dict:
    metadata = next(m.metadata for m in result.asset_materializations_for_node("raw_items"))
    return {k: v.value for k, v in metadata.items()}


def balanced(result) -> dict:
    """The run's figures, after checking that every record read is an item, a duplicate or quarantined."""
    seen = figures(result)
    assert seen["records"] == seen["items"] + seen["duplicates"] + seen["quarantined"], seen
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["records_balance"].passed, checks["records_balance"].description
    return seen


# --- 1. a missing landing location never wipes a published day -------------------------------------------------------


def test_a_missing_landing_location_fails_the_run_and_keeps_the_published_day(workspace):
    assert workspace.add_sample().materialize(DAY).success
    published = export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)]
    stored = workspace.store.read("raw_items", DAY)

    # The share is unmounted (the folder is gone): the run fails naming it, before anything is written.
    workspace.landing.rename(workspace.root / "landing-unmounted")
    result = workspace.materialize(DAY, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert f"the landing location {workspace.landing} does not exist" in message
    assert workspace.store.read("raw_items", DAY).equals(stored)
    assert export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)] == published

    # The landing sensor fails its tick the same way, and so requests no run (listed as empty, it would request every day).
    with dg.build_sensor_context(resources={"landing": LandingFolder(path=str(workspace.landing))}) as context:
        with pytest.raises(LandingError, match="does not exist"):
            landing_sensor(context)


def test_a_day_whose_files_are_gone_is_held_until_the_run_allows_it(workspace):
    workspace.add_sample()
    assert workspace.materialize(DAY).success
    published = export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)]
    assert len(published) > 1

    # Every file of the 16th is removed, the folder stays: the day would drop to no items. It is held.
    for path in workspace.landing.iterdir():
        path.unlink()
    held = workspace.materialize(DAY, raise_on_error=False)
    checks = {e.check_name: e for e in held.get_asset_check_evaluations()}
    assert not checks["day_not_emptied"].passed and "allow_emptied_days" in checks["day_not_emptied"].description
    assert figures(held)["held"] is True
    assert not held.asset_materializations_for_node("sheet_export")  # the blocking check stopped the export
    assert len(workspace.store.read("raw_items", DAY)) == len(published) - 1  # the stored day is as it was
    assert export.read_workbook(workspace.workbook)[export.tab_name("items", DAY)] == published

    # Removing them was meant: the run says so, and the day is emptied in the outputs and the sheet.
    allowed = workspace.materialize(DAY, run_config={"ops": {"raw_items": {"config": {"allow_emptied_days": True}}}})
    assert allowed.success and figures(allowed)["items"] == 0
    assert workspace.store.read("raw_items", DAY).empty
    rows = export.read_workbook(workspace.workbook).get(export.tab_name("items", DAY), [[]])
    assert not [row for row in rows[1:] if DAY in row]


def test_a_path_with_a_comma_is_written_as_a_json_array(tmp_path):
    folder = tmp_path / "news, archive"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(story(1)))
    # Split at the comma, it names two folders that do not exist: the run fails naming the first one.
    with pytest.raises(LandingError, match=f"{tmp_path / 'news'} does not exist"):
        LandingFolder(path=str(folder)).listing()
    landing = LandingFolder(path=json.dumps([str(folder)]))
    assert [f.name for f in landing.files()] == [str(folder / "a.jsonl")]
    assert split_locations(f'["{folder}", "s3://bucket/in"]') == [str(folder), "s3://bucket/in"]


# --- 2. links never read outside the landing folder --------------------------------------------------------------------


def test_links_out_of_the_landing_folder_are_refused_and_reported(workspace, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(jsonl(story(90, headline="Secret record from outside the landing folder")))
    (workspace.landing / "day.jsonl").write_bytes(jsonl(story(1), story(2)))
    (workspace.landing / "to_secret.jsonl").symlink_to(outside / "secret.jsonl")
    (workspace.landing / "to_passwd.csv").symlink_to("/etc/passwd")
    (workspace.landing / "dangling.jsonl").symlink_to(workspace.landing / "gone.jsonl")
    (workspace.landing / "loop.jsonl").symlink_to(workspace.landing / "loop.jsonl")
    (workspace.landing / "inside.jsonl").symlink_to(workspace.landing / "sub" / "real.jsonl")
    (workspace.landing / "sub").mkdir()
    (workspace.landing / "sub" / "real.jsonl").write_bytes(jsonl(story(3)))

    result = materialize_items(workspace)
    seen = balanced(result)
    items = workspace.store.read("raw_items", DAY)
    # The link inside the folder reads its target (once: the copy through the link is a duplicate), nothing outside is read.
    assert sorted(items["headline"]) == sorted(story(n)["headline"] for n in (1, 2, 3)) and seen["duplicates"] == 1
    refused = workspace.store.read("quarantine", "unassigned").set_index("file")["reason"]
    assert (
        refused[str(workspace.landing / "to_secret.jsonl")]
        == f"not read: symbolic link to {outside / 'secret.jsonl'}, outside the landing location {workspace.landing}"
    )
    assert "outside the landing location" in refused[str(workspace.landing / "to_passwd.csv")]
    assert refused[str(workspace.landing / "dangling.jsonl")].startswith("not read: dangling symbolic link")
    assert refused[str(workspace.landing / "loop.jsonl")].startswith("not read: symbolic link that cannot be resolved")
    for link in ("to_secret.jsonl", "to_passwd.csv", "dangling.jsonl", "loop.jsonl"):
        assert any(str(workspace.landing / link) in warning for warning in result.warnings), link


# --- 3. a placeholder id is no id ---------------------------------------------------------------------------------------


def test_placeholder_ids_do_not_collapse_different_stories(workspace):
    # NaN as Python's json.dumps writes it, white space, and the placeholders CSV exports write.
    (workspace.landing / "nan_ids.jsonl").write_bytes(
        jsonl(*(story(n, id=float("nan")) for n in range(6)), *(story(n, id="   ") for n in range(6, 12)))
    )
    rows = io.StringIO()
    writer = csv.DictWriter(rows, fieldnames=["id", "headline", "link", "date", "source"])
    writer.writeheader()
    for n, placeholder in zip(range(12, 24), ["NaN", "null", "None", "nan", "NULL", ""] * 2, strict=True):
        writer.writerow(story(n, id=placeholder))
    (workspace.landing / "placeholders.csv").write_text(rows.getvalue())

    seen = balanced(materialize_items(workspace))
    assert seen["items"] == 24 and seen["duplicates"] == 0
    assert workspace.store.read("raw_items", DAY)["source_id"].isna().all()


# --- 6. a date names a full day, or the record is quarantined -----------------------------------------------------------

AMBIGUOUS = ["07:15", "Nov 2026", "2026", "2026-11", "05/11/2026", "16/11/2026", "now", "today"]


def test_partial_and_ambiguous_dates_are_quarantined_with_the_accepted_forms(workspace):
    good = [
        "2026-11-16",
        "2026-11-16 07:15:00",
        "2026-11-16T07:15:00+01:00",
        "2026-11-16T06:15:00.123Z",
        "Mon, 16 Nov 2026 07:15:00 +0000",
        "16 Nov 2026 07:15:00 GMT",
    ]
    records = [story(n, date=date) for n, date in enumerate(good)] + [
        story(50 + n, date=date) for n, date in enumerate(AMBIGUOUS)
    ]
    (workspace.landing / "dates.jsonl").write_bytes(jsonl(*records))

    result = materialize_items(workspace)
    assert balanced(result)["items"] == len(good)
    refused = workspace.store.read("quarantine", "unassigned")
    assert len(refused) == len(AMBIGUOUS)
    for date, reason in zip(AMBIGUOUS, refused.sort_values("position")["reason"], strict=True):
        assert reason.startswith(f"unparseable date {date!r}: a date must name a full day as ISO 8601"), reason
        assert "NEWSLETTER_DATE_FORMAT" in reason


def test_a_declared_date_format_reads_day_first_dates(workspace):
    (workspace.landing / "dates.jsonl").write_bytes(
        jsonl(
            story(1, date="16/11/2026"),
            story(2, date="16/11/2026 07:15"),
            story(3, date="2026-11-16"),
            story(4, date="11/16/2026"),
        )
    )
    workspace.resources = lambda base=workspace.resources: {
        **base(),
        "landing": LandingFolder(path=str(workspace.landing), date_format="%d/%m/%Y"),
    }
    seen = balanced(materialize_items(workspace))
    assert seen["items"] == 2  # 16/11/2026 and ISO; the time does not fit the format, and 11/16 is no day in it
    reasons = workspace.store.read("quarantine", "unassigned")["reason"]
    assert reasons.str.contains("or %d/%m/%Y \\(NEWSLETTER_DATE_FORMAT\\)").all() and len(reasons) == 2


# --- 7. every file that is not read is reported; .gz exports are read -------------------------------------------------


def test_files_not_read_are_reported_and_gzip_exports_are_read(workspace):
    (workspace.landing / "day.jsonl").write_bytes(jsonl(story(1)))
    (workspace.landing / "export.jsonl.gz").write_bytes(gzip.compress(jsonl(story(2), story(3))))
    (workspace.landing / "rows.csv.gz").write_bytes(
        gzip.compress(b"headline,link,date\nTram line opens,https://news.test/t,2026-11-16\n")
    )
    (workspace.landing / "notes.txt").write_text("remember to ask about the ferry\n")
    (workspace.landing / "archive.zip").write_bytes(b"PK\x03\x04")
    (workspace.landing / "broken.json.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    (workspace.landing / "cut.csv.gz").write_bytes(gzip.compress(b"headline,link,date\n" * 50)[:40])
    os.mkfifo(workspace.landing / "pipe.jsonl")

    result = materialize_items(workspace)
    seen = balanced(result)
    assert sorted(workspace.store.read("raw_items", DAY)["headline"]) == sorted(
        [story(1)["headline"], story(2)["headline"], story(3)["headline"], "Tram line opens"]
    )
    assert seen["skipped_entries"] == 3
    for name in ("notes.txt", "archive.zip", "pipe.jsonl"):
        assert str(workspace.landing / name) in seen["skipped"]
        assert any(str(workspace.landing / name) in warning for warning in result.warnings)
    broken = workspace.store.read("quarantine", "unassigned").set_index("file")["reason"]
    assert broken[str(workspace.landing / "broken.json.gz")].startswith(
        "unreadable file: not a readable gzip file (Error -3"
    )
    assert (
        broken[str(workspace.landing / "cut.csv.gz")]
        == "unreadable file: gzip file broke off before its end: deliver it again"
    )


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    # Root reads every folder, so the refusal is simulated where the listing asks the operating system.
    (tmp_path / "day.jsonl").write_bytes(jsonl(story(1)))
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "hidden.jsonl").write_bytes(jsonl(story(2)))
    scandir = os.scandir

    def refusing(path):
        if str(path) == str(tmp_path / "private"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    listing = local_listing(tmp_path)
    assert [f.name for f in listing.files] == [str(tmp_path / "day.jsonl")]
    assert [(s.name, s.reason) for s in listing.skipped] == [
        (str(tmp_path / "private"), "folder cannot be listed (Permission denied): its files were not read")
    ]


# --- 8, 9 and the smaller ones: byte-order marks, blank lines, UTF-16, `;`, invisible headlines ------------------------


def test_encodings_blank_lines_and_delimiters_lose_nothing_and_invent_nothing(workspace):
    (workspace.landing / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(story(1), story(2)))
    (workspace.landing / "blank_lines.csv").write_text(
        "headline,link,date\n\nFerry timetable changes,https://news.test/f,2026-11-16\n\n\n"
        "Library extends hours,https://news.test/l,2026-11-16\n\n"
    )
    (workspace.landing / "utf16.csv").write_bytes(
        "headline,link,date\nCafé owners protest rents,https://news.test/c,2026-11-16\n".encode("utf-16")
    )
    (workspace.landing / "semicolons.csv").write_text(
        "headline;link;date\nBridge closes for repairs;https://news.test/b;2026-11-16\n"
    )
    (workspace.landing / "invisible.jsonl").write_bytes(jsonl(story(5, headline="\u200b\u200c\u2060\ufeff"), story(6)))

    seen = balanced(materialize_items(workspace))
    headlines = set(workspace.store.read("raw_items", DAY)["headline"])
    assert headlines == {
        story(1)["headline"],
        story(2)["headline"],
        "Ferry timetable changes",
        "Library extends hours",
        "Café owners protest rents",
        "Bridge closes for repairs",
        story(6)["headline"],
    }
    assert seen["records"] == 8  # the blank lines are no records
    quarantined = workspace.store.read("quarantine", DAY)
    assert quarantined[["position", "reason"]].values.tolist() == [
        [1, "empty headline: it holds only invisible characters (zero-width spaces and the like)"]
    ]


def test_utf16_without_a_byte_order_mark_says_what_to_do(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(json.dumps(story(1)).encode("utf-16-le"))
    rejects = parse.parse_landing(local_listing(tmp_path).files).rejects
    assert rejects["reason"].tolist() == [
        "unreadable file: looks like UTF-16 without a byte-order mark (every other byte is NUL): "
        "save the file as UTF-8, or as UTF-16 with a byte-order mark"
    ]


def test_the_sample_reads_as_before():
    """The stricter rules (dates, ids, links) leave every record of the bundled sample an item."""
    parsed = parse.parse_landing(local_listing(SAMPLE).files)
    assert parsed.balanced() and parsed.rejects.empty and len(parsed.items) == 188
