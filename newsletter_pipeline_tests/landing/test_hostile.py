"""Hostile input: each bad record is quarantined with its reason, and every good record around it survives."""

import json
import os

import pytest

from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import local_files

WINDOW = {"first_day": "2018-01-01", "last_day": "2026-11-23"}


def good(i: int) -> dict:
    return {
        "headline": f"Good story number {i}",
        "link": f"https://x.test/good/{i}",
        "date": "2026-11-16",
        "source": "Good",
    }


def parse_dir(folder):
    parsed = parse.parse_landing(local_files(folder), **WINDOW)
    assert parsed.balanced()  # nothing lost, whatever the input
    return parsed


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def assert_good_survive(parsed, n: int):
    assert sorted(parsed.items["headline"]) == sorted(good(i)["headline"] for i in range(n))


CASES = {
    "truncated JSON": (
        jsonl(good(0), b'{"headline": "cut off', good(1)),
        "malformed JSON: Unterminated string starting at (column 14)",
    ),
    "wrong types": (
        jsonl(good(0), {"headline": ["a", "list"], "date": "2026-11-16"}, good(1)),
        "headline is a list, expected text",
    ),
    "a date that is a number": (
        jsonl(good(0), {"headline": "Epoch", "date": 1.5e300}, good(1)),
        parse.date_reason(1.5e300),
    ),
    "non-UTF-8 bytes": (
        jsonl(good(0), b'{"headline": "Caf\xe9", "date": "2026-11-16"}', good(1)),
        "line is not valid UTF-8",
    ),
    "a date far in the past": (
        jsonl(good(0), {"headline": "Old", "date": "1901-01-01"}, good(1)),
        "date 1901-01-01 is outside the partitions (2018-01-01 to 2026-11-23)",
    ),
    "a date far in the future": (
        jsonl(good(0), {"headline": "Future", "date": "2950-06-01"}, good(1)),
        "date 2950-06-01 is outside the partitions (2018-01-01 to 2026-11-23)",
    ),
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
        [0, "unreadable file: binary data (NUL bytes), not a text file: check what was saved under this name"]
    ]
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
    assert parsed.rejects[["position", "reason"]].values.tolist() == [
        [1, "missing date (looked for: date, published, published_at)"]
    ]


def test_a_csv_row_with_too_many_fields(tmp_path):
    (tmp_path / "feed.csv").write_text("title,date\nGood story number 0,2026-11-16\nExtra,2026-11-16,surprise\n")
    parsed = parse_dir(tmp_path)
    assert parsed.items["headline"].tolist() == ["Good story number 0"]
    assert parsed.rejects["reason"].tolist() == ["row has more fields than the header"]


# Inputs that once cost the good records after them (a review found each one).
@pytest.mark.parametrize(
    "bad, reason",
    [
        (
            b'{"headline": "Huge", "date": "2026-11-16", "n": ' + b"9" * 5000 + b"}",
            "JSON that cannot be read: ValueError",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "JSON that cannot be read: RecursionError"),
    ],
)
def test_unreadable_json_lines_spoil_only_themselves(tmp_path, bad, reason):
    (tmp_path / "feed.jsonl").write_bytes(jsonl(good(0), bad, good(1)))
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 2)
    assert len(parsed.rejects) == 1 and parsed.rejects.iloc[0]["reason"].startswith(reason)


def test_a_surrogate_escape_is_dropped_not_fatal(tmp_path):
    escaped = b'{"headline": "Odd \\udc80 escape in a headline", "link": "https://x.test/odd", "date": "2026-11-16"}'
    (tmp_path / "feed.jsonl").write_bytes(jsonl(escaped, good(1)))
    parsed = parse_dir(tmp_path)
    assert sorted(parsed.items["headline"]) == ["Good story number 1", "Odd escape in a headline"]


def test_a_huge_csv_field_is_quarantined_and_later_rows_survive(tmp_path):
    rows = [f"Good story number {i},2026-11-16,https://x.test/good/{i}" for i in range(3)]
    rows.insert(1, f"{'x' * 200_000},2026-11-16,https://x.test/huge")
    (tmp_path / "feed.csv").write_text("title,date,url\n" + "\n".join(rows) + "\n")
    parsed = parse_dir(tmp_path)
    assert_good_survive(parsed, 3)
    assert parsed.rejects[["position", "reason"]].values.tolist() == [
        [2, "headline has 200,000 characters, over the 20,000 limit"]
    ]


def test_a_file_that_breaks_off_quarantines_each_unread_record(tmp_path, monkeypatch):
    from newsletter_pipeline.landing import formats, readers

    def breaks_after_two(data):
        for position, record in list(readers.read_jsonl(data))[:2]:
            yield position, record
        raise OSError("connection reset")

    monkeypatch.setitem(formats.READERS, ".jsonl", breaks_after_two)
    (tmp_path / "feed.jsonl").write_bytes(jsonl(*(good(i) for i in range(5))))
    parsed = parse_dir(tmp_path)
    assert len(parsed.items) == 2 and parsed.records == 5
    assert parsed.rejects["position"].tolist() == [3, 4, 5]
    assert set(parsed.rejects["reason"]) == {"not read: the file broke off after record 2: connection reset"}


def test_links_that_are_no_links_do_not_make_items_duplicates(tmp_path):
    (tmp_path / "feed.jsonl").write_bytes(
        jsonl(*({**good(i), "link": link} for i, link in enumerate(["#", "?utm_source=x", "/"])))
    )
    assert len(parse_dir(tmp_path).items) == 3


def test_articles_that_look_like_footer_links_are_still_items(tmp_path):
    html = (
        '<p><a href="https://www.reuters.com/legal/court-rules-on-data-retention-2026-11-16/">Court rules on data retention in landmark case</a></p>'
        "<p>The ruling affects every telecom operator.</p>"
        '<p><a href="https://news.test/why-readers-unsubscribe">Why readers unsubscribe from newsletters now, a study finds</a></p>'
        "<p>Fatigue, not content, drives readers away.</p>"
        '<p><a href="https://news.test/u?id=1">Unsubscribe</a> | <a href="https://news.test/preferences/email-preferences">Manage preferences</a></p>'
    )
    (tmp_path / "issue.eml").write_text(
        "From: Morning Brief <brief@news.test>\nTo: reader@x.test\nSubject: Today\nDate: Mon, 16 Nov 2026 07:00:00 +0000\n"
        f"Message-ID: <a1@news.test>\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n{html}\n"
    )
    parsed = parse_dir(tmp_path)
    assert parsed.items["headline"].tolist() == [
        "Court rules on data retention in landmark case",
        "Why readers unsubscribe from newsletters now, a study finds",
    ]
