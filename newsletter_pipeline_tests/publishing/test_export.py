"""The sheet layout (a contract with sheet readers) and the local workbook sink."""

import os
from datetime import UTC, datetime

import pandas as pd
import pytest

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import REPO

V3_ITEMS = [
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
]
V2_CLUSTERS = [
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
]


def day_tables(day: str, n_items: int = 3) -> dict[str, pd.DataFrame]:
    ids = [f"{day}-{i}" for i in range(n_items)]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "source_id": [None] * n_items,
            "published_at": pd.to_datetime([f"{day}T08:00:00Z"] * n_items, utc=True),
            "source": "Morning Brief",
            "headline": [f"Headline {i}" for i in range(n_items)],
            "link": [f"https://x.test/{i}" for i in ids],
        }
    )
    assignments = pd.DataFrame(
        {"item_id": ids, "cluster_id": [0] * (n_items - 1) + [NOISE], "probability": [0.9] * (n_items - 1) + [0.0]}
    )
    summaries = pd.DataFrame(
        [
            {
                "cluster_id": 0,
                "label": "storm / coast",
                "title": "Headline 0",
                "keywords": "storm, coast",
                "size": n_items - 1,
                "n_sources": 1,
                "sources": "Morning Brief",
                "top_headlines": "Headline 0",
                "top_links": "https://x.test/0",
            }
        ]
    )
    stories = pd.DataFrame(
        [
            {
                "cluster_id": 0,
                "size": n_items - 1,
                "story_id": "2026-11-02#4",
                "first_seen": "2026-11-02",
                "days_active": 3,
                "trend": "growing",
            }
        ]
    )
    story_items = pd.DataFrame({"item_id": ids, "story_id": ["2026-11-02#4"] * (n_items - 1) + [None]})
    # The month's stories tab as tracking.story_tab makes it: items_per_day runs from the story's first day with
    # items in the month (at most three days back here) to `day`.
    per_day = ["2", "0", "1", str(n_items - 1)][-min(4, int(day[8:])) :]
    story_tab = pd.DataFrame(
        [["2026-11-02#4", "Headline 0", "2026-11-02", day, 3, ",".join(per_day), "growing"]],
        columns=export.TABS["stories"],
    )
    return export.sheet_tables(day, items, assignments, summaries, stories, story_items, story_tab)


