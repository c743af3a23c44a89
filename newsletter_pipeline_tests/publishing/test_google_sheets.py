"""The Google Sheets export, run through gspread's real client against an in-memory Sheets API (sheets_fake)."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, date, datetime

import dagster as dg
import google.auth.exceptions
import gspread
import pandas as pd
import pytest
import requests
from openpyxl import load_workbook

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.clustering.label import SUMMARY_COLUMNS
from newsletter_pipeline.defs.resources import SheetsResource, resources_from_env
from newsletter_pipeline.items.parse import ITEM_COLUMNS
from newsletter_pipeline.publishing import export, sheets
from newsletter_pipeline_tests.sheets_fake import FakeSheets, formatted, make_client

KEY = "1FakeSpreadsheetKey"
A, B, C = "2024-03-01", "2024-03-02", "2024-03-03"
APRIL, FEBRUARY = "2024-04-01", "2024-02-29"
MARCH_TABS = [export.tab_name(kind, A) for kind in export.TABS]  # clusters, items, stories
NOW = datetime(2024, 3, 4, 12, 30, tzinfo=UTC)
TABS_ITEMS = export.TABS["items"]
# Probabilities that render differently as Python text and as sheet text (1.0 -> "1"), and one that export rounds.
PROBABILITIES = [1.0, 0.8765, 0.123456, 0.5, 0.75, 0.9]
SECRET = "s3cr3tK3yMaterial"


def day_tables(day: str, n: int, headline: str | None = None, pad: int = 0) -> dict[str, pd.DataFrame]:
    """n items of `day` spread over clusters 0 and 1; the last one is noise. `pad` lengthens every headline."""
    published = pd.Timestamp(f"{day}T06:00:00", tz="UTC")
    items = pd.DataFrame(
        {
            "item_id": [f"{day}-{i}" for i in range(n)],
            "source_id": [f"s{i}" if i % 3 else None for i in range(n)],  # a missing id is an empty cell
            "published_at": [published + pd.Timedelta(minutes=7 * i) for i in range(n)],
            "day": day,
            "source": [("Morning Brief", "Tech Digest")[i % 2] for i in range(n)],
            "headline": [
                headline if headline and i == 0 else f"Headline {i} of {day}, naïve café" + " ±" * pad for i in range(n)
            ],
            "short_description": "",
            "link": [f"https://example.com/{day}/{i}" if i != 1 else None for i in range(n)],  # an empty cell
            "authors": "",
            "category": "news",
            "origin": [f"brief.jsonl:{i + 1}" for i in range(n)],
        }
    )[ITEM_COLUMNS]
    clusters = [i % 2 if i < n - 1 else NOISE for i in range(n)]
    assignments = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "cluster_id": clusters,
            "probability": [
                0.0 if c == NOISE else PROBABILITIES[i % len(PROBABILITIES)] for i, c in enumerate(clusters)
            ],
        }
    )
    summaries = []
    for c in sorted(set(clusters) - {NOISE}):
        members = items[[k == c for k in clusters]].head(3)
        sources = sorted(set(items[[k == c for k in clusters]]["source"]))
        summaries.append(
            {
                "cluster_id": c,
                "label": f"topic {c}",
                "title": members["headline"].iloc[0],
                "keywords": f"topic {c}, news",
                "size": clusters.count(c),
                "n_sources": len(sources),
                "sources": ", ".join(sources),
                "top_headlines": "\n".join(members["headline"]),
                "top_links": "\n".join(members["link"].fillna("")),
            }
        )
    summaries = pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)
    stories = pd.DataFrame(
        {
            "cluster_id": summaries["cluster_id"],
            "size": summaries["size"],
            "story_id": [f"2024-02-28#{c}" for c in summaries["cluster_id"]],
            "first_seen": "2024-02-28",
            "days_active": 2,
            "trend": "growing",
        }
    )
    # story_id is the items tab's last column: the noise item's is a trailing empty cell.
    story_items = pd.DataFrame(
        {"item_id": items["item_id"], "story_id": [None if c == NOISE else f"2024-02-28#{c}" for c in clusters]}
    )
    # The month's stories tab, one story (cluster 0's) as tracking.story_tab shows it: items_per_day runs from its
    # first day with items in the month to `day` (one item a day before, its cluster's size on `day`).
    start = max(date.fromisoformat(f"{day[:7]}-01"), date(2024, 2, 28))
    per_day = ["1"] * (date.fromisoformat(day) - start).days + [str(s) for s in summaries["size"].head(1)]
    story_tab = pd.DataFrame(
        [
            ["2024-02-28#0", title, "2024-02-28", day, 2, ",".join(per_day), "growing"]
            for title in summaries["title"].head(1)
        ],
        columns=export.TABS["stories"],
    )
    return export.sheet_tables(day, items, assignments, summaries, stories, story_items, story_tab)


def story_days(day: str) -> list[str]:
    """The days with items of day_tables(day)'s stories tab: from the story's first day in the month to `day`."""
    start = max(date.fromisoformat(f"{day[:7]}-01"), date(2024, 2, 28))
    return [date.fromordinal(d).isoformat() for d in range(start.toordinal(), date.fromisoformat(day).toordinal() + 1)]


def shown(table: pd.DataFrame) -> list[list[str]]:
    """A table's rows as values.get returns them by default: formatted text."""
    return [[formatted(v) for v in row] for row in export.table_rows(table)]


def stored(*tables: pd.DataFrame) -> list[list]:
    """Tables' rows as fake.values shows them: numbers as numbers, trailing empty cells left out."""
    rows = [row for table in tables for row in export.table_rows(table)]
    return [row[: max((i + 1 for i, v in enumerate(row) if v != ""), default=0)] for row in rows]


def spreadsheet(fake: FakeSheets) -> gspread.Spreadsheet:
    """Plain gspread: no retries."""
    return make_client(fake).open_by_key(KEY)


def retry_policy(**changes) -> sheets.RetryPolicy:
    """The export's retry policy (the settings' defaults, as SheetsResource makes it), with `changes`."""
    return dataclasses.replace(SheetsResource().retry_policy(), **changes)


