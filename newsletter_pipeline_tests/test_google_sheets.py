"""The Google Sheets export, run through gspread's real client against an in-memory Sheets API."""

from __future__ import annotations

import gspread
import pandas as pd
import pytest
from openpyxl import load_workbook

from newsletter_pipeline.defs.resources import SheetsResource
from newsletter_pipeline.stages import export
from newsletter_pipeline.stages.cluster import NOISE
from newsletter_pipeline.stages.label import SUMMARY_COLUMNS
from newsletter_pipeline.stages.parse import ITEM_COLUMNS
from newsletter_pipeline_tests.sheets_fake import FakeSheets, formatted, make_client

KEY = "1FakeSpreadsheetKey"
A, B, C = "2024-03-01", "2024-03-02", "2024-03-03"
TABS_ITEMS = export.TABS["items"]
# Probabilities that render differently as Python text and as sheet text (1.0 -> "1"), and one that export rounds.
PROBABILITIES = [1.0, 0.8765, 0.123456, 0.5, 0.75, 0.9]


def day_tables(day: str, n: int, headline: str | None = None) -> dict[str, pd.DataFrame]:
    """n items of `day` spread over clusters 0 and 1; the last one is noise."""
    published = pd.Timestamp(f"{day}T06:00:00", tz="UTC")
    items = pd.DataFrame({
        "item_id": [f"{day}-{i}" for i in range(n)],
        "source_id": [f"s{i}" if i % 3 else None for i in range(n)],  # a missing id is an empty cell
        "published_at": [published + pd.Timedelta(minutes=7 * i) for i in range(n)],
        "day": day,
        "source": [("Morning Brief", "Tech Digest")[i % 2] for i in range(n)],
        "headline": [headline if headline and i == 0 else f"Headline {i} of {day}, naïve café" for i in range(n)],
        "short_description": "",
        "link": [f"https://example.com/{day}/{i}" if i != 1 else None for i in range(n)],  # link is the last column: a trailing empty cell
        "authors": "",
        "category": "news",
        "origin": [f"brief.jsonl:{i + 1}" for i in range(n)],
    })[ITEM_COLUMNS]
    clusters = [i % 2 if i < n - 1 else NOISE for i in range(n)]
    assignments = pd.DataFrame({"item_id": items["item_id"], "cluster_id": clusters,
                                "probability": [0.0 if c == NOISE else PROBABILITIES[i] for i, c in enumerate(clusters)]})
    summaries = []
    for c in sorted(set(clusters) - {NOISE}):
        members = items[[k == c for k in clusters]]
        sources = sorted(set(members["source"]))
        summaries.append({"cluster_id": c, "label": f"topic {c}", "title": members["headline"].iloc[0], "keywords": f"topic {c}, news",
                          "size": len(members), "n_sources": len(sources), "sources": ", ".join(sources),
                          "top_headlines": "\n".join(members["headline"]), "top_links": "\n".join(members["link"].fillna(""))})
    summaries = pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)
    return export.sheet_tables(day, items, assignments, summaries)


def shown(table: pd.DataFrame) -> list[list[str]]:
    """A table's rows as values.get returns them by default: formatted text."""
    return [[formatted(v) for v in row] for row in export.table_rows(table)]


def spreadsheet(fake: FakeSheets) -> gspread.Spreadsheet:
    return make_client(fake).open_by_key(KEY)


@pytest.fixture
def fake() -> FakeSheets:
    fake = FakeSheets()
    fake.create_spreadsheet(KEY, "Newsletter clusters")
    return fake


@pytest.mark.parametrize("order", [(A, B), (B, A)], ids=["A-then-B", "B-then-A"])
def test_days_share_each_tab_under_the_header(fake, order):
    written = {A: day_tables(A, 5), B: day_tables(B, 4)}
    for day in order:
        totals = export.write_google_sheet(spreadsheet(fake), day, written[day])
    sheet = spreadsheet(fake)
    for tab, header in export.TABS.items():
        rows = [header, *shown(written[A][tab]), *shown(written[B][tab])]  # days in order, whatever the write order
        assert sheet.worksheet(tab).get_all_values() == rows
        assert totals[tab] == len(rows) - 1
        assert (fake.sheet(KEY, tab).rows, fake.sheet(KEY, tab).cols) == (len(rows), len(header))
    assert [w.title for w in sheet.worksheets()] == ["Sheet1", "clusters", "items"]  # other tabs are left alone