def test_layout_contract_is_pinned():
    # Sheet readers depend on these exact tabs and header rows: change them only with a new LAYOUT_VERSION
    # (and a note of what changed in docs/sheets.md).
    assert export.LAYOUT_VERSION == 4
    assert export.TABS == {
        "clusters": [
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
        "items": [
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
        "stories": ["story_id", "title", "first_seen", "last_seen", "days_active", "items_per_day", "trend"],
    }
    # The earlier headers an export upgrades in place.
    assert export.PREVIOUS_HEADERS == {"clusters": [V2_CLUSTERS], "items": [V3_ITEMS]}
    assert export.INDEX_TAB == "index"
    assert export.INDEX_HEADER == [
        "month",
        "kind",
        "tab",
        "rows",
        "days",
        "first_day",
        "last_day",
        "updated_at",
        "layout_version",
    ]
    assert [export.tab_name(kind, "2026-11-16") for kind in export.TABS] == [
        "clusters 2026-11",
        "items 2026-11",
        "stories 2026-11",
    ]


def test_tab_names_and_order():
    assert export.month_of("2026-11-16") == "2026-11" and export.tab_name("items", "2026-12") == "items 2026-12"
    with pytest.raises(ValueError, match="not a YYYY-MM-DD date"):
        export.month_of("16/11/2026")
    titles = [
        "items 2026-12",
        "stories 2026-12",
        "clusters 2027-01",
        "index",
        "stories 2026-11",
        "clusters 2026-12",
        "Sheet1",
        "clusters",
        "stories",
        "items 2026-11",
    ]
    assert sorted((t for t in titles if export.layout_key(t)), key=export.layout_key) == [
        "index",
        "items 2026-11",
        "stories 2026-11",
        "clusters 2026-12",
        "items 2026-12",
        "stories 2026-12",
        "clusters 2027-01",
    ]
    assert (
        export.layout_key("clusters") is None and export.layout_key("Sheet1") is None
    )  # v1 and foreign tabs are not the layout's
    assert (
        export.header_of("index") == export.INDEX_HEADER and export.header_of("items 2027-01") == export.TABS["items"]
    )
    assert export.header_of("stories 2027-01") == export.TABS["stories"]


def test_sheet_tables_follow_the_layout():
    tables = day_tables("2026-11-16")
    assert {tab: list(t.columns) for tab, t in tables.items()} == export.TABS
    items = tables["items"]
    assert items["cluster_label"].tolist() == ["storm / coast", "storm / coast", export.NOISE_LABEL]
    assert items["published_at"].iloc[0] == "2026-11-16T08:00:00+00:00"
    assert tables["clusters"].iloc[0][export.SHEET_STORY_COLUMNS].tolist() == [
        "2026-11-02#4",
        "2026-11-02",
        3,
        "growing",
    ]


def test_story_columns_are_blank_without_stories_and_stale_stories_are_refused():
    items = pd.DataFrame(
        {
            "item_id": ["a"],
            "published_at": pd.to_datetime(["2026-11-16T08:00:00Z"], utc=True),
            "source_id": None,
            "source": "S",
            "headline": "H",
            "link": "",
        }
    )
    assignments = pd.DataFrame({"item_id": ["a"], "cluster_id": [0], "probability": [1.0]})
    summaries = pd.DataFrame(
        [
            {
                "cluster_id": 0,
                "label": "l",
                "title": "H",
                "keywords": "k",
                "size": 1,
                "n_sources": 1,
                "sources": "S",
                "top_headlines": "H",
                "top_links": "",
            }
        ]
    )
    clusters = export.sheet_tables("2026-11-16", items, assignments, summaries)["clusters"]
    assert export.table_rows(clusters)[0][-4:] == ["", "", "", ""]
    # Stories made from another clustering of the day (another size, another cluster) would put wrong ids on the rows.
    story = {
        "cluster_id": 0,
        "size": 1,
        "story_id": "2026-11-16#0",
        "first_seen": "2026-11-16",
        "days_active": 1,
        "trend": "new",
    }
    for stale in ({**story, "size": 2}, {**story, "cluster_id": 1}):
        with pytest.raises(ValueError, match="re-materialize stories for 2026-11-16"):
            export.sheet_tables("2026-11-16", items, assignments, summaries, pd.DataFrame([stale]))


def test_a_workbook_that_already_holds_the_rows_is_not_rewritten(tmp_path):
    path = tmp_path / "sheets" / "book.xlsx"
    first = export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3))
    assert not first.unchanged and (tmp_path / "sheets" / "book.xlsx.exported.json").is_file()
    later = export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 4))
    written = os.stat(path).st_mtime_ns

    # The same rows and the month's stories tab as it stands (the latest state's, as every day of the month exports
    # it): nothing is read or written, and the totals are the month's as they stand now.
    same = day_tables("2026-11-16", 3)
    same["stories"] = day_tables("2026-11-17", 4)["stories"]
    again = export.write_workbook(path, "2026-11-16", same)
    assert again.unchanged and again == later and os.stat(path).st_mtime_ns == written
    # Other rows for the day: written.
    fewer = export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 2))
    assert not fewer.unchanged and fewer["items 2026-11"] == 6
    # The same day rows under another stories tab (a later day's state): the tab is rewritten.
    tables = day_tables("2026-11-16", 2)
    tables["stories"] = day_tables("2026-11-20", 2)["stories"]
    assert not export.write_workbook(path, "2026-11-16", tables).unchanged
    assert export.read_workbook(path)["stories 2026-11"][1][3] == "2026-11-20"

    # An editor changed the workbook: the export puts the day's rows back.
    from openpyxl import load_workbook

    book = load_workbook(path)
    book["items 2026-11"]["I2"] = "edited by hand"
    book.save(path)
    restored = export.write_workbook(path, "2026-11-16", tables)
    assert not restored.unchanged
    assert "edited by hand" not in str(export.read_workbook(path)["items 2026-11"])
    assert export.write_workbook(path, "2026-11-16", tables).unchanged
    # An edit, then another day's export: that export keeps the edit, so the record no longer vouches for the first day.
    book = load_workbook(path)
    book["items 2026-11"]["I2"] = "edited again"
    book.save(path)
    other_day = day_tables("2026-11-17", 4)
    other_day["stories"] = tables["stories"]  # the month's stories tab as the first day wrote it
    assert not export.write_workbook(path, "2026-11-17", other_day).unchanged
    assert not export.write_workbook(path, "2026-11-16", tables).unchanged
    assert "edited again" not in str(export.read_workbook(path)["items 2026-11"])
    # The workbook moved aside: a new one is started, and no day of the old one counts as written in it.
    path.rename(path.with_name("aside.xlsx"))
    assert not export.write_workbook(path, "2026-11-17", other_day).unchanged
    assert not export.write_workbook(path, "2026-11-16", tables).unchanged
    assert (
        export.read_workbook(path)["items 2026-11"][1:] and export.write_workbook(path, "2026-11-16", tables).unchanged
    )
    # No record, or an unreadable one: the workbook is rewritten, as before records existed.
    (tmp_path / "sheets" / "book.xlsx.exported.json").write_text("{not json", encoding="utf-8")
    assert not export.write_workbook(path, "2026-11-16", tables).unchanged
    (tmp_path / "sheets" / "book.xlsx.exported.json").unlink()
    assert not export.write_workbook(path, "2026-11-16", tables).unchanged
    assert export.write_workbook(path, "2026-11-16", tables).unchanged


