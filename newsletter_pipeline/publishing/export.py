"""Export a day's clusters to the sheet layout: a local workbook, or Google Sheets through gspread.

Layout v4 (docs/sheets.md): one `clusters YYYY-MM`, one `items YYYY-MM` and one `stories YYYY-MM` tab per month,
each with the header row of TABS, plus an `index` tab listing every month's tabs with their row counts and last
update. The clusters and items tabs hold a row per cluster and item of each day exported; the stories tab is
rewritten whole at each export, one row per story of the month. Both sinks write the same tabs and rows. A month
tab written by an earlier layout is upgraded in place when a day of its month is exported (PREVIOUS_HEADERS).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from newsletter_pipeline.clustering.cluster import NOISE
from newsletter_pipeline.stories.tracking import STORY_TAB_COLUMNS
from newsletter_pipeline.text import storable

if TYPE_CHECKING:
    import gspread

log = logging.getLogger(__name__)

# The contract with sheet readers: tab names and header rows. Change them only with a new version.
LAYOUT_VERSION = 4
# The header row of every month tab of each kind: tab `<kind> <YYYY-MM>`. v3 added the story columns at the end of
# `clusters`, v4 the item's story at the end of `items` and the `stories` tab, so a reader that takes an earlier
# layout's columns by position still finds them.
SHEET_STORY_COLUMNS = ["story_id", "first_seen", "days_active", "trend"]
# The clusters tab of layout v2: layout v3 added the story columns after it.
V2_CLUSTER_COLUMNS = [
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
# The items tab of layout v3: layout v4 added the item's story after it (blank while its story has one item).
V3_ITEM_COLUMNS = [
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
TABS = {
    "clusters": [*V2_CLUSTER_COLUMNS, *SHEET_STORY_COLUMNS],
    "items": [*V3_ITEM_COLUMNS, "story_id"],
    # One row per story with items in the month (tracking.story_tab), rewritten whole: not keyed by day.
    "stories": STORY_TAB_COLUMNS,
}
WHOLE_TABS = {"stories"}
# Header rows of earlier layouts that an export upgrades in place: each column is kept by name, new ones are blank.
PREVIOUS_HEADERS = {"clusters": [V2_CLUSTER_COLUMNS], "items": [V3_ITEM_COLUMNS]}
INDEX_TAB = "index"
# One row per month tab: which month and kind, its data rows, distinct days, first and last day, when it was last
# written (UTC) and by which layout version.
INDEX_HEADER = ["month", "kind", "tab", "rows", "days", "first_day", "last_day", "updated_at", "layout_version"]
NOISE_LABEL = "(unclustered)"
MAX_CELLS = 10_000_000  # Google's limit per spreadsheet, counted over every tab's grid (rows x columns)
# The longest text a cell gets, in UTF-16 code units, in both sinks. One cap, the smaller of the two limits: a
# workbook cell holds 32,767 characters (Excel's limit; openpyxl cuts longer text without a mark), a Google Sheets
# cell 50,000 (longer text fails the whole request with a 400). One cap keeps both sinks' rows the same.
MAX_CELL_CHARS = 32_767
ELLIPSIS = "\u2026"  # "…": ends a cut cell, so a reader sees the text goes on (in the Parquet outputs)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_TAB = re.compile(r"(?P<kind>%s) (?P<month>\d{4}-\d{2})" % "|".join(TABS))


def month_of(day: str) -> str:
    """2026-11-16 -> 2026-11."""
    if not _DAY.fullmatch(day):
        raise ValueError(f"day {day!r} is not a YYYY-MM-DD date")
    return day[:7]


def tab_name(kind: str, day_or_month: str) -> str:
    """The month tab holding a day's rows of one kind: tab_name("items", "2026-11-16") == "items 2026-11"."""
    if kind not in TABS:
        raise ValueError(f"unknown tab kind {kind!r}; the layout has {', '.join(TABS)}")
    return f"{kind} {day_or_month[:7] if _DAY.fullmatch(day_or_month) else day_or_month}"


