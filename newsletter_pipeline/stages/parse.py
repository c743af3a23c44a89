"""Parse landing files (JSON Lines in the HuffPost layout, CSV with a header) into one items table."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# The normalized items table, in this column order, is what every later stage reads.
ITEM_COLUMNS = [
    "item_id",  # stable: hash of source and link (or of source, day and headline without a link)
    "source_id",  # the source's own id, when the record has one
    "published_at",  # UTC timestamp
    "day",  # YYYY-MM-DD of published_at in UTC: the partition the item belongs to
    "source",  # the newsletter
    "headline",
    "short_description",
    "link",
    "authors",
    "category",
    "origin",  # file:record, where the item came from
]
REJECT_COLUMNS = ["file", "position", "day", "reason"]

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".csv")

# Field names as sources spell them -> our name. The first one present wins.
ALIASES = {
    "headline": ("headline", "title"),
    "short_description": ("short_description", "description", "summary"),
    "link": ("link", "url"),
    "date": ("date", "published", "published_at", "pubdate"),
    "source": ("source", "newsletter", "publisher"),
    "source_id": ("id", "source_id", "guid"),
    "authors": ("authors", "author"),
    "category": ("category",),
}

_WS = re.compile(r"\s+")
# Control characters mean nothing in a headline, and a workbook cell refuses them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# AG News style escapes: "#36;" for "&#36;", and literal backslashes where line breaks were.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_BARE_ENTITY = re.compile(r"(?<!&)#(\d{2,4});")


class RejectedRecord(ValueError):
    """A record that cannot become an item; the message says why."""


@dataclass(frozen=True)
class Parsed:
    """Items, rejected records and dropped repeats of a set of landing files."""

    items: pd.DataFrame
    rejects: pd.DataFrame
    # Records that repeat an item already read (same item_id): counted, not kept twice.
    repeats: pd.DataFrame


def clean_text(value: object) -> str:
    """Unescape HTML entities, drop stray backslashes and fold white space."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = _BARE_ENTITY.sub(r"&#\1;", str(value))
    text = _CONTROL.sub(" ", html.unescape(text).replace("\\", " "))
    return _WS.sub(" ", text).strip()


def make_item_id(source: str, link: str, day: str, headline: str) -> str:
    """A stable id: the same item in a re-delivered file keeps its id."""
    key = f"{source}\x1f{link}" if link else f"{source}\x1f{day}\x1f{headline.lower()}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _pick(record: dict, field: str) -> object:
    for name in ALIASES[field]:
        if name in record and record[name] not in (None, ""):
            return record[name]
    return None


def published_utc(value: object) -> pd.Timestamp | None:
    """A date or date-time as a UTC timestamp; naive times are UTC, so a day never depends on the machine."""
    try:
        stamp = pd.Timestamp(str(value).strip())
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def normalize_record(record: object, default_source: str, origin: str) -> dict:
    """One raw record -> one item row; raises RejectedRecord with the reason."""
    if not isinstance(record, dict):
        raise RejectedRecord(f"expected an object with named fields, got {type(record).__name__}")
    headline = clean_text(_pick(record, "headline"))
    if not headline:
        raise RejectedRecord("missing headline (looked for: headline, title)")
    raw_date = _pick(record, "date")
    if raw_date is None:
        raise RejectedRecord("missing date (looked for: date, published, published_at)")
    published = published_utc(raw_date)
    if published is None:
        raise RejectedRecord(f"unparseable date {str(raw_date)[:40]!r}")
    day = published.strftime("%Y-%m-%d")
    source = clean_text(_pick(record, "source")) or default_source
    link = clean_text(_pick(record, "link"))
    source_id = _pick(record, "source_id")
    return {
        "item_id": make_item_id(source, link, day, headline),
        "source_id": None if source_id is None else str(source_id),
        "published_at": published,
        "day": day,
        "source": source,
        "headline": headline,
        "short_description": clean_text(_pick(record, "short_description")),
        "link": link,
        "authors": clean_text(_pick(record, "authors")),
        "category": clean_text(_pick(record, "category")),
        "origin": origin,
    }


def _records(path: Path):
    """Yield (position, record or exception) for each record of a file."""
    if path.suffix.lower() == ".csv":
        # surrogateescape: a bad byte spoils its own row, not the whole file.
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            # Position is the CSV record number (1 = first data row), stable under quoted line breaks.
            for position, row in enumerate(csv.DictReader(handle), start=1):
                if None in row:
                    yield position, RejectedRecord("row has more fields than the header")
                elif any(_UNDECODABLE.search(v) for v in row.values() if isinstance(v, str)):
                    yield position, RejectedRecord("row is not valid UTF-8")
                else:
                    yield position, row
        return
    with path.open("rb") as handle:
        for position, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield position, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield position, RejectedRecord("line is not valid UTF-8")
            except json.JSONDecodeError as error:
                yield position, RejectedRecord(f"malformed JSON: {error.msg} at column {error.colno}")


def source_from_filename(path: Path) -> str:
    """A file without a source field names its newsletter: morning_brief.jsonl -> 'morning brief'."""
    return path.stem.replace("_", " ").replace("-", " ").strip()


def parse_file(path: Path) -> Parsed:
    """Parse one landing file; a record that fails is rejected with its position and reason."""
    items, rejects = [], []
    default_source = source_from_filename(path)
    try:
        for position, record in _records(path):
            try:
                if isinstance(record, Exception):
                    raise record
                items.append(normalize_record(record, default_source, f"{path.name}:{position}"))
            except RejectedRecord as error:
                # A rejected record with a readable date is filed under its day's quarantine.
                stamp = published_utc(_pick(record, "date")) if isinstance(record, dict) else None
                day = None if stamp is None else stamp.strftime("%Y-%m-%d")
                rejects.append({"file": str(path), "position": position, "day": day, "reason": str(error)})
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        rejects.append({"file": str(path), "position": 0, "day": None, "reason": f"unreadable file: {error}"})
    items_frame = _frame(items, ITEM_COLUMNS)
    return Parsed(items_frame, _frame(rejects, REJECT_COLUMNS), items_frame.iloc[0:0])


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    if "published_at" in columns:
        frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    return frame


def landing_files(landing_dir: Path) -> list[Path]:
    """The files the pipeline reads, in a stable order."""
    if not landing_dir.exists():
        return []
    return sorted(p for p in landing_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def parse_landing(landing_dir: Path) -> Parsed:
    """Parse every landing file; exact repeats of an item (same item_id) keep their first copy."""
    parsed = [parse_file(path) for path in landing_files(landing_dir)]
    items = pd.concat([_frame([], ITEM_COLUMNS)] + [p.items for p in parsed], ignore_index=True)
    rejects = pd.concat([_frame([], REJECT_COLUMNS)] + [p.rejects for p in parsed], ignore_index=True)
    repeated = items.duplicated("item_id", keep="first")
    repeats = items[repeated].reset_index(drop=True)
    items = items[~repeated].sort_values(["published_at", "item_id"], kind="stable")
    return Parsed(items.reset_index(drop=True), rejects.reset_index(drop=True), repeats)


def items_for_day(parsed: Parsed, day: str) -> Parsed:
    """The slice of a parse that belongs to one day."""
    return Parsed(*(frame[frame["day"] == day].reset_index(drop=True) for frame in (parsed.items, parsed.rejects, parsed.repeats)))
