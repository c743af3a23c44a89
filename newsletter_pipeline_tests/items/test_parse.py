"""Landing files -> the normalized items table: layouts, days, ids and rejected records."""

import json

import pandas as pd

from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import local_files
from newsletter_pipeline_tests.conftest import SAMPLE, SAMPLE_DAYS

HUFFPOST = {
    "link": "https://www.huffpost.com/entry/a",
    "headline": "Storm hits the coast",
    "category": "WEATHER",
    "short_description": "Thousands leave their homes.",
    "authors": "A. Writer",
    "date": "2022-09-23",
}


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_huffpost_layout_is_read_as_it_is(tmp_path):
    write_jsonl(tmp_path / "huffpost.jsonl", [HUFFPOST])
    items = parse.parse_landing(local_files(tmp_path)).items
    row = items.iloc[0]
    assert list(items.columns) == parse.ITEM_COLUMNS
    assert (row.headline, row.short_description, row.link, row.authors, row.category) == (
        "Storm hits the coast",
        "Thousands leave their homes.",
        "https://www.huffpost.com/entry/a",
        "A. Writer",
        "WEATHER",
    )
    assert row.day == "2022-09-23" and row.published_at == pd.Timestamp("2022-09-23", tz="UTC")
    assert row.source == "huffpost"  # no source field: the file names the newsletter
    assert row.source_id is None and row.origin == f"{tmp_path}/huffpost.jsonl:1"


def test_csv_with_header_and_source_id(tmp_path):
    (tmp_path / "feed.csv").write_text(
        "id,source,date,title,description,url\n"
        '17,Daily Wire,2024-03-01T23:30:00-02:00,"Rates, again",Central bank holds,https://x.test/1\n'
    )
    row = parse.parse_landing(local_files(tmp_path)).items.iloc[0]
    assert (row.source_id, row.source, row.headline, row.short_description, row.link) == (
        "17",
        "Daily Wire",
        "Rates, again",
        "Central bank holds",
        "https://x.test/1",
    )
    assert row.day == "2024-03-02"  # 23:30 at UTC-2 is the next day in UTC


def test_multi_day_export_splits_by_day_and_ids_are_stable(tmp_path):
    records = [
        dict(HUFFPOST, link=f"https://x.test/{i}", headline=f"Story {i}", date=f"2022-09-2{i % 3}") for i in range(9)
    ]
    write_jsonl(tmp_path / "export.jsonl", records)
    first = parse.parse_landing(local_files(tmp_path))
    days = {day: len(parse.items_for_day(first, day).items) for day in ("2022-09-20", "2022-09-21", "2022-09-22")}
    assert days == {"2022-09-20": 3, "2022-09-21": 3, "2022-09-22": 3}
    assert first.items["item_id"].is_unique
    assert parse.parse_landing(local_files(tmp_path)).items["item_id"].tolist() == first.items["item_id"].tolist()


def test_bad_records_are_rejected_with_file_position_and_reason(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            HUFFPOST,
            '{"headline": "truncated',
            dict(HUFFPOST, headline="", link="https://x.test/2"),
            dict(HUFFPOST, date="next tuesday", link="https://x.test/3"),
            "[1, 2]",
            dict(HUFFPOST, link="https://x.test/5", headline="Second good one"),
        ],
    )
    parsed = parse.parse_landing(local_files(tmp_path))
    assert parsed.items["headline"].tolist() == ["Storm hits the coast", "Second good one"]
    reasons = dict(zip(parsed.rejects["position"], parsed.rejects["reason"], strict=True))
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3].startswith("missing headline")
    assert reasons[4].startswith("unparseable date 'next tuesday': a date must name a full day as ISO 8601")
    assert reasons[5].startswith("expected an object")
    assert set(parsed.rejects["file"]) == {str(path)}
    # A rejected record that still has a readable date is filed under its day.
    assert parsed.rejects.set_index("position").loc[3, "day"] == "2022-09-23"