def layout_key(title: str) -> tuple | None:
    """Where a tab goes in the layout's order (index first, then months in order, clusters before items),
    or None for a tab that is not part of the layout (left alone by every write)."""
    if title == INDEX_TAB:
        return (0, "", 0)
    match = _MONTH_TAB.fullmatch(title)
    return (1, match["month"], list(TABS).index(match["kind"])) if match else None


def header_of(title: str) -> list[str]:
    """The header row a layout tab must start with."""
    if title == INDEX_TAB:
        return INDEX_HEADER
    match = _MONTH_TAB.fullmatch(title)
    if not match:
        raise ValueError(f"{title!r} is not a tab of layout v{LAYOUT_VERSION}")
    return TABS[match["kind"]]


def sheet_tables(
    day: str,
    items: pd.DataFrame,
    assignments: pd.DataFrame,
    summaries: pd.DataFrame,
    stories: pd.DataFrame | None = None,
    story_items: pd.DataFrame | None = None,
    story_tab: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """The day's rows for each tab, in the contract's column order.

    `stories` (the day's `stories` table: cluster_id, size and the story columns) fills the clusters' story columns,
    `story_items` (item_id, story_id) the items'; without them they are blank. `story_tab` (tracking.story_tab) is
    the month's stories tab, empty without it; a story it lists is shown in the day's rows too, although it was
    still a candidate when the day's stories were made (its second item came later). Stories made from other
    clusters than `summaries` (stale) raise ValueError."""
    if story_tab is not None:
        stories, story_items = (_shown(table, set(story_tab["story_id"])) for table in (stories, story_items))
    clusters = summaries.assign(day=day)
    if stories is None:
        clusters = clusters.assign(**{column: None for column in SHEET_STORY_COLUMNS})
    else:
        clusters = clusters.merge(
            stories[["cluster_id", "size", *SHEET_STORY_COLUMNS]],
            on="cluster_id",
            how="left",
            suffixes=("", "_story"),
            validate="one_to_one",
        )
        if (
            len(stories) != len(summaries)
            or clusters["size_story"].isna().any()
            or (clusters["size"] != clusters["size_story"]).any()
        ):
            raise ValueError(
                f"the stories of {day} do not match its clusters (cluster ids or sizes differ): they were made from "
                f"an earlier clustering; re-materialize stories for {day}"
            )
    clusters = clusters[TABS["clusters"]]
    labels = dict(zip(summaries["cluster_id"], summaries["label"], strict=True))
    joined = items.merge(
        assignments[["item_id", "cluster_id", "probability"]], on="item_id", how="left", validate="one_to_one"
    )
    if story_items is None:
        joined = joined.assign(story_id=None)
    else:
        joined = joined.merge(story_items[["item_id", "story_id"]], on="item_id", how="left", validate="one_to_one")
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
    stories_tab = pd.DataFrame(columns=TABS["stories"]) if story_tab is None else story_tab[TABS["stories"]]
    return {
        "clusters": clusters.reset_index(drop=True),
        "items": joined[TABS["items"]].reset_index(drop=True),
        "stories": stories_tab.reset_index(drop=True),
    }


def _shown(table: pd.DataFrame | None, listed: set[str]) -> pd.DataFrame | None:
    """`table` (stories or story_items) with the ids of the stories the month's tab lists filled in."""
    if table is None or "tracked_as" not in table:
        return table
    return table.assign(story_id=table["tracked_as"].where(table["tracked_as"].isin(listed), table["story_id"]))


def cell_text(text: str, limit: int = MAX_CELL_CHARS) -> str:
    """`text` as a cell of either sink holds it: only characters XML 1.0 can carry (`text.storable`: a U+FFFF would
    make the workbook unreadable for good), and at most `limit` UTF-16 code units, cut with a visible "…"."""
    text = storable(text)
    if 2 * len(text) <= limit:  # even if every character took two code units
        return text
    units = text.encode("utf-16-le")
    if len(units) <= 2 * limit:
        return text
    kept = units[: 2 * (limit - len(ELLIPSIS))]
    if 0xD8 <= kept[-1] <= 0xDB:  # the last unit opens a surrogate pair: drop the whole character, never half of it
        kept = kept[:-2]
    return kept.decode("utf-16-le") + ELLIPSIS


def _cell(value: object) -> object:
    """Sheets and workbooks take str, int, float; missing values become empty cells, text goes through `cell_text`.

    The one place both sinks build their cells, so they hold the same text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return cell_text(value) if isinstance(value, str) else value


def table_rows(table: pd.DataFrame) -> list[list]:
    """A table's rows as cell values (NaN and None as empty cells, text made storable)."""
    return [[_cell(v) for v in row] for row in table.itertuples(index=False, name=None)]


def replace_day(
    existing: list[list], header: list[str], day: str, new_rows: list[list], tab: str | None = None
) -> list[list]:
    """Header, then every other day's rows as they were, then this day's rows; days in order.

    The first column is the key: `day` in a month tab, `month` in the index. A row repeated whole is kept once:
    no two rows of the layout are equal (item_id, cluster_id, month and kind are unique per day or month), and
    a Google Sheets write that took several requests and stopped halfway can leave a copy of other days' rows."""
    existing = upgraded(_filled(existing), header, tab)
    kept, seen = [], set()
    for row in existing[1:]:
        whole = tuple(_normal(row, len(header)))
        if str(row[0]) != day and whole not in seen:
            seen.add(whole)
            kept.append(row)
    # Stable sort on the day column only: rows within a day keep their order.
    return [header, *sorted(kept + new_rows, key=lambda row: str(row[0]))]


def _filled(rows: list[list]) -> list[list]:
    """The rows that hold a value: a new tab reads as [[]]."""
    return [row for row in rows if any(cell not in ("", None) for cell in row)]


def _story_days(tab: pd.DataFrame) -> list[str]:
    """The days a stories tab covers, in order: each story's days from the first of its series to its last seen."""
    days = set()
    for last, series in zip(tab["last_seen"], tab["items_per_day"], strict=True):
        end = datetime.fromisoformat(str(last))
        counts = str(series).split(",")
        days |= {
            (end - timedelta(days=len(counts) - 1 - n)).date().isoformat() for n, c in enumerate(counts) if c != "0"
        }
    return sorted(days)


def upgraded(rows: list[list], header: list[str], tab: str | None = None) -> list[list]:
    """A tab's rows under `header`: as they are, or moved column by column from an earlier layout's header
    (PREVIOUS_HEADERS), new columns blank. Any other header raises ValueError: the tab is not the layout's."""
    old = [str(h) for h in rows[0]] if rows else header
    if old == header:
        return rows
    if old in [previous for kind, headers in PREVIOUS_HEADERS.items() if TABS[kind] == header for previous in headers]:
        at = {column: i for i, column in enumerate(old)}
        # A Sheets row leaves out its trailing empty cells, so a column may lie past the row's end.
        return [header, *([row[at[c]] if at.get(c, len(row)) < len(row) else "" for c in header] for row in rows[1:])]
    where = f"tab {tab!r}: " if tab else ""
    raise ValueError(
        f"{where}header row {rows[0]} differs from the layout v{LAYOUT_VERSION} header {header}; "
        "move the old tab aside or migrate it before exporting"
    )


def day_rows(
    existing: dict[str, list[list]], day: str, tables: dict[str, pd.DataFrame], now: datetime | None = None
) -> dict[str, list[list]]:
    """Every row, header first, of the tabs that writing `day` changes: its month's tabs, then the index.

    `existing` holds the current rows of those tabs (a missing tab is empty); other months are untouched."""
    month = month_of(day)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tabs, listed = {}, []
    for kind, header in TABS.items():
        title = tab_name(kind, month)
        if kind in WHOLE_TABS:
            upgraded(_filled(existing.get(title, [])), header, title)  # a tab of another header is refused here too
            rows = [header, *table_rows(tables[kind])]
            days = _story_days(tables[kind])
        else:
            rows = replace_day(existing.get(title, []), header, day, table_rows(tables[kind]), tab=title)
            days = sorted({str(row[0]) for row in rows[1:]})
        tabs[title] = rows
        listed.append(
            [
                month,
                kind,
                title,
                len(rows) - 1,
                len(days),
                days[0] if days else "",
                days[-1] if days else "",
                stamp,
                LAYOUT_VERSION,
            ]
        )
    tabs[INDEX_TAB] = replace_day(existing.get(INDEX_TAB, []), INDEX_HEADER, month, listed, tab=INDEX_TAB)
    return tabs


def joined(tabs: dict[str, list[list]]) -> dict[str, list[list]]:
    """The month tabs of each kind joined in month order, one header: {"clusters": [...], "items": [...]}.

    For readers that want every day at once (the summary, tests); tabs outside the layout are ignored."""
    out = {kind: [header] for kind, header in TABS.items()}
    for title in sorted((t for t in tabs if t != INDEX_TAB and layout_key(t)), key=layout_key):
        kind = _MONTH_TAB.fullmatch(title)["kind"]
        rows = _filled(tabs[title])
        out[kind].extend(upgraded(rows, TABS[kind], title)[1:])  # a month not exported since v2 or v3 has their header
    return out


def read_layout(path: Path) -> dict[str, list[list]]:
    """A workbook's rows per kind, every month joined: `joined(read_workbook(path))`."""
    return joined(read_workbook(path))


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


class UnreadableWorkbook(ValueError):
    """The workbook file exists but is no readable .xlsx: invalid XML inside, a broken zip, or another kind of file."""


def read_workbook(path: Path) -> dict[str, list[list]]:
    """Every tab of a workbook as rows of values (header first); {} when there is no file.

    A file that is there but cannot be read raises UnreadableWorkbook, naming it and what to do; it is left as it is."""
    from openpyxl import load_workbook

    path = Path(path)
    if not path.exists():
        return {}
    try:
        book = load_workbook(path, read_only=True)
        try:
            # In read-only mode each tab's XML is parsed here, as it is iterated: inside the same guard.
            return {
                sheet.title: [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)]
                for sheet in book
            }
        finally:
            book.close()
    except OSError:
        raise  # permissions, a full disk: not the file's content; the message names the file already
    except (
        Exception
    ) as e:  # BadZipFile, ParseError, KeyError (a part missing), InvalidFileException, openpyxl's ValueErrors...
        failure = f"{type(e).__name__}: {e}"
        raise UnreadableWorkbook(
            f"the workbook {path} cannot be read ({failure[:300]}): it is damaged, or not an .xlsx workbook. It was "
            "left as it "
            f"is and no export can write to it until it is replaced. Move it aside (mv '{path}' '{path}.broken') and "
            "re-run sheet_export for the days it held (dagster asset materialize --select sheet_export "
            "--partition-range FIRST...LAST): the workbook is rebuilt from the Parquet outputs (docs/backups.md). Tabs "
            "of your own in it are not rebuilt: if it held any, restore it from a backup instead"
        ) from e


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