def retrying(fake: FakeSheets, slept: list | None = None, **policy) -> gspread.Spreadsheet:
    """gspread with the export's retries; sleeps are recorded, never slept."""
    slept = [] if slept is None else slept
    client = sheets.install_retries(make_client(fake), retry_policy(sleep=slept.append, **policy))
    return client.open_by_key(KEY)


def tab_values(fake: FakeSheets) -> dict[str, list[list]]:
    """Every tab's stored values and grid size: what a sheet reader could ever see."""
    return {s.title: (s.rows, s.cols, fake.values(KEY, s.title)) for s in fake.books[KEY].sheets}


def index_row(day: str, kind: str, rows: int, days: list[str], now: datetime = NOW) -> list:
    month = day[:7]
    return [
        month,
        kind,
        f"{kind} {month}",
        rows,
        len(days),
        days[0],
        days[-1],
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        export.LAYOUT_VERSION,
    ]


@pytest.fixture
def fake() -> FakeSheets:
    fake = FakeSheets()
    fake.create_spreadsheet(KEY, "Newsletter clusters")
    return fake


# --- layout v4: month tabs and the index ---------------------------------------------------------------------


@pytest.mark.parametrize("order", [(A, B), (B, A)], ids=["A-then-B", "B-then-A"])
def test_days_share_their_month_tab_under_the_header(fake, order):
    written = {A: day_tables(A, 5), B: day_tables(B, 4)}
    for day in order:
        totals = export.write_google_sheet(spreadsheet(fake), day, written[day], now=NOW)
    sheet = spreadsheet(fake)
    for kind, header in export.TABS.items():
        tab = export.tab_name(kind, A)
        if kind in export.WHOLE_TABS:  # the stories tab: the last export's, whole
            rows = [header, *shown(written[order[-1]][kind])]
        else:
            rows = [header, *shown(written[A][kind]), *shown(written[B][kind])]  # days in order, whatever the order
        assert len(rows) > 1
        assert sheet.worksheet(tab).get_all_values() == rows
        assert totals[tab] == len(rows) - 1
        assert (fake.sheet(KEY, tab).rows, fake.sheet(KEY, tab).cols) == (len(rows), len(header))
    assert [w.title for w in sheet.worksheets()] == ["Sheet1", "index", *MARCH_TABS]  # other tabs are left alone


def test_each_month_has_its_tabs_and_the_index_lists_them(fake):
    later = datetime(2024, 4, 2, 7, 0, tzinfo=UTC)
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 5), now=NOW)
    export.write_google_sheet(spreadsheet(fake), APRIL, day_tables(APRIL, 3), now=later)
    export.write_google_sheet(
        spreadsheet(fake), FEBRUARY, day_tables(FEBRUARY, 4), now=later
    )  # a backfill of an earlier month
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 6), now=later)
    titles = [s.title for s in fake.books[KEY].sheets]
    assert titles == [
        "Sheet1",
        "index",
        "clusters 2024-02",
        "items 2024-02",
        "stories 2024-02",
        "clusters 2024-03",
        "items 2024-03",
        "stories 2024-03",
        "clusters 2024-04",
        "items 2024-04",
        "stories 2024-04",
    ]
    assert story_days(FEBRUARY) == ["2024-02-28", FEBRUARY] and story_days(B) == [A, B]
    assert fake.values(KEY, "index") == [
        export.INDEX_HEADER,
        index_row(FEBRUARY, "clusters", 2, [FEBRUARY], later),
        index_row(FEBRUARY, "items", 4, [FEBRUARY], later),
        index_row(FEBRUARY, "stories", 1, story_days(FEBRUARY), later),
        index_row(A, "clusters", 4, [A, B], later),
        index_row(A, "items", 11, [A, B], later),
        index_row(A, "stories", 1, story_days(B), later),  # March's stories tab is B's, its last export
        index_row(APRIL, "clusters", 2, [APRIL], later),
        index_row(APRIL, "items", 3, [APRIL], later),
        index_row(APRIL, "stories", 1, [APRIL], later),
    ]
    assert [row[0] for row in fake.values(KEY, "items 2024-04")[1:]] == [APRIL] * 3
    assert {row[0] for row in fake.values(KEY, "items 2024-03")[1:]} == {A, B}
    assert fake.values(KEY, "stories 2024-03") == [export.TABS["stories"], *stored(day_tables(B, 6)["stories"])]


def test_every_tab_starts_with_its_pinned_header_row(fake):
    for day in (A, APRIL):
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, 3), now=NOW)
    heads = {s.title: fake.values(KEY, s.title)[0] for s in fake.books[KEY].sheets if s.title != "Sheet1"}
    assert heads == {
        "index": ["month", "kind", "tab", "rows", "days", "first_day", "last_day", "updated_at", "layout_version"],
        "clusters 2024-03": [
            "day",
            "cluster_id",
            "label",
            "title",
            "keywords",
            "size",
            "n_sources",
            "sources",
            "top_headlines",
            "top_links",
            "story_id",
            "first_seen",
            "days_active",
            "trend",
        ],
        "items 2024-03": [
            "day",
            "item_id",
            "source_id",
            "cluster_id",
            "cluster_label",
            "probability",
            "published_at",
            "source",
            "headline",
            "link",
            "story_id",
        ],
        "stories 2024-03": ["story_id", "title", "first_seen", "last_seen", "days_active", "items_per_day", "trend"],
        "clusters 2024-04": export.TABS["clusters"],
        "items 2024-04": export.TABS["items"],
        "stories 2024-04": export.TABS["stories"],
    }


