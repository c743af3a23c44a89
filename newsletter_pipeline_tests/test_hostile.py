"""Hostile input: each bad record is quarantined with its reason, and every good record around it survives."""

import json
import os

import pytest

from newsletter_pipeline.landing import local_files
from newsletter_pipeline.stages import parse

WINDOW = {"first_day": "2018-01-01", "last_day": "2026-11-23"}


def good(i: int) -> dict:
    return {"headline": f"Good story number {i}", "link": f"https://x.test/good/{i}", "date": "2026-11-16", "source": "Good"}


def parse_dir(folder):
    parsed = parse.parse_landing(local_files(folder), **WINDOW)
    assert parsed.balanced()  # nothing lost, whatever the input
    return parsed


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def assert_good_survive(parsed, n: int):
    assert sorted(parsed.items["headline"]) == sorted(good(i)["headline"] for i in range(n))


CASES = {
    "truncated JSON": (jsonl(good(0), b'{"headline": "cut off', good(1)), "malformed JSON: Unterminated string starting at (column 14)"),
    "wrong types": (jsonl(good(0), {"headline": ["a", "list"], "date": "2026-11-16"}, good(1)), "headline is a list, expected text"),
    "a date that is a number": (jsonl(good(0), {"headline": "Epoch", "date": 1.5e300}, good(1)), "unparseable date '1.5e+300'"),
    "non-UTF-8 bytes": (jsonl(good(0), b'{"headline": "Caf\xe9", "date": "2026-11-16"}', good(1)), "line is not valid UTF-8"),
    "a date far in the past": (jsonl(good(0), {"headline": "Old", "date": "1901-01-01"}, good(1)),
                               "date 1901-01-01 is outside the partitions (2018-01-01 to 2026-11-23)"),
    "a date far in the future": (jsonl(good(0), {"headline": "Future", "date": "2950-06-01"}, good(1)),
                                 "date 2950-06-01 is outside the partitions (2018-01-01 to 2026-11-23)"),
    "a record that is not an object": (jsonl(good(0), b"42", good(1)), "expected an object with named fields, got int"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_jsonl_record(tmp_path, case):
    data, reason = CASES[case]
    (tmp_path / "feed.jsonl").write_bytes(data)
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 2)
    assert parsed.rejects[["file", "position", "reason"]].values.tolist() == [[str(tmp_path / "feed.jsonl"), 2, reason]]


def test_a_10_mb_field(tmp_path):
    (tmp_path / "feed.jsonl").write_bytes(jsonl(good(0), {**good(9), "short_description": "x" * 10_000_000}, good(1)))
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 2)
    assert parsed.rejects["reason"].tolist() == ["short_description has 10,000,000 characters, over the 20,000 limit"]


def test_binary_garbage_named_like_a_feed(tmp_path):
    (tmp_path / "garbage.jsonl").write_bytes(b"\x00" + os.urandom(4096))
    (tmp_path / "good.jsonl").write_bytes(jsonl(good(0), good(1)))
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 2)
    assert parsed.rejects[["position", "reason"]].values.tolist() == [
        [0, "unreadable file: binary data (NUL bytes), not a text file: check what was saved under this name"]]
    assert parsed.rejects.iloc[0]["file"].endswith("garbage.jsonl")


def test_an_empty_file(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "good.jsonl").write_bytes(jsonl(good(0)))
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 1)
    assert parsed.rejects.empty and parsed.records == 1


def test_duplicate_ids(tmp_path):
    first, second = {**good(0), "id": "a-1"}, {**good(1), "id": "a-1"}
    (tmp_path / "feed.jsonl").write_bytes(jsonl(first, second))
    parsed = parse_dir(tmp_path)
    assert parsed.items["headline"].tolist() == [good(0)["headline"]]
    assert parsed.duplicates["reason"].tolist() == ["same source id"]  # kept as a duplicate, not lost


def test_a_csv_with_missing_columns(tmp_path):
    (tmp_path / "feed.csv").write_text("title,url\nNo date here,https://x.test/1\n")
    (tmp_path / "good.csv").write_text("title,date,url\nGood story number 0,2026-11-16,https://x.test/good/0\n")
    parsed = parse_dir(tmp_path)
    assert parsed.items["headline"].tolist() == ["Good story number 0"]
    assert parsed.rejects[["position", "reason"]].values.tolist() == [[1, "missing date (looked for: date, published, published_at)"]]


def test_a_csv_row_with_too_many_fields(tmp_path):
    (tmp_path / "feed.csv").write_text("title,date\nGood story number 0,2026-11-16\nExtra,2026-11-16,surprise\n")
    parsed = parse_dir(tmp_path)
    assert parsed.items["headline"].tolist() == ["Good story number 0"]
    assert parsed.rejects["reason"].tolist() == ["row has more fields than the header"]