_TEMPORARY_SUFFIX = ".tmp"


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files that saves of this workbook left when their run was killed mid-save; returns them.

    Only names write_workbook's mkstemp makes for this workbook: `.<name>.<random>.tmp`, the random part without a
    dot, so another workbook's (`.<name>.x.<random>.tmp`) never matches. Call it under `_locked`: the lock is held
    for the whole of a save, so no such file belongs to an export in progress."""
    pattern = re.compile(
        re.escape(_temporary_prefix(path)) + r"[a-z0-9_]+" + re.escape(_TEMPORARY_SUFFIX)
    )  # mkstemp's alphabet
    removed = []
    for candidate in path.parent.iterdir():
        if pattern.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
            log.warning("removed %s, left by an export of %s that was stopped mid-save", candidate, path)
    return removed


class Totals(dict):
    """The data rows of each of the day's month tabs after an export; `unchanged`: the sheet already held the day's
    rows, and nothing was written."""

    unchanged: bool = False


def write_workbook(path: Path, day: str, tables: dict[str, pd.DataFrame], now: datetime | None = None) -> Totals:
    """Replace the day's rows in its month's tabs of a local .xlsx workbook and update the index; returns the
    data rows of each of the day's month tabs after the write. Tabs outside the layout are kept as they are.

    A workbook that already holds these rows is left alone: the record beside it (`<name>.exported.json`) says what
    the last export wrote and the file's size and modification time after it. The same day's rows and month's stories
    tab, in a file nobody has touched since, are what a rewrite would give: reading and rewriting a month of 2,000
    items a day costs tens of seconds."""
    from openpyxl import Workbook

    path = Path(path)
    with _locked(path):
        remove_leftovers(path)
        record = _exported_record(path)
        if not (path.exists() and record.get("stamp") == _file_stamp(path)):
            # Someone else touched the file, or it is gone: the record vouches for no day in it any more.
            record = {}
        wanted = _digests(day, tables)
        if _holds(record, day, wanted):
            totals = Totals(record["months"][month_of(day)]["totals"])
            totals.unchanged = True
            return totals
        existing = read_workbook(path)
        changed = day_rows(existing, day, tables, now)
        tabs = existing | changed
        others = [t for t in existing if layout_key(t) is None]
        book = Workbook()
        book.remove(book.active)
        for title in others + sorted((t for t in tabs if layout_key(t) is not None), key=layout_key):
            sheet = book.create_sheet(title)
            for row in tabs[title]:
                sheet.append(row)
            for cells in sheet.iter_rows():
                for cell in cells:
                    if cell.data_type == "f":  # a headline starting with "=" is text, never a live formula
                        cell.data_type = "s"
            if layout_key(title) is not None:
                sheet.freeze_panes = "A2"
        # Write aside, then move: a crash mid-save leaves the previous workbook intact.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=_TEMPORARY_SUFFIX)
        os.close(handle)
        try:
            book.save(temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        totals = Totals({title: len(rows) - 1 for title, rows in changed.items() if title != INDEX_TAB})
        _record_export(path, record, day, wanted, totals)
    return totals


def _digests(day: str, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """What an export of `day` writes, as digests: its rows (clusters and items) and its month's stories tab."""

    def digest(scope: str, kinds) -> str:
        hashed = hashlib.sha256(f"{LAYOUT_VERSION}/{scope}".encode())
        for kind in kinds:
            hashed.update(json.dumps(table_rows(tables[kind]), default=str).encode())
        return hashed.hexdigest()[:32]

    return {
        "rows": digest(day, (k for k in TABS if k not in WHOLE_TABS)),
        "whole": digest(month_of(day), sorted(WHOLE_TABS)),
    }