def test_rewriting_a_day_with_fewer_rows_replaces_them(fake):
    for day, n in [(A, 6), (B, 4), (A, 2)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    sheet = spreadsheet(fake)
    for kind, header in export.TABS.items():
        tab = export.tab_name(kind, A)
        if kind in export.WHOLE_TABS:  # the stories tab: the last export's, whole
            rows = [header, *shown(day_tables(A, 2)[kind])]
        else:
            rows = [header, *shown(day_tables(A, 2)[kind]), *shown(day_tables(B, 4)[kind])]
        assert len(rows) > 1
        assert sheet.worksheet(tab).get_all_values() == rows
        # The grid shrank with the rows: nothing stale is left below them.
        assert fake.sheet(KEY, tab).rows == len(rows)
        assert len(fake.values(KEY, tab)) == len(rows)


def test_rerunning_a_day_is_idempotent(fake):
    for day, n in [(A, 5), (B, 4)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    before = tab_values(fake)
    fake.log.clear()
    # Re-exporting an earlier day passes the month's latest stories tab (sheet_export's month_stories): B's here.
    again = day_tables(A, 5) | {"stories": day_tables(B, 4)["stories"]}
    export.write_google_sheet(spreadsheet(fake), A, again, now=NOW)
    assert tab_values(fake) == before
    # Nothing changed, so nothing but the reads went out.
    assert [(e.method, e.path.rsplit("/", 1)[-1]) for e in fake.log] == [
        ("GET", KEY),
        ("GET", KEY),
        ("GET", "values:batchGet"),
    ]


def test_google_sheet_and_workbook_share_one_layout(fake, tmp_path):
    workbook = tmp_path / "clusters.xlsx"
    for day, n in [(B, 4), (A, 6), (APRIL, 2), (A, 3)]:
        tables = day_tables(day, n)
        assert export.write_google_sheet(spreadsheet(fake), day, tables, now=NOW) == export.write_workbook(
            workbook, day, tables, now=NOW
        )
    book, sheet = export.read_workbook(workbook), spreadsheet(fake)
    assert list(book) == [
        "index",
        "clusters 2024-03",
        "items 2024-03",
        "stories 2024-03",
        "clusters 2024-04",
        "items 2024-04",
        "stories 2024-04",
    ]
    assert [w.title for w in sheet.worksheets()] == ["Sheet1", *book]
    for tab in book:
        assert sheet.worksheet(tab).get_all_values() == [[formatted(v) for v in row] for row in book[tab]]
    assert export.joined(book)["items"] == [
        TABS_ITEMS,
        *export.table_rows(day_tables(A, 3)["items"]),
        *export.table_rows(day_tables(B, 4)["items"]),
        *export.table_rows(day_tables(APRIL, 2)["items"]),
    ]
    # Each month's stories tab is its last export's (A's for March), one story row each.
    assert export.joined(book)["stories"] == [
        export.TABS["stories"],
        *export.table_rows(day_tables(A, 3)["stories"]),
        *export.table_rows(day_tables(APRIL, 2)["stories"]),
    ]
    assert len(export.joined(book)["stories"]) == 1 + 2


def test_a_cell_over_the_limit_is_cut_the_same_way_in_both_sinks(fake, tmp_path):
    # A big cluster's top_headlines can pass Google's 50,000 characters a cell, and the fake, like Google, refuses the
    # whole write with a 400. Both sinks cut it to export.MAX_CELL_CHARS with a visible "…".
    tables = day_tables(A, 5)
    headlines = "\n".join(
        f"Headline {i} of {A}: the storm reaches the coast 🌀" for i in range(1_500)
    )  # ~75,000 characters
    tables["clusters"].loc[0, "top_headlines"] = headlines
    workbook = tmp_path / "clusters.xlsx"
    export.write_google_sheet(spreadsheet(fake), A, tables, now=NOW)
    export.write_workbook(workbook, A, tables, now=NOW)
    column = export.TABS["clusters"].index("top_headlines")
    cell = fake.values(KEY, MARCH_TABS[0])[1][column]
    assert cell.endswith("…") and headlines.startswith(cell[:-1])
    assert len(cell.encode("utf-16-le")) // 2 <= export.MAX_CELL_CHARS
    assert export.read_workbook(workbook)[MARCH_TABS[0]][1][column] == cell
    # The next day's export reads the cut cell back and leaves it as it is.
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 3), now=NOW)
    assert fake.values(KEY, MARCH_TABS[0])[1][column] == cell


def test_both_sinks_hold_only_storable_text(fake, tmp_path):
    # The parser cleans fields, but the sinks do not count on it: no U+FFFF, U+FFFE or lone surrogate reaches a cell.
    tables = {
        kind: table.astype(object) for kind, table in day_tables(A, 4).items()
    }  # an arrow string cannot hold "\ud800"
    tables["items"].loc[0, "headline"] = "Storm Odile\uffff nears the coast"
    tables["items"].loc[1, "source"] = "Morning\ud800 Brief\ufffe"
    tables["clusters"].loc[0, "title"] = "\udc80Storm Odile"
    workbook = tmp_path / "clusters.xlsx"
    export.write_google_sheet(spreadsheet(fake), A, tables, now=NOW)
    export.write_workbook(workbook, A, tables, now=NOW)
    items, clusters = fake.values(KEY, MARCH_TABS[1]), fake.values(KEY, MARCH_TABS[0])
    assert items[1][TABS_ITEMS.index("headline")] == "Storm Odile nears the coast"
    assert items[2][TABS_ITEMS.index("source")] == "Morning Brief"
    assert clusters[1][export.TABS["clusters"].index("title")] == "Storm Odile"
    book = export.read_workbook(workbook)
    assert [book[tab][1:3] for tab in MARCH_TABS[:2]] == [
        [r + [""] * (len(book[tab][0]) - len(r)) for r in rows[1:3]]
        for tab, rows in zip(MARCH_TABS[:2], (clusters, items), strict=True)
    ]


# --- requests: how many, how big ---------------------------------------------------------------------------


def test_one_values_request_per_tab_write(fake):
    # Sheets allows 60 write requests a minute per user; a day's export must stay well inside that.
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 5), now=NOW)
    first = [(e.method, e.path.removeprefix(f"/v4/spreadsheets/{KEY}")) for e in fake.log]
    assert first == [
        ("GET", ""),
        ("GET", ""),
        ("POST", ":batchUpdate"),  # open, list tabs, add the 4 tabs at their size
        ("POST", "/values:batchUpdate"),
        ("POST", "/values:batchUpdate"),
        ("POST", "/values:batchUpdate"),
        ("POST", "/values:batchUpdate"),
    ]
    fake.log.clear()
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 4), now=NOW)
    second = [(e.method, e.path.removeprefix(f"/v4/spreadsheets/{KEY}")) for e in fake.log]
    assert second == [
        ("GET", ""),
        ("GET", ""),
        ("GET", "/values:batchGet"),
        ("POST", ":batchUpdate"),  # read, grow
        ("POST", "/values:batchUpdate"),
        ("POST", "/values:batchUpdate"),
        ("POST", "/values:batchUpdate"),  # the stories tab, rewritten whole
        ("POST", "/values:batchUpdate"),
    ]
    writes = fake.requests_to("POST", "values:batchUpdate")
    assert [[d["range"].split("!")[0] for d in e.body["data"]] for e in writes[-4:]] == [
        ["'clusters 2024-03'"],
        ["'items 2024-03'"],
        ["'stories 2024-03'"],
        ["'index'"],
    ]
    assert all(e.status == 200 for e in fake.log)


