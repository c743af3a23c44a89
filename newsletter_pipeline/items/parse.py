"""Parse landing files into one normalized items table; `readers` turns each format into records."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from newsletter_pipeline.items.dedupe import DUPLICATE_COLUMNS, find_duplicates
from newsletter_pipeline.landing.formats import READERS, unpack
from newsletter_pipeline.landing.listing import LandingFile
from newsletter_pipeline.landing.readers import Notice, RejectedRecord, record_positions
from newsletter_pipeline.text import storable, visible

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
# AG News style escapes: "#36;" for "&#36;", and literal backslashes where line breaks were.
_BARE_ENTITY = re.compile(r"(?<!&)#(\d{2,4});")


# Longer than this, a field is not a headline or a summary but a mistake (or an attack): quarantine the record.
MAX_FIELD_CHARS = 20_000
TEXT_FIELDS = ("headline", "short_description", "link", "source", "authors", "category", "source_id")


@dataclass(frozen=True)
class Parsed:
    """Every record of a set of landing files, as exactly one of: an item, a duplicate, a rejected record."""

    items: pd.DataFrame
    rejects: pd.DataFrame  # quarantined: file, position, day (None when it has no usable one), reason
    duplicates: pd.DataFrame  # kept once as an item; each copy recorded with what it duplicates and why
    records: int = 0  # records read; the balance: records == items + duplicates + rejects
    warnings: tuple[str, ...] = ()  # what the readers said about whole files (readers.Notice), each naming its file

    def balanced(self) -> bool:
        """Whether every record read is an item, a duplicate or quarantined."""
        return self.records == len(self.items) + len(self.duplicates) + len(self.rejects)


def clean_text(value: object) -> str:
    """Unescape HTML entities, drop stray backslashes and fold white space."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = _BARE_ENTITY.sub(r"&#\1;", str(value))
    # Controls, lone surrogates (a "\udc80" escape in JSON) and noncharacters (U+FFFF) mean nothing and break a
    # workbook.
    text = storable(html.unescape(text).replace("\\", " "))
    return _WS.sub(" ", text).strip()


def make_item_id(source: str, link: str, day: str, headline: str) -> str:
    """A stable id: the same item in a re-delivered file keeps its id."""
    key = f"{source}\x1f{link}" if link else f"{source}\x1f{day}\x1f{headline.lower()}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


# Values that stand for "nothing" in exports: a JSON NaN, "null" or "None" written by a serializer, only white space.
# Such a value is absent: an id of "NaN" on every record must not make them all one item.
PLACEHOLDERS = frozenset({"", "nan", "null", "none", "undefined"})


def absent(value: object) -> bool:
    """Whether a field's value is no value: None, NaN, empty, white space or a placeholder."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return isinstance(value, str) and value.strip().casefold() in PLACEHOLDERS


def _pick(record: dict, field: str, column_map: dict[str, str] | None = None) -> object:
    """The record's value for one of our fields: a configured column first, then the usual spellings."""
    names = [source for source, ours in (column_map or {}).items() if ours == field] + list(ALIASES[field])
    for name in names:
        if name in record and not absent(record[name]):
            return record[name]
    return None


# A date must name one day, unambiguously: "05/11/2026" could be either of two, "Nov 2026" or "07:15" none.
DATE_FORMS = "ISO 8601 (2026-11-16, 2026-11-16T07:15:00+01:00) or RFC 2822 (Mon, 16 Nov 2026 07:15:00 +0100)"
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].+)?")
_RFC_2822 = re.compile(
    r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s+[+-]?\w+)?(?:\s+\(.*\))?"
)