def _holds(record: dict, day: str, wanted: dict[str, str]) -> bool:
    """Whether the workbook, as the record describes it, holds the day's rows and its month's whole tabs."""
    return (
        record.get("layout_version") == LAYOUT_VERSION
        and record.get("days", {}).get(day) == wanted["rows"]
        and record.get("months", {}).get(month_of(day), {}).get("whole") == wanted["whole"]
    )


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".exported.json")


def _exported_record(path: Path) -> dict:
    """The record of the last export into `path`; {} when there is none or it cannot be read (the export then
    rewrites the workbook, as it would without one)."""
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _record_export(path: Path, record: dict, day: str, wanted: dict[str, str], totals: dict[str, int]) -> None:
    """Write the record after the workbook: a crash between the two leaves a record whose stamp no longer matches, so
    the next export rewrites the workbook."""
    if record.get("layout_version") != LAYOUT_VERSION:
        record = {}
    record.update(layout_version=LAYOUT_VERSION, stamp=_file_stamp(path))
    record.setdefault("days", {})[day] = wanted["rows"]
    # A month's totals change with every day written into it: kept per month, as of the latest write.
    record.setdefault("months", {})[month_of(day)] = {"whole": wanted["whole"], "totals": totals}
    temporary = _record_path(path).with_suffix(".tmp")
    temporary.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    os.replace(temporary, _record_path(path))