def test_rerunning_a_day_replaces_its_rows_and_keeps_other_days(tmp_path):
    path = tmp_path / "sheets" / "book.xlsx"
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 4))
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3))
    totals = export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 2))
    book = export.read_workbook(path)
    assert list(book) == ["index", "clusters 2026-11", "items 2026-11", "stories 2026-11"]
    assert [book[tab][0] for tab in book] == [
        export.INDEX_HEADER,
        export.TABS["clusters"],
        export.TABS["items"],
        export.TABS["stories"],
    ]
    item_days = [row[0] for row in book["items 2026-11"][1:]]
    assert item_days == ["2026-11-16"] * 3 + ["2026-11-17"] * 2  # days in order, the re-run day not duplicated
    assert totals == {"clusters 2026-11": 2, "items 2026-11": 5, "stories 2026-11": 1}
    # The stories tab is the one of the last export, whole: not one row per day.
    assert book["stories 2026-11"][1:] == [
        ["2026-11-02#4", "Headline 0", "2026-11-02", "2026-11-17", 3, "2,0,1,1", "growing"]
    ]
    assert book["items 2026-11"][1][1] == "2026-11-16-0"
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []


def test_months_get_their_own_tabs_and_the_index_lists_them(tmp_path):
    path = tmp_path / "book.xlsx"
    first, later = datetime(2026, 11, 17, 6, tzinfo=UTC), datetime(2026, 12, 2, 6, 30, tzinfo=UTC)
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3), now=first)
    export.write_workbook(path, "2026-12-01", day_tables("2026-12-01", 4), now=later)
    export.write_workbook(path, "2026-11-30", day_tables("2026-11-30", 2), now=later)  # a late day of the earlier month
    book = export.read_workbook(path)
    assert list(book) == [
        "index",
        "clusters 2026-11",
        "items 2026-11",
        "stories 2026-11",
        "clusters 2026-12",
        "items 2026-12",
        "stories 2026-12",
    ]
    # Every tab starts with its pinned header row.
    assert {tab: rows[0] for tab, rows in book.items()} == {
        "index": export.INDEX_HEADER,
        "clusters 2026-11": export.TABS["clusters"],
        "items 2026-11": export.TABS["items"],
        "stories 2026-11": export.TABS["stories"],
        "clusters 2026-12": export.TABS["clusters"],
        "items 2026-12": export.TABS["items"],
        "stories 2026-12": export.TABS["stories"],
    }
    # A stories tab's days are those with items of its stories: the 27th, 29th and 30th ("2,0,1,1" up to the 30th).
    assert book["index"][1:] == [
        ["2026-11", "clusters", "clusters 2026-11", 2, 2, "2026-11-16", "2026-11-30", "2026-12-02T06:30:00Z", 4],
        ["2026-11", "items", "items 2026-11", 5, 2, "2026-11-16", "2026-11-30", "2026-12-02T06:30:00Z", 4],
        ["2026-11", "stories", "stories 2026-11", 1, 3, "2026-11-27", "2026-11-30", "2026-12-02T06:30:00Z", 4],
        ["2026-12", "clusters", "clusters 2026-12", 1, 1, "2026-12-01", "2026-12-01", "2026-12-02T06:30:00Z", 4],
        ["2026-12", "items", "items 2026-12", 4, 1, "2026-12-01", "2026-12-01", "2026-12-02T06:30:00Z", 4],
        ["2026-12", "stories", "stories 2026-12", 1, 1, "2026-12-01", "2026-12-01", "2026-12-02T06:30:00Z", 4],
    ]
    assert book["stories 2026-12"][1:] == [
        ["2026-11-02#4", "Headline 0", "2026-11-02", "2026-12-01", 3, "3", "growing"]
    ]
    assert [row[0] for row in book["items 2026-12"][1:]] == ["2026-12-01"] * 4
    # Readers that want every day at once join the months.
    joined = export.read_layout(path)
    assert [row[0] for row in joined["items"][1:]] == ["2026-11-16"] * 3 + ["2026-11-30"] * 2 + ["2026-12-01"] * 4
    assert joined["clusters"][0] == export.TABS["clusters"] and len(joined["clusters"]) == 1 + 3
    assert [row[3] for row in joined["stories"][1:]] == ["2026-11-30", "2026-12-01"]  # each month's, in month order