def published_utc(value: object, date_format: str | None = None) -> pd.Timestamp | None:
    """A full date or date-time as a UTC timestamp, or None when it names no single day.

    Accepted: ISO 8601 with a full date, RFC 2822, and `date_format` (a strptime format) when set. Naive times are
    UTC, so a day never depends on the machine.
    """
    text = str(value).strip()
    stamp = None
    if date_format:
        with contextlib.suppress(ValueError):
            stamp = dt.datetime.strptime(text, date_format)
    if stamp is None and _ISO_DAY.fullmatch(text):
        with contextlib.suppress(ValueError):
            stamp = dt.datetime.fromisoformat(text)
    if stamp is None and _RFC_2822.fullmatch(text):
        with contextlib.suppress(ValueError, TypeError, IndexError):
            stamp = email.utils.parsedate_to_datetime(text)
    if stamp is None:
        return None
    try:
        stamp = pd.Timestamp(stamp)
    except (ValueError, OverflowError):  # a year pandas cannot hold
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def date_reason(value: object, date_format: str | None = None) -> str:
    """Why a date was refused: the value and the forms that are accepted."""
    accepted = DATE_FORMS + (
        f", or {date_format} (NEWSLETTER_DATE_FORMAT)"
        if date_format
        else "; for another format set NEWSLETTER_DATE_FORMAT (a strptime format such as %d/%m/%Y)"
    )
    return f"unparseable date {str(value)[:40]!r}: a date must name a full day as {accepted}"


def normalize_record(
    record: object,
    default_source: str,
    origin: str,
    column_map: dict[str, str] | None = None,
    date_format: str | None = None,
) -> dict:
    """One raw record -> one item row; raises RejectedRecord with the reason."""
    if not isinstance(record, dict):
        raise RejectedRecord(f"expected an object with named fields, got {type(record).__name__}")
    values = {field: _pick(record, field, column_map) for field in ALIASES}
    for field in TEXT_FIELDS:
        value = values[field]
        if isinstance(value, (dict, list, bool)):
            raise RejectedRecord(f"{field} is a {type(value).__name__}, expected text")
        if value is not None and len(str(value)) > MAX_FIELD_CHARS:
            raise RejectedRecord(f"{field} has {len(str(value)):,} characters, over the {MAX_FIELD_CHARS:,} limit")
    headline = clean_text(values["headline"])
    if not headline:
        raise RejectedRecord("missing headline (looked for: headline, title)")
    if not visible(headline):
        raise RejectedRecord("empty headline: it holds only invisible characters (zero-width spaces and the like)")
    if values["date"] is None:
        raise RejectedRecord("missing date (looked for: date, published, published_at)")
    published = (
        published_utc(values["date"], date_format) if not isinstance(values["date"], (dict, list, bool)) else None
    )
    if published is None:
        raise RejectedRecord(date_reason(values["date"], date_format))
    day = published.strftime("%Y-%m-%d")
    source = clean_text(values["source"]) or clean_text(default_source)
    link = clean_text(values["link"])
    return {
        "item_id": make_item_id(source, link, day, headline),
        "source_id": None if values["source_id"] is None else clean_text(values["source_id"]),
        "published_at": published,
        "day": day,
        "source": source,
        "headline": headline,
        "short_description": clean_text(values["short_description"]),
        "link": link,
        "authors": clean_text(values["authors"]),
        "category": clean_text(values["category"]),
        "origin": origin,
    }