def test_duplicates_are_kept_once_and_recorded(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl",
        [
            dict(
                HUFFPOST, link="https://www.huffpost.com/entry/a?utm_source=nl", date="2022-09-23T09:00:00Z"
            ),  # same link, tracked
            dict(HUFFPOST, date="2022-09-23T08:00:00Z"),  # the earliest copy: kept
            dict(
                HUFFPOST, link="https://x.test/other", headline="STORM HITS THE COAST", date="2022-09-23T10:00:00Z"
            ),  # same headline
            dict(HUFFPOST, link="https://x.test/id1", headline="One", id="7", date="2022-09-23T11:00:00Z"),
            dict(
                HUFFPOST, link="https://x.test/id2", headline="Two", id="7", date="2022-09-23T12:00:00Z"
            ),  # same source id
            dict(
                HUFFPOST, link="https://x.test/b", headline="Storm hits the coast", date="2022-09-24"
            ),  # another day: an item
        ],
    )
    parsed = parse.parse_landing(local_files(tmp_path))
    assert parsed.items["headline"].tolist() == ["Storm hits the coast", "One", "Storm hits the coast"]
    assert parsed.items.iloc[0]["published_at"] == pd.Timestamp("2022-09-23T08:00:00Z")
    kept = parsed.items.iloc[0]["item_id"]
    assert parsed.duplicates[["duplicate_of", "reason"]].values.tolist() == [
        [kept, "same link"],
        [kept, "same headline and source on the day"],
        [parsed.items.iloc[1]["item_id"], "same source id"],
    ]
    assert parsed.balanced() and parsed.records == 6


def test_links_are_compared_without_tracking():
    from newsletter_pipeline.items.dedupe import normalize_link

    assert normalize_link("HTTPS://WWW.Example.com/a/?utm_source=x&b=2&fbclid=9#top") == normalize_link(
        "https://example.com/a?b=2"
    )


def test_dates_outside_the_partitions_are_quarantined_without_a_day(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl",
        [dict(HUFFPOST, date="1999-01-01"), dict(HUFFPOST, link="https://x.test/f", date="2999-01-01"), HUFFPOST],
    )
    parsed = parse.parse_landing(local_files(tmp_path), first_day="2018-01-01", last_day="2026-11-23")
    assert len(parsed.items) == 1 and parsed.balanced()
    assert parsed.rejects["reason"].tolist() == [
        "date 1999-01-01 is outside the partitions (2018-01-01 to 2026-11-23)",
        "date 2999-01-01 is outside the partitions (2018-01-01 to 2026-11-23)",
    ]
    assert parsed.rejects["day"].isna().all() and parsed.rejects["position"].tolist() == [1, 2]


def test_ag_news_escapes_are_cleaned():
    assert (
        parse.clean_text("Costs rise to #36;5bn\\ as   profits &amp; sales fall")
        == "Costs rise to $5bn as profits & sales fall"
    )


def test_sample_data_covers_five_days_of_several_sources():
    parsed = parse.parse_landing(local_files(SAMPLE))
    assert parsed.rejects.empty
    per_day = parsed.items.groupby("day").size()
    assert list(per_day.index) == SAMPLE_DAYS and per_day.between(30, 45).all()
    assert parsed.items.groupby("day")["source"].nunique().min() >= 4


def test_a_bad_byte_in_a_csv_spoils_only_its_row(tmp_path):
    rows = [f"Headline {i},2024-03-01,https://x.test/{i}".encode() for i in range(5)]
    rows[2] = b"Caf\xe9 opens,2024-03-01,https://x.test/2"  # Latin-1, not UTF-8
    (tmp_path / "feed.csv").write_bytes(b"title,date,url\n" + b"\n".join(rows) + b"\n")
    parsed = parse.parse_landing(local_files(tmp_path))
    assert len(parsed.items) == 4
    assert parsed.rejects[["position", "reason"]].values.tolist() == [[3, "row is not valid UTF-8"]]


def test_control_characters_are_dropped():
    assert parse.clean_text("Bell\x07 and\x00 null") == "Bell and null"


def test_a_rejected_csv_row_is_filed_under_its_day(tmp_path):
    (tmp_path / "feed.csv").write_text("title,published,url\n,2024-03-01T10:00:00Z,https://x.test/1\n")
    rejects = parse.parse_landing(local_files(tmp_path)).rejects
    assert rejects[["day", "reason"]].values.tolist() == [
        ["2024-03-01", "missing headline (looked for: headline, title)"]
    ]


def test_several_locations_and_a_column_map(tmp_path):
    from newsletter_pipeline.defs.resources import LandingFolder

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "one.jsonl").write_text(json.dumps(HUFFPOST) + "\n")
    (tmp_path / "b" / "two.csv").write_text("Betreff,Datum,Adresse\nZweite Meldung,2022-09-23,https://x.test/2\n")
    landing = LandingFolder(
        path=f"{tmp_path / 'a'}, {tmp_path / 'b'}",
        column_map={"Betreff": "headline", "Datum": "date", "Adresse": "link"},
    )
    parsed = parse.parse_landing(landing.files(), landing.column_map)
    assert parsed.items["headline"].tolist() == ["Storm hits the coast", "Zweite Meldung"] and parsed.rejects.empty