def test_a_day_over_2mb_is_split_into_requests_under_2mb(fake):
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 50), now=NOW)
    big = day_tables(A, 6000, pad=80)  # "±" is 6 bytes of JSON: ~800 bytes an item row, ~5 MB for the day
    fake.log.clear()
    export.write_google_sheet(spreadsheet(fake), A, big, now=NOW)
    items_writes = [e for e in fake.requests_to("POST", "values:batchUpdate") if "items" in e.body["data"][0]["range"]]
    assert len(items_writes) >= 3
    assert all(e.size < 2_000_000 for e in fake.log)
    assert sum(e.size for e in items_writes) > 4_000_000
    # Every row landed once, in order, under the header; the next day's rows follow.
    assert fake.values(KEY, "items 2024-03") == [TABS_ITEMS, *stored(big["items"], day_tables(B, 50)["items"])]
    # The rows moved down, so the chunks went bottom-up.
    starts = [int(e.body["data"][0]["range"].split("!A")[1].split(":")[0]) for e in items_writes]
    assert starts == sorted(starts, reverse=True) and starts[-1] == 2


@pytest.mark.parametrize("first,again", [(3, 40), (40, 3)], ids=["day-grows", "day-shrinks"])
def test_a_split_write_that_fails_halfway_keeps_every_other_day(fake, first, again):
    for day, n in [(A, first), (B, 30), (C, 30)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    others = {tuple(row) for row in fake.values(KEY, "items 2024-03")[1:] if row[0] != A}
    # The second chunk of the items tab fails for good: the tab holds a mix of old and new rows.
    fake.inject(
        method="POST", path="values:batchUpdate", body_contains="'items 2024-03'", times=1
    )  # the first chunk goes through
    fake.inject(
        503, method="POST", path="values:batchUpdate", body_contains="'items 2024-03'", times=2
    )  # the second: both attempts fail
    with pytest.raises(
        sheets.SheetsUnavailable, match=r"values\.batchUpdate of 'items 2024-03'!A\d+:K\d+ failed 2 times"
    ) as caught:
        export.write_google_sheet(
            retrying(fake, max_attempts=2), A, day_tables(A, again), now=NOW, max_request_bytes=4000
        )
    assert "may hold a mix of 2024-03-01's old and new rows" in str(caught.value) and "Re-run 2024-03-01" in str(
        caught.value
    )
    assert others <= {tuple(row) for row in fake.values(KEY, "items 2024-03")[1:]}
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, again), now=NOW, max_request_bytes=4000)
    assert fake.values(KEY, "items 2024-03") == [
        TABS_ITEMS,
        *stored(*(day_tables(d, n)["items"] for d, n in [(A, again), (B, 30), (C, 30)])),
    ]


def test_rows_past_the_new_end_are_blanked_when_the_shrink_fails(fake):
    for day, n in [(A, 6), (B, 4)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    fake.inject(
        503, method="POST", path=f"{KEY}:batchUpdate", times=2
    )  # the only grid request of a shorter rewrite: the shrink
    with pytest.raises(
        sheets.SheetsUnavailable, match=r"spreadsheets\.batchUpdate \(updateSheetProperties\) failed 2 times"
    ):
        export.write_google_sheet(retrying(fake, max_attempts=2), A, day_tables(A, 2), now=NOW)
    expected = [TABS_ITEMS, *stored(day_tables(A, 2)["items"], day_tables(B, 4)["items"])]
    assert fake.values(KEY, "items 2024-03") == expected  # values are right; only the grid is too tall
    assert fake.sheet(KEY, "items 2024-03").rows > len(expected)
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 4), now=NOW)  # no stale copy of B comes back
    assert fake.values(KEY, "items 2024-03") == expected and fake.sheet(KEY, "items 2024-03").rows == len(expected)


def test_a_day_past_the_cell_limit_writes_nothing_and_says_what_to_do(fake):
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 5), now=NOW)
    before = tab_values(fake)
    fake.log.clear()
    # Sheet1 is 1000 x 26 = 26,000 cells; March's tabs and the index 158 more (clusters 3 x 14, items 6 x 11,
    # stories 2 x 7, index 4 x 9); April's tabs (42 + 66 + 14) and 3 index rows (27) would take it to 26,307.
    with pytest.raises(
        export.SheetsFull, match=r"26,307 cells, over Google's limit of 26,300.*NEWSLETTER_SPREADSHEET_KEY"
    ):
        export.write_google_sheet(spreadsheet(fake), APRIL, day_tables(APRIL, 5), now=NOW, max_cells=26_300)
    assert tab_values(fake) == before
    assert all(e.method == "GET" for e in fake.log)


# --- retries -----------------------------------------------------------------------------------------------


def _three_exports(sheet_factory) -> None:
    for day, n in [(A, 6), (B, 4), (A, 3), (APRIL, 2)]:
        export.write_google_sheet(sheet_factory(), day, day_tables(day, n), now=NOW)


