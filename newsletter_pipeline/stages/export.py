"""Export a day's clusters to the sheet layout: a local workbook, or Google Sheets through gspread."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from newsletter_pipeline.stages.cluster import NOISE

if TYPE_CHECKING:
    import gspread

# The contract with sheet readers: tab names and header rows. Change them only with a new version.
LAYOUT_VERSION = 1
TABS = {
    "clusters": ["day", "cluster_id", "label", "title", "keywords", "size", "n_sources", "sources", "top_headlines", "top_links"],
    "items": ["day", "item_id", "source_id", "cluster_id", "cluster_label", "probability", "published_at", "source", "headline", "link"],
}
NOISE_LABEL = "(unclustered)"


def sheet_tables(day: str, items: pd.DataFrame, assignments: pd.DataFrame, summaries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The day's rows for each tab, in the contract's column order."""
    clusters = summaries.assign(day=day)[TABS["clusters"]]
    labels = dict(zip(summaries["cluster_id"], summaries["label"], strict=True))
    joined = items.merge(assignments[["item_id", "cluster_id", "probability"]], on="item_id", how="left", validate="one_to_one")
    joined = joined.assign(
        day=day,
        cluster_label=[labels.get(c, NOISE_LABEL) if c != NOISE else NOISE_LABEL for c in joined["cluster_id"]],
        published_at=joined["published_at"].map(lambda t: t.isoformat()),
        probability=joined["probability"].round(4),
    )
    # Clustered items first, by cluster, most confident first; noise last.
    joined = joined.assign(_noise=joined["cluster_id"] == NOISE).sort_values(
        ["_noise", "cluster_id", "probability", "item_id"], ascending=[True, True, False, True], kind="stable"
    )
    return {"clusters": clusters.reset_index(drop=True), "items": joined[TABS["items"]].reset_index(drop=True)}


def _cell(value: object) -> object:
    """Sheets and workbooks take str, int, float; missing values become empty cells."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def table_rows(table: pd.DataFrame) -> list[list]:
    return [[_cell(v) for v in row] for row in table.itertuples(index=False, name=None)]


def replace_day(existing: list[list], header: list[str], day: str, new_rows: list[list]) -> list[list]:
    """Header, then every other day's rows as they were, then this day's rows; days in order."""
    existing = [row for row in existing if any(cell not in ("", None) for cell in row)]  # a new tab reads as [[]]
    if existing and [str(h) for h in existing[0]] != header:
        raise ValueError(f"header row {existing[0]} differs from the layout v{LAYOUT_VERSION} header {header}; "
                         "move the old tab aside or migrate it before exporting")
    kept = [row for row in existing[1:] if str(row[0]) != day]
    # Stable sort on the day column only: rows within a day keep their order.
    return [header, *sorted(kept + new_rows, key=lambda row: str(row[0]))]


@contextlib.contextmanager
def _locked(path: Path):
    """One writer at a time: two runs exporting different days must not lose each other's rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_workbook(path: Path) -> dict[str, list[list]]:
    """Every tab of a workbook as rows of values (header first)."""
    from openpyxl import load_workbook

    if not path.exists():
        return {}
    book = load_workbook(path, read_only=True)
    try:
        return {sheet.title: [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)] for sheet in book}
    finally:
        book.close()


def write_workbook(path: Path, day: str, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Replace the day's rows in each tab of a local .xlsx workbook; returns rows per tab after the write."""
    from openpyxl import Workbook

    path = Path(path)
    with _locked(path):
        existing = read_workbook(path)
        book = Workbook()
        book.remove(book.active)
        totals = {}
        for tab, header in TABS.items():
            rows = replace_day(existing.get(tab, []), header, day, table_rows(tables[tab]))
            sheet = book.create_sheet(tab)
            for row in rows:
                sheet.append(row)
            for cells in sheet.iter_rows(min_row=2):
                for cell in cells:
                    if cell.data_type == "f":  # a headline starting with "=" is text, never a live formula
                        cell.data_type = "s"
            sheet.freeze_panes = "A2"
            totals[tab] = len(rows) - 1
        # Write aside, then move: a crash mid-save leaves the previous workbook intact.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            book.save(temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return totals


def write_google_sheet(spreadsheet: gspread.Spreadsheet, day: str, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Replace the day's rows in each tab of a Google spreadsheet; returns rows per tab after the write."""
    import gspread

    totals = {}
    for tab, header in TABS.items():
        try:
            sheet = spreadsheet.worksheet(tab)
            # Unformatted, so other days' numbers are written back as numbers, not as their display text.
            existing = sheet.get_all_values(value_render_option=gspread.utils.ValueRenderOption.unformatted)
        except gspread.WorksheetNotFound:
            sheet = spreadsheet.add_worksheet(tab, rows=1, cols=len(header))
            existing = []
        rows = replace_day(existing, header, day, table_rows(tables[tab]))
        # Grow the grid, write every row in one request, and only then drop rows left over from a longer
        # version of the day: a failed write must never cut other days' rows off.
        if sheet.row_count < len(rows) or sheet.col_count < len(header):
            sheet.resize(rows=max(sheet.row_count, len(rows)), cols=max(sheet.col_count, len(header)))
        sheet.update(rows, "A1", value_input_option="RAW")
        if sheet.row_count > len(rows) or sheet.col_count > len(header):
            sheet.resize(rows=len(rows), cols=len(header))
        totals[tab] = len(rows) - 1
    return totals
