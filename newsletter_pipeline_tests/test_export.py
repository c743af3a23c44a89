"""The sheet layout (a contract with sheet readers) and the local workbook sink."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from newsletter_pipeline.stages import export
from newsletter_pipeline.stages.cluster import NOISE

V2_CLUSTERS = ["day", "cluster_id", "label", "title", "keywords", "size", "n_sources", "sources", "top_headlines", "top_links"]


def day_tables(day: str, n_items: int = 3) -> dict[str, pd.DataFrame]:
    ids = [f"{day}-{i}" for i in range(n_items)]
    items = pd.DataFrame({
        "item_id": ids, "source_id": [None] * n_items,
        "published_at": pd.to_datetime([f"{day}T08:00:00Z"] * n_items, utc=True),
        "source": "Morning Brief", "headline": [f"Headline {i}" for i in range(n_items)], "link": [f"https://x.test/{i}" for i in ids],
    })
    assignments = pd.DataFrame({"item_id": ids, "cluster_id": [0] * (n_items - 1) + [NOISE], "probability": [0.9] * (n_items - 1) + [0.0]})
    summaries = pd.DataFrame([{
        "cluster_id": 0, "label": "storm / coast", "title": "Headline 0", "keywords": "storm, coast", "size": n_items - 1,
        "n_sources": 1, "sources": "Morning Brief", "top_headlines": "Headline 0", "top_links": "https://x.test/0",
    }])
    stories = pd.DataFrame([{"cluster_id": 0, "size": n_items - 1, "story_id": "2026-11-02#4", "first_seen": "2026-11-02", "days_active": 3,
                             "trend": "growing"}])
    return export.sheet_tables(day, items, assignments, summaries, stories)


def test_layout_contract_is_pinned():
    # Sheet readers depend on these exact tabs and header rows: change them only with a new LAYOUT_VERSION
    # (and a note of what changed in docs/sheets.md).
    assert export.LAYOUT_VERSION == 3
    assert export.TABS == {
        "clusters": ["day", "cluster_id", "label", "title", "keywords", "size", "n_sources", "sources", "top_headlines", "top_links",
                     "story_id", "first_seen", "days_active", "trend"],
        "items": ["day", "item_id", "source_id", "cluster_id", "cluster_label", "probability", "published_at", "source", "headline", "link"],
    }
    # The one earlier header an export upgrades in place.
    assert export.PREVIOUS_HEADERS == {"clusters": [V2_CLUSTERS]}
    assert export.INDEX_TAB == "index"
    assert export.INDEX_HEADER == ["month", "kind", "tab", "rows", "days", "first_day", "last_day", "updated_at", "layout_version"]
    assert [export.tab_name(kind, "2026-11-16") for kind in export.TABS] == ["clusters 2026-11", "items 2026-11"]


def test_tab_names_and_order():
    assert export.month_of("2026-11-16") == "2026-11" and export.tab_name("items", "2026-12") == "items 2026-12"
    with pytest.raises(ValueError, match="not a YYYY-MM-DD date"):
        export.month_of("16/11/2026")
    titles = ["items 2026-12", "clusters 2027-01", "index", "clusters 2026-12", "Sheet1", "clusters", "items 2026-11"]
    assert sorted((t for t in titles if export.layout_key(t)), key=export.layout_key) == [
        "index", "items 2026-11", "clusters 2026-12", "items 2026-12", "clusters 2027-01"]
    assert export.layout_key("clusters") is None and export.layout_key("Sheet1") is None  # v1 and foreign tabs are not the layout's
    assert export.header_of("index") == export.INDEX_HEADER and export.header_of("items 2027-01") == export.TABS["items"]


def test_sheet_tables_follow_the_layout():
    tables = day_tables("2026-11-16")
    assert {tab: list(t.columns) for tab, t in tables.items()} == export.TABS
    items = tables["items"]
    assert items["cluster_label"].tolist() == ["storm / coast", "storm / coast", export.NOISE_LABEL]
    assert items["published_at"].iloc[0] == "2026-11-16T08:00:00+00:00"
    assert tables["clusters"].iloc[0][export.SHEET_STORY_COLUMNS].tolist() == ["2026-11-02#4", "2026-11-02", 3, "growing"]


def test_story_columns_are_blank_without_stories_and_stale_stories_are_refused():
    items = pd.DataFrame({"item_id": ["a"], "published_at": pd.to_datetime(["2026-11-16T08:00:00Z"], utc=True), "source_id": None,
                          "source": "S", "headline": "H", "link": ""})
    assignments = pd.DataFrame({"item_id": ["a"], "cluster_id": [0], "probability": [1.0]})
    summaries = pd.DataFrame([{"cluster_id": 0, "label": "l", "title": "H", "keywords": "k", "size": 1, "n_sources": 1, "sources": "S",
                               "top_headlines": "H", "top_links": ""}])
    clusters = export.sheet_tables("2026-11-16", items, assignments, summaries)["clusters"]
    assert export.table_rows(clusters)[0][-4:] == ["", "", "", ""]
    # Stories made from another clustering of the day (another size, another cluster) would put wrong ids on the rows.
    story = {"cluster_id": 0, "size": 1, "story_id": "2026-11-16#0", "first_seen": "2026-11-16", "days_active": 1, "trend": "new"}
    for stale in ({**story, "size": 2}, {**story, "cluster_id": 1}):
        with pytest.raises(ValueError, match="re-materialize stories for 2026-11-16"):
            export.sheet_tables("2026-11-16", items, assignments, summaries, pd.DataFrame([stale]))


def test_rerunning_a_day_replaces_its_rows_and_keeps_other_days(tmp_path):
    path = tmp_path / "sheets" / "book.xlsx"
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 4))
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3))
    totals = export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 2))
    book = export.read_workbook(path)
    assert list(book) == ["index", "clusters 2026-11", "items 2026-11"]
    assert [book[tab][0] for tab in book] == [export.INDEX_HEADER, export.TABS["clusters"], export.TABS["items"]]
    item_days = [row[0] for row in book["items 2026-11"][1:]]
    assert item_days == ["2026-11-16"] * 3 + ["2026-11-17"] * 2  # days in order, the re-run day not duplicated
    assert totals == {"clusters 2026-11": 2, "items 2026-11": 5}
    assert book["items 2026-11"][1][1] == "2026-11-16-0"
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []


def test_months_get_their_own_tabs_and_the_index_lists_them(tmp_path):
    path = tmp_path / "book.xlsx"
    first, later = datetime(2026, 11, 17, 6, tzinfo=UTC), datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3), now=first)
    export.write_workbook(path, "2026-12-01", day_tables("2026-12-01", 4), now=later)
    export.write_workbook(path, "2026-11-30", day_tables("2026-11-30", 2), now=later)  # a late day of the earlier month
    book = export.read_workbook(path)
    assert list(book) == ["index", "clusters 2026-11", "items 2026-11", "clusters 2026-12", "items 2026-12"]
    # Every tab starts with its pinned header row.
    assert {tab: rows[0] for tab, rows in book.items()} == {
        "index": export.INDEX_HEADER,
        "clusters 2026-11": export.TABS["clusters"], "items 2026-11": export.TABS["items"],
        "clusters 2026-12": export.TABS["clusters"], "items 2026-12": export.TABS["items"],
    }
    assert book["index"][1:] == [
        ["2026-11", "clusters", "clusters 2026-11", 2, 2, "2026-11-16", "2026-11-30", "2026-12-02T06:30:00Z", 3],
        ["2026-11", "items", "items 2026-11", 5, 2, "2026-11-16", "2026-11-30", "2026-12-02T06:30:00Z", 3],
        ["2026-12", "clusters", "clusters 2026-12", 1, 1, "2026-12-01", "2026-12-01", "2026-12-02T06:30:00Z", 3],
        ["2026-12", "items", "items 2026-12", 4, 1, "2026-12-01", "2026-12-01", "2026-12-02T06:30:00Z", 3],
    ]
    assert [row[0] for row in book["items 2026-12"][1:]] == ["2026-12-01"] * 4
    # Readers that want every day at once join the months.
    joined = export.read_layout(path)
    assert [row[0] for row in joined["items"][1:]] == ["2026-11-16"] * 3 + ["2026-11-30"] * 2 + ["2026-12-01"] * 4
    assert joined["clusters"][0] == export.TABS["clusters"] and len(joined["clusters"]) == 1 + 3


def test_an_empty_day_still_lists_its_month(tmp_path):
    path = tmp_path / "book.xlsx"
    export.write_workbook(path, "2026-11-09", day_tables("2026-11-09", 1), now=datetime(2026, 11, 10, tzinfo=UTC))
    empty = {kind: table.iloc[0:0] for kind, table in day_tables("2026-11-09", 1).items()}
    assert export.write_workbook(path, "2026-11-09", empty, now=datetime(2026, 11, 10, tzinfo=UTC)) == {"clusters 2026-11": 0, "items 2026-11": 0}
    book = export.read_workbook(path)
    assert book["items 2026-11"] == [export.TABS["items"]]
    assert book["index"][1:] == [["2026-11", kind, f"{kind} 2026-11", 0, 0, "", "", "2026-11-10T00:00:00Z", 3] for kind in export.TABS]


def test_a_workbook_with_another_layout_is_not_overwritten(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    book.active.title = "clusters 2026-11"
    book.active.append(["day", "something else"])
    book.save(path)
    with pytest.raises(ValueError, match=r"tab 'clusters 2026-11': header row .* differs from the layout v3 header"):
        export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    assert export.read_workbook(path)["clusters 2026-11"] == [["day", "something else"]]


def test_v1_tabs_are_left_alone(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    book.active.title = "clusters"
    book.active.append(V2_CLUSTERS)
    book.active.append(["2026-11-15", 0, "old"])
    book.save(path)
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    book = export.read_workbook(path)
    assert list(book) == ["clusters", "index", "clusters 2026-11", "items 2026-11"]
    assert book["clusters"] == [V2_CLUSTERS, ["2026-11-15", 0, "old", "", "", "", "", "", "", ""]]


def test_a_v2_month_tab_is_upgraded_in_place(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.title = "clusters 2026-11"
    sheet.append(V2_CLUSTERS)
    old = ["2026-11-15", 0, "old / label", "Old title", "old, label", 4, 2, "A, B", "Old title", "https://x.test/old"]
    sheet.append(old)
    december = book.create_sheet("clusters 2026-12")
    december.append(V2_CLUSTERS)
    december.append(["2026-12-01", *old[1:]])
    book.save(path)
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    book = export.read_workbook(path)
    # The month written gets the v3 header; its other days keep every v2 value by name, with blank story columns.
    assert book["clusters 2026-11"][0] == export.TABS["clusters"]
    assert book["clusters 2026-11"][1] == [*old, "", "", "", ""]
    assert book["clusters 2026-11"][2][-4:] == ["2026-11-02#4", "2026-11-02", 3, "growing"]
    # A month not written keeps its v2 tab until one of its days is exported; readers get both under the v3 header.
    assert book["clusters 2026-12"][0] == V2_CLUSTERS
    joined = export.read_layout(path)["clusters"]
    assert joined[0] == export.TABS["clusters"] and [row[0] for row in joined[1:]] == ["2026-11-15", "2026-11-16", "2026-12-01"]
    assert joined[3] == ["2026-12-01", *old[1:], "", "", "", ""]


def test_upgrading_maps_columns_by_name(monkeypatch):
    header = ["day", "id", "new", "kept"]
    monkeypatch.setitem(export.TABS, "test", header)
    monkeypatch.setitem(export.PREVIOUS_HEADERS, "test", [["kept", "day", "id"]])
    # Rows read from Google Sheets leave out trailing empty cells.
    assert export.upgraded([["kept", "day", "id"], ["k", "d1", 1], ["k2", "d2"]], header) == [header, ["d1", 1, "", "k"], ["d2", "", "", "k2"]]
    assert export.upgraded([header, ["d1", 1, "", "k"]], header) == [header, ["d1", 1, "", "k"]]
    with pytest.raises(ValueError, match="differs from the layout v3 header"):
        export.upgraded([["day", "id"], ["d1", 1]], header, "tab")


def test_a_row_repeated_whole_is_kept_once():
    header = ["day", "id"]
    existing = [header, ["d1", 1], ["d2", 5], ["d1", 1], ["d2", 6], ["d2", 5]]
    assert export.replace_day(existing, header, "d2", [["d2", 7]]) == [header, ["d1", 1], ["d2", 7]]
    assert export.replace_day(existing, header, "d3", []) == [header, ["d1", 1], ["d2", 5], ["d2", 6]]