def test_an_empty_day_still_lists_its_month(tmp_path):
    path = tmp_path / "book.xlsx"
    export.write_workbook(path, "2026-11-09", day_tables("2026-11-09", 1), now=datetime(2026, 11, 10, tzinfo=UTC))
    empty = {kind: table.iloc[0:0] for kind, table in day_tables("2026-11-09", 1).items()}
    assert export.write_workbook(path, "2026-11-09", empty, now=datetime(2026, 11, 10, tzinfo=UTC)) == {
        "clusters 2026-11": 0,
        "items 2026-11": 0,
        "stories 2026-11": 0,
    }
    book = export.read_workbook(path)
    assert book["items 2026-11"] == [export.TABS["items"]]
    assert book["stories 2026-11"] == [export.TABS["stories"]]  # rewritten whole: the earlier story row is gone
    assert book["index"][1:] == [
        ["2026-11", kind, f"{kind} 2026-11", 0, 0, "", "", "2026-11-10T00:00:00Z", 4] for kind in export.TABS
    ]


def test_a_workbook_with_another_layout_is_not_overwritten(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    book.active.title = "clusters 2026-11"
    book.active.append(["day", "something else"])
    book.save(path)
    with pytest.raises(ValueError, match=r"tab 'clusters 2026-11': header row .* differs from the layout v4 header"):
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
    assert list(book) == ["clusters", "index", "clusters 2026-11", "items 2026-11", "stories 2026-11"]
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
    # The month written gets the v4 header; its other days keep every v2 value by name, with blank story columns.
    assert book["clusters 2026-11"][0] == export.TABS["clusters"]
    assert book["clusters 2026-11"][1] == [*old, "", "", "", ""]
    assert book["clusters 2026-11"][2][-4:] == ["2026-11-02#4", "2026-11-02", 3, "growing"]
    # A month not written keeps its v2 tab until one of its days is exported; readers get both under the v4 header.
    assert book["clusters 2026-12"][0] == V2_CLUSTERS
    joined = export.read_layout(path)["clusters"]
    assert joined[0] == export.TABS["clusters"] and [row[0] for row in joined[1:]] == [
        "2026-11-15",
        "2026-11-16",
        "2026-12-01",
    ]
    assert joined[3] == ["2026-12-01", *old[1:], "", "", "", ""]


def test_a_v3_items_tab_gains_the_story_column_and_the_month_its_stories_tab(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.title = "items 2026-11"
    sheet.append(V3_ITEMS)
    old = ["2026-11-15", "old-1", "", 0, "old / label", 0.9, "2026-11-15T08:00:00+00:00", "A", "Old", "https://x.test"]
    sheet.append(old)
    book.save(path)
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    book = export.read_workbook(path)
    assert list(book) == ["index", "clusters 2026-11", "items 2026-11", "stories 2026-11"]
    items = book["items 2026-11"]
    # The earlier day keeps its values by name with a blank story; the day written has its items' stories.
    assert items[0] == export.TABS["items"] and items[1] == [*old, ""]
    assert [row[-1] for row in items[2:]] == ["2026-11-02#4", "2026-11-02#4", ""]
    assert book["stories 2026-11"] == [
        export.TABS["stories"],
        ["2026-11-02#4", "Headline 0", "2026-11-02", "2026-11-16", 3, "2,0,1,2", "growing"],
    ]
    # The stories tab is rewritten whole at each export, not per day.
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", n_items=5))
    stories = export.read_workbook(path)["stories 2026-11"]
    assert stories[1:] == [["2026-11-02#4", "Headline 0", "2026-11-02", "2026-11-17", 3, "2,0,1,4", "growing"]]
    index = {row[2]: row for row in export.read_workbook(path)["index"][1:]}
    # Its index row: one story; its days are those with items (the 14th, 16th and 17th here).
    assert index["stories 2026-11"][:7] == ["2026-11", "stories", "stories 2026-11", 1, 3, "2026-11-14", "2026-11-17"]
    assert {row[-1] for row in index.values()} == {4}


def test_upgrading_maps_columns_by_name(monkeypatch):
    header = ["day", "id", "new", "kept"]
    monkeypatch.setitem(export.TABS, "test", header)
    monkeypatch.setitem(export.PREVIOUS_HEADERS, "test", [["kept", "day", "id"]])
    # Rows read from Google Sheets leave out trailing empty cells.
    assert export.upgraded([["kept", "day", "id"], ["k", "d1", 1], ["k2", "d2"]], header) == [
        header,
        ["d1", 1, "", "k"],
        ["d2", "", "", "k2"],
    ]
    assert export.upgraded([header, ["d1", 1, "", "k"]], header) == [header, ["d1", 1, "", "k"]]
    with pytest.raises(ValueError, match="differs from the layout v4 header"):
        export.upgraded([["day", "id"], ["d1", 1]], header, "tab")


def test_a_row_repeated_whole_is_kept_once():
    header = ["day", "id"]
    existing = [header, ["d1", 1], ["d2", 5], ["d1", 1], ["d2", 6], ["d2", 5]]
    assert export.replace_day(existing, header, "d2", [["d2", 7]]) == [header, ["d1", 1], ["d2", 7]]
    assert export.replace_day(existing, header, "d3", []) == [header, ["d1", 1], ["d2", 5], ["d2", 6]]


# --- what a cell may hold: storable characters, at most MAX_CELL_CHARS --------------------------------------


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def every_text_cell(book: dict[str, list[list]]) -> list[str]:
    return [cell for rows in book.values() for row in rows for cell in row if isinstance(cell, str)]


def test_cell_text_keeps_storable_text_and_caps_it_with_a_visible_ellipsis():
    limit = export.MAX_CELL_CHARS
    assert limit == 32_767 and export.ELLIPSIS == "…"
    assert export.cell_text("Storm Odile\uffff nears\ufffe the coast\ud800\x00!") == "Storm Odile nears the coast !"
    assert export.cell_text("a" * limit) == "a" * limit  # at the limit: whole
    assert (
        export.cell_text("🌀" * (limit // 2) + "a") == "🌀" * (limit // 2) + "a"
    )  # 32,767 UTF-16 units, astral counted twice
    cut = export.cell_text("a" * (limit + 1))
    assert cut == "a" * (limit - 1) + "…" and utf16_units(cut) == limit
    # A cut that would fall inside an astral character's surrogate pair drops the character whole.
    cut = export.cell_text("a" * (limit - 2) + "🌀" * 3)
    assert cut == "a" * (limit - 2) + "…" and utf16_units(cut) == limit - 1
    cut = export.cell_text("a" * (limit - 3) + "🌀" * 3)
    assert cut == "a" * (limit - 3) + "🌀…" and utf16_units(cut) == limit
    assert export.cell_text("ab🌀cd", limit=4) == "ab…"
    # Numbers are not text: untouched.
    assert export.table_rows(pd.DataFrame({"n": [3], "x": [0.5]})) == [[3, 0.5]]


def test_a_noncharacter_or_lone_surrogate_never_reaches_the_workbook(tmp_path):
    # Bypasses the parser (which cleans fields too): the sink defends itself. Before, a U+FFFF went into the sheet XML
    # as is, and every later read of the workbook failed with a bare ParseError.
    path = tmp_path / "book.xlsx"
    tables = day_tables("2026-11-16")
    tables = {
        kind: table.astype(object) for kind, table in tables.items()
    }  # an arrow string cannot hold a lone surrogate
    tables["items"].loc[0, "headline"] = "Storm Odile\uffff nears the coast"
    tables["items"].loc[1, "source"] = "Morning\ud800 Brief\ufffe"
    tables["clusters"].loc[0, "top_headlines"] = "Storm Odile\uffff nears the coast\n\udc80Second headline"
    export.write_workbook(path, "2026-11-16", tables)
    book = export.read_workbook(path)
    items, clusters = book["items 2026-11"], book["clusters 2026-11"]
    assert items[1][export.TABS["items"].index("headline")] == "Storm Odile nears the coast"
    assert items[2][export.TABS["items"].index("source")] == "Morning Brief"
    assert clusters[1][export.TABS["clusters"].index("top_headlines")] == "Storm Odile nears the coast\nSecond headline"
    # The workbook stays usable: the next export of another day reads and rewrites it.
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17"))
    assert [row[0] for row in export.read_workbook(path)["items 2026-11"][1:]] == ["2026-11-16"] * 3 + [
        "2026-11-17"
    ] * 3


def test_a_long_cell_is_cut_with_an_ellipsis_not_silently(tmp_path):
    # openpyxl keeps the first 32,767 characters of a longer text without a word; the cut must show.
    path = tmp_path / "book.xlsx"
    tables = day_tables("2026-11-16")
    headlines = "\n".join(
        f"Headline {i} about the storm and what it did to the coast" for i in range(1_000)
    )  # ~57,000 characters
    tables["clusters"].loc[0, "top_headlines"] = headlines
    export.write_workbook(path, "2026-11-16", tables)
    cell = export.read_workbook(path)["clusters 2026-11"][1][export.TABS["clusters"].index("top_headlines")]
    assert cell.endswith("…") and utf16_units(cell) == export.MAX_CELL_CHARS and headlines.startswith(cell[:-1])


# --- a workbook that cannot be read -------------------------------------------------------------------------


def _broken_xml(path):
    # What the export wrote before the fix: a U+FFFF inside a tab's XML.
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "items 2026-11"
    book.active.append(export.TABS["items"])
    book.active.append(["2026-11-16", "a", "", 0, "storm", 0.9, "", "Morning Brief", "Storm\uffff", ""])
    book.save(path)


def _truncated_zip(path):
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zip_of_something_else(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a workbook")


@pytest.mark.parametrize(
    "damage",
    [_broken_xml, _truncated_zip, _zip_of_something_else, lambda path: path.write_text("day,item_id\n")],
    ids=["invalid-xml", "truncated-zip", "zip-not-a-workbook", "not-a-zip"],
)
def test_an_unreadable_workbook_is_named_and_left_as_it_is(tmp_path, damage):
    path = tmp_path / "sheets" / "book.xlsx"
    path.parent.mkdir()
    damage(path)
    before = path.read_bytes()
    with pytest.raises(
        export.UnreadableWorkbook,
        match=r"(?s)the workbook .*book\.xlsx cannot be read \(\w+: .*\): it is damaged.*"
        r"Move it aside .*--select sheet_export.*docs/backups\.md.*backup",
    ) as caught:
        export.write_workbook(path, "2026-11-17", day_tables("2026-11-17"))
    assert str(path) in str(caught.value) and caught.value.__cause__ is not None
    assert path.read_bytes() == before  # never overwritten: it may hold tabs of someone's own
    # Nothing new beside it (the record of an earlier export may be there: its stamp no longer matches the file).
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".exported.json")) == [
        "book.xlsx",
        "book.xlsx.lock",
    ]
    with pytest.raises(export.UnreadableWorkbook, match="Move it aside"):
        export.read_layout(path)
    # Moved aside, as the message says: the next export starts a new workbook.
    path.rename(path.with_name("book.xlsx.broken"))
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17"))
    assert [row[0] for row in export.read_workbook(path)["items 2026-11"][1:]] == ["2026-11-17"] * 3


# --- temporary files of a save that never finished ------------------------------------------------------------

KILLED_MID_SAVE = """
import os, signal, sys
from pathlib import Path
from openpyxl import Workbook
from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.publishing.test_export import day_tables

save = Workbook.save
def save_then_die(self, filename):
    save(self, filename)  # the temporary file is written, the move into place never happens
    os.kill(os.getpid(), signal.SIGKILL)
Workbook.save = save_then_die
export.write_workbook(Path(sys.argv[1]), "2026-11-17", day_tables("2026-11-17"))
"""


def test_the_leftover_of_a_killed_save_is_removed_by_the_next_export(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "book.xlsx"
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_SAVE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert killed.returncode == -9, killed.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".book.xlsx.") and p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    assert [row[0] for row in export.read_workbook(path)["items 2026-11"][1:]] == [
        "2026-11-16"
    ] * 3  # the previous workbook, intact
    # Files of that shape that are not this workbook's temporaries stay.
    others = [
        ".book.xlsx.x.abcd1234.tmp",
        ".other.xlsx.abcd1234.tmp",
        "book.xlsx.abcd1234.tmp",
        ".book.xlsx.abcd1234.tmp.keep",
        ".book.xlsx.2026-11-16.tmp",
    ]
    for name in others:
        (tmp_path / name).write_text("not ours")
    export.write_workbook(path, "2026-11-18", day_tables("2026-11-18"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["book.xlsx", "book.xlsx.exported.json", "book.xlsx.lock", *others]
    )
    assert [row[0] for row in export.read_workbook(path)["items 2026-11"][1:]] == ["2026-11-16"] * 3 + [
        "2026-11-18"
    ] * 3


def test_a_save_in_progress_is_not_taken_for_a_leftover(tmp_path):
    import tempfile
    import threading
    import time

    path = tmp_path / "book.xlsx"
    saving, done = threading.Event(), threading.Event()
    seen = {}

    def other_export():  # holds the lock through its save, as write_workbook does
        with export._locked(path):
            handle, temporary = tempfile.mkstemp(dir=tmp_path, prefix=".book.xlsx.", suffix=".tmp")
            os.close(handle)
            saving.set()
            done.wait(10)
            seen["kept"] = os.path.exists(temporary)
            os.unlink(temporary)

    holder = threading.Thread(target=other_export)
    holder.start()
    assert saving.wait(10)
    writer = threading.Thread(target=export.write_workbook, args=(path, "2026-11-16", day_tables("2026-11-16")))
    writer.start()
    time.sleep(0.5)
    assert writer.is_alive()  # waiting for the lock, not cleaning beside a save in progress
    done.set()
    holder.join(10)
    writer.join(30)
    assert seen == {"kept": True} and not writer.is_alive()
    assert export.read_workbook(path)["items 2026-11"][1][0] == "2026-11-16"


# --- through the assets, as a user runs them ------------------------------------------------------------------


def test_a_noncharacter_in_a_landing_file_leaves_the_workbook_readable(workspace):
    import json

    from newsletter_pipeline.text import storable

    workspace.add_sample()
    # A headline with a U+FFFF and a U+FFFE, as a feed converter wrote it (raw UTF-8, not an escape).
    record = {
        "id": "mb-2026-11-16-900",
        "source": "Morning Brief",
        "link": "https://www.morningbriefdaily.com/2026/11/16/odile-landfall",
        "headline": "Storm Odile\uffff Makes Landfall Near\ufffe the Gulf Coast",
        "category": "WEATHER",
        "short_description": "The storm came ashore late Monday with winds near 110 mph.",
        "authors": "Daniel Ortiz",
        "date": "2026-11-16T18:00:00Z",
    }
    with open(workspace.landing / "morning_brief.jsonl", "a", encoding="utf-8") as landing:
        landing.write(json.dumps(record, ensure_ascii=False) + "\n")
    # A file without source fields is named after the file, and this name holds a U+FFFF: no field cleaning sees it.
    flash = [
        {
            "headline": f"Odile Flash {i}: Shelters Open Along the Coast",
            "link": f"https://flash.test/{i}",
            "date": "2026-11-16T19:00:00Z",
        }
        for i in range(3)
    ]
    (workspace.landing / "flash\uffff_news.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in flash), encoding="utf-8"
    )

    assert workspace.materialize("2026-11-16").success
    book = export.read_workbook(workspace.workbook)
    assert all(cell == storable(cell) for cell in every_text_cell(book))
    items = book[export.tab_name("items", "2026-11-16")]
    headline, source = export.TABS["items"].index("headline"), export.TABS["items"].index("source")
    assert "Storm Odile Makes Landfall Near the Gulf Coast" in [row[headline] for row in items[1:]]
    assert {row[source] for row in items[1:] if row[headline].startswith("Odile Flash")} == {"flash news"}
    # Every later export reads the workbook again: another day goes in beside the first.
    assert workspace.materialize("2026-11-17").success
    days = [row[0] for row in export.read_workbook(workspace.workbook)[export.tab_name("items", "2026-11-16")][1:]]
    assert days[0] == "2026-11-16" and days[-1] == "2026-11-17" and days.count("2026-11-16") == len(items) - 1