FAULTS = {
    "429s on writes": dict(status=429, method="POST", path="values:batchUpdate", times=5),
    "500 on reads": dict(status=500, method="GET", path="values:batchGet", times=3),
    "503 on grid changes": dict(status=503, method="POST", path=f"{KEY}:batchUpdate", times=3),
    "timeouts before the server": dict(
        raises=requests.exceptions.ReadTimeout("read timed out"), method="POST", times=5
    ),
    "timeouts after the server wrote": dict(
        raises=requests.exceptions.ReadTimeout, applied=True, method="POST", path="values:batchUpdate", times=4
    ),
    "a lost answer to addSheet": dict(
        raises=requests.exceptions.ReadTimeout, applied=True, method="POST", path=f"{KEY}:batchUpdate", times=1
    ),
    "connection errors": dict(raises=requests.exceptions.ConnectionError("connection reset"), method="GET", times=4),
    "502 on opening": dict(status=502, method="GET", path=KEY, times=2),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_with_transient_faults_the_sheet_equals_the_fault_free_one(fault):
    clean = FakeSheets()
    clean.create_spreadsheet(KEY)
    _three_exports(lambda: spreadsheet(clean))

    faulty, slept = FakeSheets(), []
    faulty.create_spreadsheet(KEY)
    faulty.inject(**FAULTS[fault])
    _three_exports(lambda: retrying(faulty, slept))

    assert tab_values(faulty) == tab_values(clean)
    assert not faulty.faults  # every fault was met
    assert 1 <= len(slept) and all(0 <= s <= retry_policy().max_delay for s in slept)
    failed = [e for e in faulty.log if e.error or e.status == 429 or e.status >= 500]
    assert len(failed) == FAULTS[fault]["times"] == len(slept)  # each transient failure cost one (recorded) sleep


def test_a_permanent_503_gives_up_after_max_attempts_and_keeps_other_days(fake):
    for day, n in [(A, 5), (B, 4)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    before, slept = tab_values(fake), []
    fake.inject(503, method="POST", path="values:batchUpdate", times=1000)
    fake.log.clear()
    with pytest.raises(sheets.SheetsUnavailable) as caught:
        export.write_google_sheet(retrying(fake, slept, max_attempts=4), A, day_tables(A, 7), now=NOW)
    message = str(caught.value)
    assert (
        "values.batchUpdate of 'clusters 2024-03'!A" in message
        and "failed 4 times" in message
        and "HTTP 503" in message
    )
    assert caught.value.status == 503 and caught.value.attempts == 4
    assert len(fake.requests_to("POST", "values:batchUpdate")) == 4 and len(slept) == 3
    # Only the grids grew; every value, other days' included, is as it was.
    assert {t: v for t, (_, _, v) in tab_values(fake).items()} == {t: v for t, (_, _, v) in before.items()}
    fake.faults.clear()
    export.write_google_sheet(retrying(fake), A, day_tables(A, 7), now=NOW)
    assert [row[0] for row in fake.values(KEY, "items 2024-03")[1:]] == [A] * 7 + [B] * 4


def test_permanent_timeouts_give_up_with_the_operation_named(fake):
    fake.inject(raises=requests.exceptions.ConnectTimeout("connect timed out"), method="GET", times=1000)
    with pytest.raises(
        sheets.SheetsUnavailable,
        match=r"spreadsheets\.get failed 3 times \(answers: ConnectTimeout, ConnectTimeout, ConnectTimeout\)",
    ):
        retrying(fake, max_attempts=3)
    assert len(fake.log) == 3


def test_client_errors_are_not_retried(fake):
    slept = []
    fake.inject(400, method="POST", path="values:batchUpdate", times=1)
    with pytest.raises(gspread.exceptions.APIError) as caught:
        export.write_google_sheet(retrying(fake, slept), A, day_tables(A, 3), now=NOW)
    assert caught.value.code == 400 and slept == [] and len(fake.requests_to("POST", "values:batchUpdate")) == 1


def test_every_request_has_the_timeout(fake):
    export.write_google_sheet(retrying(fake, timeout=12.5), A, day_tables(A, 3), now=NOW)
    assert {e.timeout for e in fake.log} == {12.5}


def test_backoff_is_bounded_jittered_and_exponential():
    import random

    policy = retry_policy(base_delay=1.0, max_delay=10.0, random=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        draws = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws) and max(draws) > 0.8 * ceiling and len(set(draws)) > 100
    assert policy.delay(1, retry_after=5) >= 5 and policy.delay(1, retry_after=500) == 10.0
    with pytest.raises(sheets.SheetsConfigError, match="max_attempts >= 1"):
        retry_policy(max_attempts=0)


# --- the resource: configuration and credentials ----------------------------------------------------------


@pytest.fixture
def on_fake(fake, monkeypatch):
    """SheetsResource's gspread client talks to the fake; credentials are still loaded and checked for real."""
    given = []
    monkeypatch.setattr(sheets, "authorized_client", lambda credentials: given.append(credentials) or make_client(fake))
    return given


def test_resource_writes_through_gspread_with_timeout_and_retries(fake, on_fake, service_account_key):
    fake.inject(429, method="POST", path="values:batchUpdate", times=2)
    fake.inject(raises=requests.exceptions.ReadTimeout, method="GET", path="values:batchGet", times=1)
    resource = SheetsResource(
        spreadsheet_key=KEY, service_account_json=json.dumps(service_account_key), base_delay_seconds=0
    )
    assert resource.write(A, day_tables(A, 5)) == {"clusters 2024-03": 2, "items 2024-03": 5, "stories 2024-03": 1}
    assert resource.write(B, day_tables(B, 4)) == {"clusters 2024-03": 4, "items 2024-03": 9, "stories 2024-03": 1}
    assert [c.service_account_email for c in on_fake] == [service_account_key["client_email"]] * 2
    assert on_fake[0].scopes == sheets.SCOPES
    assert {entry.timeout for entry in fake.log} == {60}  # never the default of waiting forever
    assert [row[0] for row in fake.values(KEY, "items 2024-03")[1:]] == [A] * 5 + [B] * 4


def test_resource_reads_a_key_file(fake, on_fake, service_account_key, tmp_path):
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account_key))
    resource = SheetsResource(spreadsheet_key=KEY, service_account_file=str(path))
    assert resource.validate(connect=True) == f"Google Sheets spreadsheet {KEY}"
    assert len(fake.log) == 1  # validate(connect=True) opened the spreadsheet, nothing more


def test_resource_without_credentials_says_which_to_set():
    with pytest.raises(ValueError, match="GOOGLE_SERVICE_ACCOUNT_FILE") as caught:
        SheetsResource(spreadsheet_key="k").write(A, day_tables(A, 3))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)


