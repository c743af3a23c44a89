"""The landing index (issue 15, item 6): a run parses only the files that can hold its days, and gets exactly what
parsing every file gives for those days and for the records of no day."""

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from newsletter_pipeline.defs.assets.items import raw_items
from newsletter_pipeline.items import index, parse
from newsletter_pipeline.landing.listing import local_files
from newsletter_pipeline.storage import ParquetStore

EMAILS = Path(__file__).parents[1] / "landing" / "emails"
FIRST, LAST = "2026-01-01", "2026-01-31"  # the partitions of these tests
DAYS = [f"2026-01-{d:02d}" for d in range(1, 8)]


def record(day: str, n: int, hour: int = 8, **fields) -> dict:
    return {
        "headline": f"Story {n} of {day}",
        "link": f"https://news.test/{day}/{n}",
        "date": f"{day}T{hour:02d}:00:00Z",
        "source": "Harbour Post",
        **fields,
    }


def write(folder, name: str, *records) -> None:
    folder.mkdir(exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def landing(tmp_path):
    """Files whose items repeat each other across files and days, and records of no day."""
    folder = tmp_path / "landing"
    write(
        folder,
        "a.jsonl",
        record(DAYS[0], 1, link="https://news.test/shared"),  # its link comes back two days later (c.jsonl)
        record(DAYS[0], 2, id="W-7", source="Wire"),  # its id comes back in e.jsonl
        record(DAYS[0], 3),
        {"headline": "No date at all", "link": "https://news.test/undated"},  # no day
        {"headline": "Bad date", "date": "someday"},  # no day
        {"link": "https://news.test/no-headline", "date": f"{DAYS[0]}T09:00:00Z"},  # quarantined on its day
    )
    # A chain: b's first item repeats a's third by headline on the same day, so it owns no key; f's item has its link
    # and is kept only because of that.
    write(
        folder,
        "b.jsonl",
        record(DAYS[0], 3, hour=10, link="https://news.test/chain-link"),
        record(DAYS[1], 1),
        record(DAYS[1], 1, hour=9, link="https://news.test/same-day-headline"),  # same day, same headline
    )
    write(folder, "c.jsonl", record(DAYS[2], 1, link="https://www.NEWS.test/shared/?utm_source=x"), record(DAYS[2], 2))
    write(folder, "d.json", '{"broken": ')  # unreadable: one record of no day
    write(folder, "e.jsonl", record(DAYS[3], 1, id="W-7", source="Wire"), record(DAYS[3], 2))
    write(folder, "f.jsonl", record(DAYS[4], 1, link="https://news.test/chain-link"), record(DAYS[4], 2))
    write(
        folder,
        "g.jsonl",
        record(DAYS[5], 1),
        record("2025-12-30", 9),  # before the partitions: no day
        record("2026-03-01", 9),  # after them: no day
    )
    # A headline repeated in one file.
    write(folder, "h.jsonl", record(DAYS[6], 1), record(DAYS[6], 1, hour=11, link="https://news.test/other"))
    return folder


def assert_identical(mine: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Equal frames, down to the dtypes and the kind of each missing value (assert_frame_equal takes None for NaN)."""
    pd.testing.assert_frame_equal(mine, theirs, check_exact=True)

    def cells(frame: pd.DataFrame) -> list:
        return [[str(t) for t in frame.dtypes], [[repr(v) for v in row] for row in frame.itertuples(index=False)]]

    assert cells(mine) == cells(theirs)


def assert_same(reading: index.Reading, full: parse.Parsed, days) -> None:
    """The indexed result equals the full parse for the run's days and for the records of no day."""
    assert reading.parsed.records == full.records and reading.parsed.warnings == full.warnings
    assert reading.balanced == full.balanced()
    for day in days:
        mine, theirs = parse.items_for_day(reading.parsed, day), parse.items_for_day(full, day)
        for table in ("items", "rejects", "duplicates"):
            assert_identical(getattr(mine, table), getattr(theirs, table))
        assert mine.records == theirs.records
    assert_identical(*(p.rejects[p.rejects["day"].isna()].reset_index(drop=True) for p in (reading.parsed, full)))


def read(folder, store, days, **kwargs) -> index.Reading:
    return index.read_landing(local_files(folder), store, days, first_day=FIRST, last_day=LAST, **kwargs)


def check(folder, store, days) -> index.Reading:
    full = parse.parse_landing(local_files(folder), first_day=FIRST, last_day=LAST)
    reading = read(folder, store, days)
    assert_same(reading, full, days)
    return reading


@pytest.fixture
def parse_calls(monkeypatch) -> list[str]:
    """The names of the files parse_file reads, in order."""
    calls, original = [], parse.parse_file

    def counted(file, *args, **kwargs):
        calls.append(os.path.basename(file.name))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(parse, "parse_file", counted)
    return calls


def test_the_scenario_holds_what_it_should(tmp_path):
    full = parse.parse_landing(local_files(landing(tmp_path)), first_day=FIRST, last_day=LAST)
    reasons = dict(zip(full.duplicates["origin"].str.split("/").str[-1], full.duplicates["reason"]))
    assert reasons == {
        "b.jsonl:1": "same headline and source on the day",
        "b.jsonl:3": "same headline and source on the day",
        "c.jsonl:1": "same link",
        "e.jsonl:1": "same source id",
        "h.jsonl:2": "same headline and source on the day",
    }
    assert "f.jsonl:1" in set(full.items["origin"].str.split("/").str[-1])  # the chain's end is kept
    assert full.rejects["day"].isna().sum() == 5 and full.rejects["day"].notna().sum() == 1


@pytest.mark.parametrize("days", [[d] for d in DAYS] + [DAYS[2:5], DAYS, ["2026-01-20"]])
def test_a_run_equals_parsing_every_file(tmp_path, days, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    first = check(folder, store, days)  # no index yet: every file parsed, the index written
    assert first.rebuilt == "no landing index yet" and first.parsed_files == first.reindexed == 8
    parse_calls.clear()
    again = check(folder, store, days)  # from the index
    assert again.rebuilt is None and again.reindexed == 0
    assert again.parsed_files == len(parse_calls) - 8  # the full parse in check() reads all eight
    assert again.from_index == 8 - again.parsed_files


def test_only_the_files_a_day_needs_are_parsed(tmp_path, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    read(folder, store, [DAYS[0]])
    written = os.stat(tmp_path / "outputs" / "landing_index" / "files.parquet").st_mtime_ns

    def parsed_for(days) -> list[str]:
        parse_calls.clear()
        read(folder, store, days)
        return parse_calls

    always = ["g.jsonl"]  # it holds items dated outside the partitions
    assert parsed_for([DAYS[2]]) == ["a.jsonl", "c.jsonl", "g.jsonl"]  # c's first item repeats a's link
    # f's first item repeats b's first by link, which repeats a's third by headline.
    assert parsed_for([DAYS[4]]) == ["a.jsonl", "b.jsonl", "f.jsonl", "g.jsonl"]
    # Later items that repeat the first day's (in c and e) decide nothing for it.
    assert parsed_for([DAYS[0]]) == ["a.jsonl", "b.jsonl", "g.jsonl"]
    assert parsed_for([DAYS[6]]) == ["g.jsonl", "h.jsonl"]
    assert parsed_for(["2026-01-20"]) == always
    (folder / "g.jsonl").write_text(json.dumps(record(DAYS[5], 1)) + "\n", encoding="utf-8")
    assert parsed_for(["2026-01-20"]) == ["g.jsonl"]  # changed: indexed again
    assert parsed_for(["2026-01-20"]) == []  # nothing changed, no day held: no file read
    assert os.stat(tmp_path / "outputs" / "landing_index" / "files.parquet").st_mtime_ns != written


def test_stories_carried_from_day_to_day_do_not_chain_the_whole_history(tmp_path, parse_calls):
    """Each day repeats one story of the day before: every file shares a key with the next, but an item's duplicate
    decision needs only the items that share its own keys (and theirs), not the rest of their files."""
    folder, store = tmp_path / "landing", ParquetStore(str(tmp_path / "outputs"))
    for n, day in enumerate(DAYS):
        carried = [record(DAYS[n - 1], 1, hour=12, headline=f"Carried {n}")] if n else []
        carried = [{**r, "date": f"{day}T06:00:00Z"} for r in carried]  # yesterday's first story, again today
        write(folder, f"{day}.jsonl", record(day, 1), record(day, 2), *carried)
    for day in DAYS:
        check(folder, store, [day])
    parse_calls.clear()
    check(folder, store, [DAYS[-1]])
    assert parse_calls[len(DAYS) :] == [f"{DAYS[-2]}.jsonl", f"{DAYS[-1]}.jsonl"]


@pytest.mark.parametrize("seed", range(6))
def test_random_landings_with_many_repeats(tmp_path, seed):
    """Files of random days whose items share links, ids and headlines at random, landing a few at a time, then
    changed and removed: every day and some ranges, each time."""
    rng = random.Random(seed)
    folder, store = tmp_path / "landing", ParquetStore(str(tmp_path / "outputs"))
    days = [*DAYS, "2025-12-31", "2026-02-02"]  # two outside the partitions, now and then

    def contents() -> list:
        records = []
        for _ in range(rng.randint(0, 8)):
            fields = {"link": rng.choice([f"https://news.test/{rng.randint(0, 30)}", ""])}
            if rng.random() < 0.3:
                fields["id"] = f"id-{rng.randint(0, 8)}"
            fields["headline"] = f"Headline {rng.randint(0, 12)}"
            fields["source"] = rng.choice(["Harbour Post", "Wire"])
            records.append(record(rng.choice(days[:7] * 6 + days[7:]), 0, hour=rng.randint(0, 23), **fields))
        return records + ([{"headline": "undated"}] if rng.random() < 0.2 else [])

    names = [f"{n:02d}.jsonl" for n in range(14)]
    landed = 0
    while landed < len(names):
        batch = names[landed : landed + rng.randint(1, 4)]
        for name in batch:
            write(folder, name, *contents())
        landed += len(batch)
        check(folder, store, [rng.choice(DAYS)])
    for name in rng.sample(names, 3):
        write(folder, name, *contents())
        os.utime(folder / name, ns=(rng.randint(1, 10**9),) * 2)
    (folder / rng.choice(names)).unlink()
    for run_days in [[d] for d in DAYS] + [DAYS[1:4], DAYS[5:]]:
        check(folder, store, run_days)


def test_a_new_file_that_repeats_or_precedes_indexed_items(tmp_path):
    """Items already indexed that nothing repeated until a new file does, on either side of it in time."""
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    check(folder, store, [DAYS[6]])
    # A late file: a story of day 4 that e.jsonl's second item repeats; and h's first item again on day 7.
    write(
        folder,
        "late.jsonl",
        record(DAYS[1], 9, link=f"https://news.test/{DAYS[3]}/2"),
        record(DAYS[6], 8, link=f"https://news.test/{DAYS[6]}/1", hour=3),
    )
    for day in DAYS:
        check(folder, store, [day])
    full = parse.parse_landing(local_files(folder), first_day=FIRST, last_day=LAST)
    reasons = dict(zip(full.duplicates["origin"].str.split("/").str[-1], full.duplicates["reason"]))
    assert reasons["e.jsonl:2"] == "same link" and reasons["h.jsonl:1"] == "same link"


def test_a_file_changed_in_place_or_removed(tmp_path, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    check(folder, store, [DAYS[4]])
    # c.jsonl now holds day 5 and repeats f's chain link earlier in the day: f's item becomes its duplicate.
    write(folder, "c.jsonl", record(DAYS[4], 7, hour=1, link="https://news.test/chain-link"), record(DAYS[2], 2))
    os.utime(folder / "c.jsonl", ns=(1, 1))  # a new stamp, whatever the clock's resolution
    changed = check(folder, store, [DAYS[4]])
    assert changed.reindexed == 1
    for day in DAYS:
        check(folder, store, [day])
    (folder / "a.jsonl").unlink()
    removed = check(folder, store, DAYS)
    assert removed.reindexed == 0 and removed.listed == 7
    assert "a.jsonl" not in {os.path.basename(n) for n in index.load_index(store, _inputs())[0]["name"].to_pylist()}
    for path in folder.iterdir():
        path.unlink()
    assert check(folder, store, DAYS).listed == 0 and index.load_index(store, _inputs())[0].num_rows == 0
    check(folder, ParquetStore(str(tmp_path / "elsewhere")), DAYS)  # an empty folder and no index


def test_files_of_no_day_are_not_read_for_their_records_of_no_day(tmp_path, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    read(folder, store, [DAYS[6]])
    parse_calls.clear()
    reading = check(folder, store, [DAYS[6]])
    assert "d.json" not in parse_calls[8:]  # the unreadable file's record comes from the index
    assert len(reading.parsed.rejects[reading.parsed.rejects["day"].isna()]) == 5


def test_a_files_warning_is_kept_when_the_file_is_not_read(tmp_path, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    email = EMAILS / "morning_wire.eml"  # of 2026-11-18; its reader warns that it gave few items
    (folder / email.name).write_bytes(email.read_bytes())
    full = parse.parse_landing(local_files(folder), first_day=FIRST, last_day="2026-12-31")
    assert len(full.warnings) == 1
    for _ in range(2):
        parse_calls.clear()
        reading = index.read_landing(local_files(folder), store, [DAYS[6]], first_day=FIRST, last_day="2026-12-31")
        assert_same(reading, full, [DAYS[6]])
    assert email.name not in parse_calls


def test_the_index_on_s3(store, parse_calls):
    """The same on S3 (moto) as on local disk: written once, then read."""
    folder = Path(tempfile.mkdtemp(prefix="landing-index-"))
    try:
        landing(folder)
        assert check(folder / "landing", store, [DAYS[4]]).rebuilt == "no landing index yet"
        again = check(folder / "landing", store, [DAYS[4]])
        assert again.rebuilt is None and again.reindexed == 0 and again.parsed_files == 4
    finally:
        shutil.rmtree(folder)


def _inputs() -> str:
    return index.index_fingerprint(None, None)


@pytest.mark.parametrize("damage", ["missing", "corrupt", "other settings", "other columns", "parts that do not fit"])
def test_a_missing_or_unusable_index_means_parsing_everything(tmp_path, damage, parse_calls):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    read(folder, store, [DAYS[0]])
    path = tmp_path / "outputs" / "landing_index" / "files.parquet"
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"PAR1 not really")
    elif damage == "other settings":
        stored, _ = index.load_index(store, _inputs(), complete=True)
        index.save_index(store, "made-elsewhere", stored)
    elif damage == "other columns":
        store.write("landing_index", "files", pd.DataFrame({"name": ["x"]}), {"inputs": _inputs()})
    else:  # linked keys without their days
        stored, _ = index.load_index(store, _inputs(), complete=True)
        days = [b"" for _ in range(stored.num_rows)]
        field = stored.schema.get_field_index("linked_days")
        index.save_index(store, _inputs(), stored.set_column(field, "linked_days", pa.array(days, pa.binary())))
    parse_calls.clear()
    reading = check(folder, store, [DAYS[2]])
    assert reading.rebuilt and reading.parsed_files == reading.reindexed == 8
    assert len(parse_calls) == 16  # the full parse and the run: every file each
    assert index.load_index(store, _inputs())[1] is None  # written anew


def test_other_parse_settings_rebuild_the_index(tmp_path):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    read(folder, store, [DAYS[0]])
    other = read(folder, store, [DAYS[0]], date_format="%d/%m/%Y")
    assert other.rebuilt == "the landing index was made with other settings or code"


def test_an_index_that_cannot_be_written_leaves_the_previous_one(tmp_path, monkeypatch):
    folder, store = landing(tmp_path), ParquetStore(str(tmp_path / "outputs"))
    read(folder, store, [DAYS[0]])
    before = index.load_index(store, _inputs())[0]["name"].to_pylist()
    write(folder, "i.jsonl", record(DAYS[6], 5))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ParquetStore, "_write_local", staticmethod(broken))
    reading = check(folder, store, [DAYS[6]])
    assert reading.unsaved == "OSError: disk full"
    after, why = index.load_index(store, _inputs())
    assert why is None and after["name"].to_pylist() == before


def test_raw_items_reads_only_the_files_of_its_day(workspace):
    for n, day in enumerate(DAYS):
        write(workspace.landing, f"{day}.jsonl", *(record(day, i) for i in range(3)), record(DAYS[0], 10 + n, hour=n))

    def run(day: str, **config) -> dict:
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize(
            [raw_items],
            partition_key=day,
            resources=workspace.resources(),
            instance=instance,
            run_config={"ops": {"raw_items": {"config": config}}} if config else None,
        )
        assert result.success
        logged = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.INFO]
        assert any("landing files 7, files parsed" in line for line in logged)
        metadata = next(m.metadata for m in result.asset_materializations_for_node("raw_items"))
        return {k: v.value for k, v in metadata.items()}

    first = run(DAYS[3])
    assert (first["landing_files"], first["files_parsed"], first["files_from_index"]) == (7, 7, 0)
    stored = {t: workspace.store.read(t, DAYS[3]) for t in ("raw_items", "duplicates", "quarantine")}
    again = run(DAYS[3])
    assert (again["files_parsed"], again["files_from_index"], again["files_reindexed"]) == (1, 6, 0)
    # Every file holds an item of the first day: its run reads them all.
    assert run(DAYS[0])["files_parsed"] == 7
    before = run(DAYS[3], parse_all=True)
    assert before["files_parsed"] == 7 and before["records_read"] == again["records_read"] == 28
    for table, frame in stored.items():
        pd.testing.assert_frame_equal(workspace.store.read(table, DAYS[3]), frame)