class SheetsFull(ValueError):
    """Writing the day would take the spreadsheet past Google's cell limit."""


def write_google_sheet(
    spreadsheet: gspread.Spreadsheet,
    day: str,
    tables: dict[str, pd.DataFrame],
    *,
    now: datetime | None = None,
    max_request_bytes: int | None = None,
    max_cells: int = MAX_CELLS,
) -> Totals:
    """Replace the day's rows in its month's tabs of a Google spreadsheet and update the index; returns the data
    rows of each of the day's month tabs after the write.

    Requests: the sheet list (1), the current rows of the day's tabs (1 values:batchGet, when they exist),
    missing tabs and grid growth (1 spreadsheets.batchUpdate, when needed), one values:batchUpdate per tab
    written (more only past `max_request_bytes` a request), and a grid shrink (1, when rows were removed).
    Grids grow before any value is written and shrink only after every write succeeded, so a failed export
    never cuts other days' rows off; the index is written after the month tabs.
    """
    from newsletter_pipeline.publishing import sheets as api

    month = month_of(day)
    wanted = [tab_name(kind, month) for kind in TABS] + [INDEX_TAB]
    order, grids = _sheet_grids(spreadsheet)
    existing = _read_tabs(spreadsheet, [t for t in wanted if t in grids])
    rows = day_rows(existing, day, tables, now)
    widths = {t: len(header_of(t)) for t in wanted}
    grids = _grow_grids(spreadsheet, day, wanted, rows, widths, order, grids, max_cells)
    _write_rows(spreadsheet, day, wanted, existing, rows, widths, max_request_bytes or api.MAX_REQUEST_BYTES)
    # Shrink, once everything is written.
    shrink = [
        _resize(grids[t][0], len(rows[t]), widths[t]) for t in wanted if grids[t][1:] != (len(rows[t]), widths[t])
    ]
    if shrink:
        try:
            spreadsheet.batch_update({"requests": shrink})
        except api.SheetsUnavailable as e:
            raise e.with_advice(
                f"every row of {day} is written; only the grids are taller than needed until the next export"
            ) from e.__cause__
    return Totals({t: len(rows[t]) - 1 for t in wanted if t != INDEX_TAB})