def test_credentials_without_a_key_say_to_set_the_key(service_account_key, tmp_path):
    resource = SheetsResource(
        workbook_path=str(tmp_path / "book.xlsx"), service_account_json=json.dumps(service_account_key)
    )
    with pytest.raises(sheets.SheetsConfigError, match="NEWSLETTER_SPREADSHEET_KEY is not"):
        resource.validate()
    with pytest.raises(sheets.SheetsConfigError):
        resource.write(A, day_tables(A, 3))
    assert not (tmp_path / "book.xlsx").exists()


def test_a_url_is_not_a_key(service_account_key):
    resource = SheetsResource(
        spreadsheet_key=f"https://docs.google.com/spreadsheets/d/{KEY}/edit",
        service_account_json=json.dumps(service_account_key),
    )
    with pytest.raises(
        sheets.SheetsConfigError, match="NEWSLETTER_SPREADSHEET_KEY must be the spreadsheet's key alone"
    ):
        resource.validate()


def test_a_missing_key_file_is_named(tmp_path):
    with pytest.raises(
        sheets.SheetsConfigError,
        match=r"GOOGLE_SERVICE_ACCOUNT_FILE names .*nowhere\.json, which is not a readable file",
    ):
        SheetsResource(spreadsheet_key=KEY, service_account_file=str(tmp_path / "nowhere.json")).validate()


def test_workbook_mode_needs_nothing(tmp_path):
    assert SheetsResource(workbook_path=str(tmp_path / "b.xlsx")).validate(connect=True).startswith("workbook ")