def parse_file(file: LandingFile, column_map: dict[str, str] | None = None, date_format: str | None = None) -> Parsed:
    """Parse one landing file: every record becomes an item or a rejected record with its position and reason.

    A record that the reader never reports (the file broke off halfway) is rejected too, at its position,
    so nothing disappears without a row that says why. A file that cannot be read at all is one record.
    """
    items, rejects, warnings = [], [], []

    def reject(position: int, reason: str, day: str | None = None) -> None:
        rejects.append({"file": file.name, "position": position, "day": day, "reason": reason})

    def whole_file(reason: str) -> Parsed:
        reject(0, reason)
        return Parsed(
            _frame([], ITEM_COLUMNS), _frame(rejects, REJECT_COLUMNS), _frame([], DUPLICATE_COLUMNS), 1, tuple(warnings)
        )

    if file.refusal:
        return whole_file(file.refusal)
    try:
        data = unpack(file.name, file.load())
    except (OSError, ValueError) as error:
        return whole_file(f"unreadable file: {error}")
    expected = record_positions(file.suffix, data)
    seen: set[int] = set()
    try:
        for position, record in READERS[file.suffix](data):
            if isinstance(record, Notice):
                warnings.append(f"{file.name}: {record}")
                continue
            seen.add(position)
            try:
                if isinstance(record, Exception):
                    raise record
                items.append(
                    normalize_record(record, file.default_source, f"{file.name}:{position}", column_map, date_format)
                )
            except RejectedRecord as error:
                # A rejected record with a readable date is filed under its day's quarantine.
                raw_date = (
                    _pick(record, "date", column_map) if isinstance(record, dict) else getattr(record, "date", None)
                )
                stamp = None if raw_date is None else published_utc(raw_date, date_format)
                reject(position, str(error), None if stamp is None else stamp.strftime("%Y-%m-%d"))
            except (ValueError, TypeError, UnicodeError, RecursionError) as error:  # a record no rule foresaw
                reject(position, f"record cannot be read: {type(error).__name__}: {str(error)[:120]}")
    except (OSError, ValueError, RecursionError) as error:  # the file as a whole: unreadable, or not its format
        if not seen:
            return whole_file(f"unreadable file: {error}")
        for position in sorted(set(expected or []) - seen) or [0]:
            reject(position, f"not read: the file broke off after record {max(seen)}: {error}")
    for position in sorted(set(expected or []) - seen - {r["position"] for r in rejects}):
        reject(position, "not read: the reader skipped this record")
    records = len(expected) if expected is not None else len(items) + len(rejects)
    return Parsed(
        _frame(items, ITEM_COLUMNS),
        _frame(rejects, REJECT_COLUMNS),
        _frame([], DUPLICATE_COLUMNS),
        records,
        tuple(warnings),
    )


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    if "published_at" in columns:
        # Microseconds, as every parsed date has them: an empty frame would otherwise be in seconds, and a table's
        # type would depend on whether other files had items.
        frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True).astype("datetime64[us, UTC]")
    return frame


def parse_landing(
    files: Iterable[LandingFile],
    column_map: dict[str, str] | None = None,
    first_day: str | None = None,
    last_day: str | None = None,
    date_format: str | None = None,
) -> Parsed:
    """Parse every landing file into items, duplicates and quarantined records; nothing is dropped.

    Items dated outside [first_day, last_day] belong to no partition: they are quarantined with no day.
    """
    return combine([parse_file(file, column_map, date_format) for file in files], first_day, last_day)


def combine(parsed: list[Parsed], first_day: str | None = None, last_day: str | None = None) -> Parsed:
    """The files' `parse_file` results, in listing order, as one: items dated outside [first_day, last_day]
    quarantined with no day, duplicates across all files decided, earliest item kept."""
    items = pd.concat([_frame([], ITEM_COLUMNS)] + [p.items for p in parsed], ignore_index=True)
    rejects = [_frame([], REJECT_COLUMNS)] + [p.rejects for p in parsed]
    outside = ((items["day"] < first_day) if first_day else False) | ((items["day"] > last_day) if last_day else False)
    if outside is not False and outside.any():
        file_and_position = items.loc[outside, "origin"].str.rsplit(":", n=1, expand=True)
        rejects.append(
            pd.DataFrame(
                {
                    "file": file_and_position[0],
                    "position": file_and_position[1].astype("int64"),
                    "day": None,
                    "reason": "date "
                    + items.loc[outside, "day"]
                    + f" is outside the partitions ({first_day} to {last_day})",
                }
            )
        )
        items = items[~outside]
    # Earliest first; equal times keep file order (files are listed sorted), so the kept copy is deterministic.
    items = items.sort_values("published_at", kind="stable").reset_index(drop=True)
    keep, duplicates = find_duplicates(items)
    rejects = pd.concat(rejects, ignore_index=True)
    warnings = tuple(warning for p in parsed for warning in p.warnings)
    return Parsed(items[keep].reset_index(drop=True), rejects, duplicates, sum(p.records for p in parsed), warnings)


def items_for_day(parsed: Parsed, day: str) -> Parsed:
    """The slice of a parse that belongs to one day."""
    items, rejects, duplicates = (
        frame[frame["day"] == day].reset_index(drop=True) for frame in (parsed.items, parsed.rejects, parsed.duplicates)
    )
    return Parsed(items, rejects, duplicates, len(items) + len(rejects) + len(duplicates))