def test_rewriting_a_day_with_fewer_rows_replaces_them(fake):
    for day, n in [(A, 6), (B, 4), (A, 2)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n))
    sheet = spreadsheet(fake)
    for tab, header in export.TABS.items():
        rows = [header, *shown(day_tables(A, 2)[tab]), *shown(day_tables(B, 4)[tab])]
        assert sheet.worksheet(tab).get_all_values() == rows
        # The grid shrank with the rows: nothing stale is left below them.
        assert fake.sheet(KEY, tab).rows == len(rows)
        assert len(fake.values(KEY, tab)) == len(rows)


def test_google_sheet_and_workbook_share_one_layout(fake, tmp_path):
    workbook = tmp_path / "clusters.xlsx"
    for day, n in [(B, 4), (A, 6), (A, 3)]:
        tables = day_tables(day, n)
        assert export.write_google_sheet(spreadsheet(fake), day, tables) == export.write_workbook(workbook, day, tables)
    book, sheet = export.read_workbook(workbook), spreadsheet(fake)
    assert list(book) == list(export.TABS)
    for tab in export.TABS:
        assert sheet.worksheet(tab).get_all_values() == [[formatted(v) for v in row] for row in book[tab]]


def test_a_first_export_costs_a_handful_of_requests(fake):
    # Sheets allows 60 write requests a minute per user; a day's export must stay well inside that.
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 5))
    assert len(fake.log) <= 1 + 4 * len(export.TABS)
    assert all(entry.status == 200 for entry in fake.log)


def test_resource_without_credentials_says_which_to_set():
    with pytest.raises(ValueError, match="GOOGLE_SERVICE_ACCOUNT_FILE") as caught:
        SheetsResource(spreadsheet_key="k").write(A, day_tables(A, 3))
    assert "GOOGLE_SERVICE_ACCOUNT_JSON" in str(caught.value)


@pytest.mark.parametrize("secret", [
    "-----BEGIN PRIVATE KEY-----s3cr3tK3yMaterial",  # not JSON
    '{"type": "service_account", "private_key": "s3cr3tK3yMaterial"}',  # JSON, but not a usable key
])
def test_resource_never_echoes_the_secret(secret):
    with pytest.raises(ValueError) as caught:
        SheetsResource(spreadsheet_key="k", service_account_json=secret).write(A, day_tables(A, 3))
    assert "s3cr3tK3yMaterial" not in str(caught.value)
    assert "s3cr3tK3yMaterial" not in str(caught.value.__cause__ or "")


def test_resource_writes_through_gspread_with_a_timeout(fake, monkeypatch):
    given = []
    monkeypatch.setattr(gspread, "service_account_from_dict", lambda info: given.append(info) or make_client(fake))
    resource = SheetsResource(spreadsheet_key=KEY, service_account_json='{"type": "service_account"}')
    assert resource.write(A, day_tables(A, 5)) == {"clusters": 2, "items": 5}
    assert given == [{"type": "service_account"}]
    assert {entry.timeout for entry in fake.log} == {60}  # never the default of waiting forever


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


# Failures and round trips that once lost or changed data.

def test_other_days_numbers_stay_numbers(fake):
    for day in (A, B):
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, 5))
    day_a = [row for row in fake.values(KEY, "items")[1:] if row[0] == A]
    assert all(isinstance(row[TABS_ITEMS.index("cluster_id")], int) for row in day_a)


def test_export_recovers_from_a_failed_first_write(fake):
    fake.inject(503, method="PUT")
    with pytest.raises(gspread.exceptions.APIError):
        export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 3))
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 3))
    assert spreadsheet(fake).worksheet("clusters").get_all_values() == [export.TABS["clusters"], *shown(day_tables(A, 3)["clusters"])]


def test_a_failed_rewrite_keeps_other_days(fake):
    for day, n in [(A, 5), (B, 5)]:
        export.write_google_sheet(spreadsheet(fake), day, day_tables(day, n))
    fake.inject(503, method="PUT")
    with pytest.raises(gspread.exceptions.APIError):
        export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 2))
    export.write_google_sheet(spreadsheet(fake), A, day_tables(A, 2))
    assert spreadsheet(fake).worksheet("clusters").get_all_values()[-2:] == shown(day_tables(B, 5)["clusters"])


def test_workbook_keeps_a_leading_equals_sign_as_text(tmp_path):
    export.write_workbook(tmp_path / "clusters.xlsx", A, day_tables(A, 3, headline="=HYPERLINK(\"https://evil.example\")"))
    items = load_workbook(tmp_path / "clusters.xlsx")["items"]
    assert items.cell(row=2, column=TABS_ITEMS.index("headline") + 1).data_type == "s"