def _bad_keys(key: dict) -> dict[str, str]:
    return {
        "not JSON": f"-----BEGIN PRIVATE KEY-----{SECRET}",
        "not an object": json.dumps([SECRET]),
        "fields missing": json.dumps({"type": "service_account", "private_key": SECRET}),
        "not a service account": json.dumps(
            {"type": "authorized_user", "client_secret": SECRET, "refresh_token": SECRET}
        ),
        "malformed private key": json.dumps(
            key | {"private_key": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"}
        ),
    }


@pytest.mark.parametrize(
    "case", ["not JSON", "not an object", "fields missing", "not a service account", "malformed private key"]
)
@pytest.mark.parametrize("where", ["json", "file"])
def test_resource_never_echoes_the_secret(case, where, service_account_key, tmp_path):
    secret = _bad_keys(service_account_key)[case]
    if where == "json":
        resource, var = SheetsResource(spreadsheet_key="k", service_account_json=secret), "GOOGLE_SERVICE_ACCOUNT_JSON"
    else:
        (tmp_path / "sa.json").write_text(secret)
        resource, var = (
            SheetsResource(spreadsheet_key="k", service_account_file=str(tmp_path / "sa.json")),
            "GOOGLE_SERVICE_ACCOUNT_FILE",
        )
    with pytest.raises(sheets.SheetsConfigError) as caught:
        resource.write(A, day_tables(A, 3))
    assert var in str(caught.value)
    assert SECRET not in str(caught.value)
    assert (
        caught.value.__cause__ is None and caught.value.__context__ is None
    )  # no exception that saw the key rides along


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_secrets_stay_out_of_errors_logs_and_metadata(fake, on_fake, service_account_key, monkeypatch):
    key_json = json.dumps(service_account_key)
    body = service_account_key["private_key"].splitlines()[5]  # a line of the key material
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", key_json)
    monkeypatch.setenv("NEWSLETTER_SPREADSHEET_KEY", KEY)
    monkeypatch.setenv("NEWSLETTER_SHEETS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("NEWSLETTER_SHEETS_BASE_DELAY", "0")
    resource = resources_from_env()["sheets"]
    records, root = _Records(), logging.getLogger()
    root.addHandler(records)
    old_level, root.level = root.level, logging.DEBUG
    try:
        fake.inject(503, method="POST", times=1000)

        @dg.asset
        def export_day(sheet: SheetsResource):
            sheet.write(A, day_tables(A, 3))

        result = dg.materialize([export_day], resources={"sheet": resource}, raise_on_error=False)
    finally:
        root.removeHandler(records)
        root.level = old_level
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "values.batchUpdate" in failure.to_string() or "spreadsheets.batchUpdate" in failure.to_string()
    assert "HTTP 503" in failure.to_string()
    text = "\n".join([failure.to_string(), *records.lines, *(str(e) for e in result.all_events)])
    assert body not in text and service_account_key["private_key_id"] not in text and key_json not in text
    # The configuration Dagster records names the variable, never its value.
    assert (
        isinstance(resource.service_account_json, dg.EnvVar)
        and resource.service_account_json == "GOOGLE_SERVICE_ACCOUNT_JSON"
    )


@pytest.mark.parametrize(
    "answer,expected",
    [
        ({"status": 404, "method": "GET"}, "no spreadsheet 1FakeSpreadsheetKey is visible to the service account"),
        ({"status": 403, "method": "GET"}, "may not open spreadsheet"),
        (
            {"raises": google.auth.exceptions.RefreshError("invalid_grant: Invalid JWT Signature."), "method": "GET"},
            "Google refused the service-account key",
        ),
    ],
)
def test_wrong_key_or_sharing_is_a_clear_error_at_start(fake, on_fake, service_account_key, answer, expected):
    fake.inject(**answer)
    resource = SheetsResource(spreadsheet_key=KEY, service_account_json=json.dumps(service_account_key))
    with pytest.raises(sheets.SheetsConfigError, match=expected) as caught:
        resource.validate(connect=True)
    assert "share the spreadsheet" in str(caught.value) or "GOOGLE_SERVICE_ACCOUNT" in str(caught.value)
    assert service_account_key["private_key"][40:80] not in str(caught.value)


def test_resources_from_env_reads_the_sheet_settings(tmp_path):
    env = {
        "NEWSLETTER_DATA_DIR": str(tmp_path),
        "NEWSLETTER_SPREADSHEET_KEY": KEY,
        "GOOGLE_SERVICE_ACCOUNT_FILE": "/secrets/sa.json",
        "NEWSLETTER_SHEETS_MAX_ATTEMPTS": "3",
        "NEWSLETTER_SHEETS_BASE_DELAY": "0.5",
        "NEWSLETTER_SHEETS_MAX_DELAY": "8",
        "NEWSLETTER_SHEETS_TIMEOUT": "20",
    }
    resource = resources_from_env(env)["sheets"]
    assert isinstance(resource.service_account_file, dg.EnvVar)  # the variable's name, resolved at run time
    assert resource.service_account_json is None
    assert (
        resource.max_attempts,
        resource.base_delay_seconds,
        resource.max_delay_seconds,
        resource.request_timeout_seconds,
    ) == (3, 0.5, 8.0, 20.0)
    defaults = SheetsResource()
    assert (
        defaults.max_attempts,
        defaults.base_delay_seconds,
        defaults.max_delay_seconds,
        defaults.request_timeout_seconds,
    ) == (6, 2.0, 32.0, 60.0)


# --- the fake itself -------------------------------------------------------------------------------------


def test_the_fake_answers_like_the_api(fake):
    client = make_client(fake)
    with pytest.raises(gspread.SpreadsheetNotFound):
        client.open_by_key("no-such-key")
    sheet = client.open_by_key(KEY).add_worksheet("small", rows=2, cols=2)
    with pytest.raises(gspread.exceptions.APIError, match="exceeds grid limits") as caught:
        sheet.update([[1, 2, 3]], "A1", value_input_option="RAW")
    assert caught.value.code == 400
    sheet.update([[1, 2.5], [True, "=1+1"]], "A1", value_input_option="RAW")
    assert sheet.get_all_values() == [["1", "2.5"], ["TRUE", "=1+1"]]  # formatted text; RAW keeps formulas as text
    assert sheet.get_all_values(value_render_option="UNFORMATTED_VALUE") == [[1, 2.5], [True, "=1+1"]]
    sheet.resize(rows=1, cols=1)
    assert fake.values(KEY, "small") == [[1]]  # shrinking drops cells outside the grid
    sheet.clear()
    assert sheet.get_all_values() == [[]]
    with pytest.raises(gspread.exceptions.APIError) as caught:
        client.list_spreadsheet_files()  # Drive is not modelled: it fails instead of reaching the network
    assert caught.value.code == 404
    fake.inject(503, method="GET")
    with pytest.raises(gspread.exceptions.APIError) as caught:
        client.open_by_key(KEY)
    assert caught.value.code == 503 and fake.log[-1].status == 503
    assert ("PUT", f"/v4/spreadsheets/{KEY}/values/'small'!A1") in [(e.method, e.path) for e in fake.log]


def test_the_fake_refuses_a_cell_over_50000_characters(fake):
    sheet = make_client(fake).open_by_key(KEY).add_worksheet("t", rows=2, cols=2)
    sheet.update([["a" * 50_000, "🌀" * 25_000]], "A1", value_input_option="RAW")  # at the limit (UTF-16 code units)
    for too_long in ("a" * 50_001, "🌀" * 25_000 + "a"):
        with pytest.raises(
            gspread.exceptions.APIError, match="more than the maximum of 50000 characters in a single cell"
        ) as caught:
            sheet.update([["kept?", too_long]], "A2", value_input_option="RAW")
        assert caught.value.code == 400
    assert fake.values(KEY, "t") == [["a" * 50_000, "🌀" * 25_000]]  # the refused request changed nothing


def test_the_fake_batches_values_all_or_nothing(fake):
    book = make_client(fake).open_by_key(KEY)
    book.add_worksheet("t", rows=3, cols=2)
    answer = book.values_batch_update(
        {
            "valueInputOption": "RAW",
            "data": [
                {"range": "'t'!A1:B1", "values": [["a", 1]]},
                {"range": "'t'!A3:B3", "majorDimension": "ROWS", "values": [["c", 3.5]]},
            ],
        }
    )
    assert answer["totalUpdatedCells"] == 4 and answer["totalUpdatedSheets"] == 1
    assert book.values_batch_get(["'t'", "Sheet1!A1:B2"], params={"valueRenderOption": "UNFORMATTED_VALUE"})[
        "valueRanges"
    ] == [
        {"range": "t!A1:B3", "majorDimension": "ROWS", "values": [["a", 1], [], ["c", 3.5]]},
        {"range": "Sheet1!A1:B2", "majorDimension": "ROWS"},
    ]
    with pytest.raises(gspread.exceptions.APIError, match="exceeds grid limits"):
        book.values_batch_update(
            {
                "valueInputOption": "RAW",
                "data": [
                    {"range": "'t'!A1:B1", "values": [["changed", 2]]},
                    {"range": "'t'!A4:B4", "values": [["x", 1]]},
                ],
            }
        )
    assert fake.values(KEY, "t") == [["a", 1], [], ["c", 3.5]]  # the valid range was not applied either
    with pytest.raises(gspread.exceptions.APIError, match="valueInputOption"):
        book.values_batch_update({"data": [{"range": "'t'!A1", "values": [["x"]]}]})


def test_the_fake_raises_transport_errors_before_or_after_serving(fake):
    book = make_client(fake).open_by_key(KEY)
    book.add_worksheet("t", rows=2, cols=2)
    fake.inject(raises=requests.exceptions.ReadTimeout, method="POST", path="values:batchUpdate")
    with pytest.raises(requests.exceptions.ReadTimeout):
        book.values_batch_update({"valueInputOption": "RAW", "data": [{"range": "'t'!A1", "values": [["lost"]]}]})
    assert fake.values(KEY, "t") == [] and fake.log[-1].status == 0 and fake.log[-1].error == "ReadTimeout"
    fake.inject(raises=requests.exceptions.ReadTimeout, applied=True, method="POST", path="values:batchUpdate")
    with pytest.raises(requests.exceptions.ReadTimeout):
        book.values_batch_update({"valueInputOption": "RAW", "data": [{"range": "'t'!A1", "values": [["kept"]]}]})
    assert fake.values(KEY, "t") == [["kept"]] and fake.log[-1].status == 200 and fake.log[-1].size > 0
    with pytest.raises(gspread.exceptions.APIError, match="payload size exceeds"):
        book.values_batch_update(
            {"valueInputOption": "RAW", "data": [{"range": "'t'!A1", "values": [["x" * 11_000_000]]}]}
        )


# Failures and round trips that once lost or changed data.


def test_other_days_numbers_stay_numbers(fake):
    for day in (A, B):
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, 5), now=NOW)
    day_a = [row for row in fake.values(KEY, "items 2024-03")[1:] if row[0] == A]
    assert all(isinstance(row[TABS_ITEMS.index("cluster_id")], int) for row in day_a)