def _grow_grids(spreadsheet, day, wanted, rows, widths, order, grids, max_cells) -> dict[str, tuple[int, int, int]]:
    """Size the grids before any value is written: missing tabs are created at their final size, present ones grown
    to hold both their old and their new rows, in one atomic request. Returns every wanted tab's (id, rows, columns);
    raises SheetsFull, writing nothing, past `max_cells`."""
    from newsletter_pipeline.publishing import sheets as api

    for attempt in (1, 2):
        requests_, sizes = [], dict(grids)
        titles = list(order)
        for t in sorted((t for t in wanted if t not in grids), key=layout_key):
            at = _insert_at(titles, t)
            titles.insert(at, t)
            sizes[t] = (None, len(rows[t]), widths[t])
            grid = {"rowCount": len(rows[t]), "columnCount": widths[t]}
            requests_.append({"addSheet": {"properties": {"title": t, "index": at, "gridProperties": grid}}})
        for t in (t for t in wanted if t in grids):
            sheet_id, n_rows, n_cols = grids[t]
            grown = (max(n_rows, len(rows[t])), max(n_cols, widths[t]))
            if grown != (n_rows, n_cols):
                sizes[t] = (sheet_id, *grown)
                requests_.append(_resize(sheet_id, *grown))
        _check_cells(sum(r * c for _, r, c in sizes.values()), day, max_cells)
        if not requests_:
            return sizes
        try:
            replies = spreadsheet.batch_update({"requests": requests_})["replies"]
        except api.SheetsUnavailable as e:
            raise e.with_advice(f"no value was written. Re-run {day}") from e.__cause__
        except api.APIError as e:
            # An earlier attempt went through and only its answer was lost: the tabs exist now. Look again.
            if attempt == 1 and e.response.status_code == 400 and "already exists" in str(e):
                order, grids = _sheet_grids(spreadsheet)
                continue
            raise
        for reply in replies:
            if "addSheet" in reply:
                props = reply["addSheet"]["properties"]
                sizes[props["title"]] = (props["sheetId"], *sizes[props["title"]][1:])
        return sizes
    return grids


def _check_cells(cells: int, day: str, max_cells: int) -> None:
    """Refuse a write past Google's cell limit (nothing written yet); warn from 80% of it."""
    if cells > max_cells:
        raise SheetsFull(
            f"writing {day} would take the spreadsheet to {cells:,} cells, over Google's limit of {max_cells:,}; "
            f"nothing was written. Start a new spreadsheet for {month_of(day)} onwards and set "
            "NEWSLETTER_SPREADSHEET_KEY to its key (docs/sheets.md, 'The 10-million-cell limit')"
        )
    if cells > 0.8 * max_cells:
        log.warning(
            "the spreadsheet holds %s cells after writing %s, %.0f%% of Google's limit: plan a new spreadsheet "
            "(docs/sheets.md)",
            f"{cells:,}",
            day,
            100 * cells / max_cells,
        )


