"""The sheet layout (a contract with sheet readers) and the local workbook sink."""

import pandas as pd
import pytest

from newsletter_pipeline.stages import export
from newsletter_pipeline.stages.cluster import NOISE


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
    return export.sheet_tables(day, items, assignments, summaries)


def test_layout_contract_is_pinned():
    # Sheet readers depend on these exact tabs and header rows: change them only with a new LAYOUT_VERSION.
    assert export.LAYOUT_VERSION == 1
    assert export.TABS == {
        "clusters": ["day", "cluster_id", "label", "title", "keywords", "size", "n_sources", "sources", "top_headlines", "top_links"],
        "items": ["day", "item_id", "source_id", "cluster_id", "cluster_label", "probability", "published_at", "source", "headline", "link"],
    }


def test_sheet_tables_follow_the_layout():
    tables = day_tables("2026-11-16")
    assert {tab: list(t.columns) for tab, t in tables.items()} == export.TABS
    items = tables["items"]
    assert items["cluster_label"].tolist() == ["storm / coast", "storm / coast", export.NOISE_LABEL]
    assert items["published_at"].iloc[0] == "2026-11-16T08:00:00+00:00"


def test_rerunning_a_day_replaces_its_rows_and_keeps_other_days(tmp_path):
    path = tmp_path / "sheets" / "book.xlsx"
    export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 4))
    export.write_workbook(path, "2026-11-16", day_tables("2026-11-16", 3))
    totals = export.write_workbook(path, "2026-11-17", day_tables("2026-11-17", 2))
    book = export.read_workbook(path)
    assert list(book) == ["clusters", "items"]
    assert [book[tab][0] for tab in book] == [export.TABS["clusters"], export.TABS["items"]]
    item_days = [row[0] for row in book["items"][1:]]
    assert item_days == ["2026-11-16"] * 3 + ["2026-11-17"] * 2  # days in order, the re-run day not duplicated
    assert totals == {"clusters": 2, "items": 5}
    assert book["items"][1][1] == "2026-11-16-0"
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []


def test_a_workbook_with_another_layout_is_not_overwritten(tmp_path):
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    book = Workbook()
    book.active.title = "clusters"
    book.active.append(["day", "something else"])
    book.save(path)
    with pytest.raises(ValueError, match="differs from the layout v1 header"):
        export.write_workbook(path, "2026-11-16", day_tables("2026-11-16"))
    assert export.read_workbook(path)["clusters"] == [["day", "something else"]]