def test_export_recovers_from_a_failed_first_write(fake):
    fake.inject(503, method="POST", path="values:batchUpdate")
    with pytest.raises(gspread.exceptions.APIError):
        export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 3), now=NOW)
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 3), now=NOW)
    assert spreadsheet(fake).worksheet("clusters 2024-03").get_all_values() == [
        export.TABS["clusters"],
        *shown(day_tables(A, 3)["clusters"]),
    ]


def test_a_failed_rewrite_keeps_other_days(fake):
    for day, n in [(A, 5), (B, 5)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n), now=NOW)
    fake.inject(503, method="POST", path="values:batchUpdate")
    with pytest.raises(gspread.exceptions.APIError):
        export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 2), now=NOW)
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 2), now=NOW)
    assert spreadsheet(fake).worksheet("clusters 2024-03").get_all_values()[-2:] == shown(day_tables(B, 5)["clusters"])


def test_a_tab_with_another_header_is_not_overwritten(fake):
    book = spreadsheet(fake)
    book.add_worksheet("items 2024-03", rows=2, cols=2).update(
        [["day", "something else"]], "A1", value_input_option="RAW"
    )
    fake.log.clear()
    with pytest.raises(ValueError, match="tab 'items 2024-03': header row .* differs from the layout v4 header"):
        export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 3), now=NOW)
    assert fake.values(KEY, "items 2024-03") == [["day", "something else"]]
    assert all(e.method == "GET" for e in fake.log)


def test_a_v2_clusters_tab_is_upgraded_in_place(fake):
    # What layout v2 left: the clusters tab of March without story columns, and one of February.
    v2 = export.PREVIOUS_HEADERS["clusters"][0]
    book = spreadsheet(fake)
    old_rows = [v2, *[row[: len(v2)] for row in export.table_rows(day_tables(A, 5)["clusters"])]]
    for title in ("clusters 2024-03", "clusters 2024-02"):
        book.add_worksheet(title, rows=len(old_rows), cols=len(v2)).update(old_rows, "A1", value_input_option="RAW")
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 4), now=NOW)
    # March: v4 header, A's rows keep every value under its name with blank story columns, then B's rows.
    expected = [
        export.TABS["clusters"],
        *stored(day_tables(A, 5)["clusters"].assign(**dict.fromkeys(export.SHEET_STORY_COLUMNS, ""))),
        *stored(day_tables(B, 4)["clusters"]),
    ]
    assert fake.values(KEY, "clusters 2024-03") == expected
    assert (fake.sheet(KEY, "clusters 2024-03").rows, fake.sheet(KEY, "clusters 2024-03").cols) == (
        len(expected),
        len(export.TABS["clusters"]),
    )
    # February was not written: still v2.
    assert fake.values(KEY, "clusters 2024-02")[0] == v2
    # A tab whose header is neither v4's nor v2's still stops the export.
    spreadsheet(fake).worksheet("clusters 2024-02").update([["headline"]], "D1", value_input_option="RAW")  # was: title
    with pytest.raises(ValueError, match="tab 'clusters 2024-02': header row .* differs from the layout v4 header"):
        export.write_google_sheet(spreadsheet(fake), FEBRUARY, day_tables(FEBRUARY, 3), now=NOW)


def test_a_v3_items_tab_gains_the_story_column_in_place(fake):
    # What layout v3 left: March's items tab without story_id (Sheets leaves out the rows' trailing empty cells).
    v3 = export.PREVIOUS_HEADERS["items"][0]
    old_rows = [v3, *[row[: len(v3)] for row in export.table_rows(day_tables(A, 5)["items"])]]
    spreadsheet(fake).add_worksheet("items 2024-03", rows=len(old_rows), cols=len(v3)).update(
        old_rows, "A1", value_input_option="RAW"
    )
    export.write_google_sheet(spreadsheet(fake), B, day_tables(B, 4), now=NOW)
    # v4 header; A's rows keep every value under its name with a blank story_id, then B's rows with their stories.
    expected = [TABS_ITEMS, *stored(day_tables(A, 5)["items"].assign(story_id=""), day_tables(B, 4)["items"])]
    assert fake.values(KEY, "items 2024-03") == expected
    # The story_id cells: blank for A's rows and for B's noise item (trailing empty cells, left out), set for B's others.
    assert [row[len(v3) :] for row in expected[1:]] == [[]] * 5 + [["2024-02-28#0"]] * 2 + [["2024-02-28#1"], []]
    assert (fake.sheet(KEY, "items 2024-03").rows, fake.sheet(KEY, "items 2024-03").cols) == (
        len(expected),
        len(TABS_ITEMS),
    )
    # The month gains its stories tab, in its place after items.
    assert [s.title for s in fake.books[KEY].sheets] == ["Sheet1", "index", *MARCH_TABS]
    assert fake.values(KEY, "stories 2024-03") == [export.TABS["stories"], *stored(day_tables(B, 4)["stories"])]


def test_workbook_keeps_a_leading_equals_sign_as_text(tmp_path):
    export.write_workbook(
        tmp_path / "clusters.xlsx", A, day_tables(A, 3, headline='=HYPERLINK("https://evil.example")')
    )
    book = load_workbook(tmp_path / "clusters.xlsx")
    assert book["items 2024-03"].cell(row=2, column=TABS_ITEMS.index("headline") + 1).data_type == "s"
    # The headline is also the title of its story.
    title = book["stories 2024-03"].cell(row=2, column=export.TABS["stories"].index("title") + 1)
    assert title.value == '=HYPERLINK("https://evil.example")' and title.data_type == "s"