def _write_rows(spreadsheet, day, wanted, existing, rows, widths, limit) -> None:
    """Write only rows from the first that differs; rows past the new end are blanked in the same request, so a
    shrink that never happens leaves nothing behind. A tab past the request limit takes several requests, ordered
    so that every other day's row exists somewhere in the tab after each one."""
    from newsletter_pipeline.publishing import sheets as api

    for t in wanted:
        first, region = _changed_rows(existing.get(t, []), rows[t], widths[t])
        bodies = list(api.value_requests(t, first + 1, region, widths[t], limit))
        if len(rows[t]) >= len(existing.get(t, [])):
            bodies.reverse()  # rows move down (or stay): write bottom-up
        for n, body in enumerate(bodies):
            try:
                spreadsheet.values_batch_update(body)
            except api.SheetsUnavailable as e:
                done = wanted[: wanted.index(t)]
                state = (
                    f"tab {t!r} may hold a mix of {day}'s old and new rows (request {n + 1} of {len(bodies)}); every "
                    "other day's rows are still there, and a copy of one is dropped by the next export"
                    if n
                    else f"tab {t!r} was not changed"
                )
                if done:
                    state += f"; {', '.join(map(repr, done))} already {'holds' if len(done) == 1 else 'hold'} "
                    state += f"{day}'s new rows"
                raise e.with_advice(f"{state}. Re-run {day}") from e.__cause__


def _sheet_grids(spreadsheet) -> tuple[list[str], dict[str, tuple[int, int, int]]]:
    """The tabs in order, and each tab's (sheetId, rows, columns)."""
    props = [s["properties"] for s in spreadsheet.fetch_sheet_metadata()["sheets"]]
    grid = {p["title"]: p.get("gridProperties", {}) for p in props}  # a chart sheet has no grid and no cells
    return [p["title"] for p in props], {
        p["title"]: (p["sheetId"], grid[p["title"]].get("rowCount", 0), grid[p["title"]].get("columnCount", 0))
        for p in props
    }


def _read_tabs(spreadsheet, titles: list[str]) -> dict[str, list[list]]:
    """The current rows of some tabs in one request; unformatted, so numbers come back as numbers."""
    if not titles:
        return {}
    from newsletter_pipeline.publishing import sheets as api

    answer = spreadsheet.values_batch_get(
        [api.quoted(t)[:-1] for t in titles], params={"valueRenderOption": "UNFORMATTED_VALUE"}
    )
    return {t: vr.get("values", []) for t, vr in zip(titles, answer["valueRanges"], strict=True)}


def _insert_at(titles: list[str], title: str) -> int:
    """Where a new layout tab goes: after the last layout tab that sorts before it, else before the first
    layout tab, else at the end."""
    key = layout_key(title)
    before = [i for i, t in enumerate(titles) if layout_key(t) is not None and layout_key(t) < key]
    after = [i for i, t in enumerate(titles) if layout_key(t) is not None and layout_key(t) > key]
    return max(before) + 1 if before else min(after) if after else len(titles)


def _resize(sheet_id: int, rows: int, cols: int) -> dict:
    return {
        "updateSheetProperties": {
            "properties": {"sheetId": sheet_id, "gridProperties": {"rowCount": rows, "columnCount": cols}},
            "fields": "gridProperties.rowCount,gridProperties.columnCount",
        }
    }


def _normal(row: list, width: int) -> list:
    row = ["" if v is None else v for v in row[:width]]
    return row + [""] * (width - len(row))


def _changed_rows(old: list[list], new: list[list], width: int) -> tuple[int, list[list]]:
    """(index of the first row that differs, the rows to write from there): the new rows, then blanks over
    old rows past the new end."""
    old_n, new_n = [_normal(r, width) for r in old], [_normal(r, width) for r in new]
    first = 0
    while first < min(len(old_n), len(new_n)) and old_n[first] == new_n[first]:
        first += 1
    if first == len(new_n) == len(old_n):
        return first, []
    return first, new_n[first:] + [[""] * width for _ in range(len(new_n), len(old_n))]
