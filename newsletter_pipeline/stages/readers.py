"""File formats -> raw records: each reader yields (position, record dict or RejectedRecord)."""

import csv
import io
import json
import re
from collections.abc import Callable, Iterator


class RejectedRecord(ValueError):
    """A record that cannot become an item; the message says why.

    `date`, when a reader knows it (an email's Date header), lets the quarantine file the record under its day.
    """

    def __init__(self, message: str, *, date: str | None = None):
        super().__init__(message)
        self.date = date


Records = Iterator[tuple[int, "dict | RejectedRecord"]]

# Fields of any length are read, so that the record-level size limit (parse.MAX_FIELD_CHARS) quarantines an
# oversized field instead of csv stopping the whole file at its own 131,072-character limit.
csv.field_size_limit(2**31 - 1)

_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _refuse_binary(data: bytes) -> None:
    """Text formats hold no NUL bytes: a file that does is binary, and is quarantined whole, not line by line."""
    if b"\x00" in data[:65536]:
        raise ValueError("binary data (NUL bytes), not a text file: check what was saved under this name")


def read_jsonl(data: bytes) -> Records:
    """JSON Lines: position is the line number; a bad line spoils only itself."""
    _refuse_binary(data)
    for position, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield position, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield position, RejectedRecord("line is not valid UTF-8")
        except json.JSONDecodeError as error:
            yield position, RejectedRecord(f"malformed JSON: {error.msg} (column {error.colno})")
        except (ValueError, RecursionError) as error:  # a 5,000-digit number, nesting 100,000 deep
            yield position, RejectedRecord(f"JSON that cannot be read: {type(error).__name__}: {str(error)[:120]}")


def read_csv(data: bytes) -> Records:
    """CSV with a header row: position is the record number (1 = first data row)."""
    _refuse_binary(data)
    # surrogateescape: a bad byte spoils its own row, not the whole file.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    try:
        for position, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=1):
            if None in row:
                yield position, RejectedRecord("row has more fields than the header")
            elif any(_UNDECODABLE.search(v) for v in row.values() if isinstance(v, str)):
                yield position, RejectedRecord("row is not valid UTF-8")
            else:
                yield position, row
    except csv.Error as error:
        raise ValueError(f"malformed CSV: {error}") from None


def read_json(data: bytes) -> Records:
    """A JSON array of objects: position is the element number (1 = first element).

    One syntax error spoils the whole array (a parser cannot resynchronise inside it),
    so it is an error for the file, which parse_file quarantines as 'unreadable file'.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"not valid UTF-8 at byte {error.start}: save the file as UTF-8") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read: deliver flat records") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}; "
            "fix the syntax, or deliver one record a line as JSON Lines (.jsonl)"
        ) from None
    if not isinstance(document, list):
        kind = {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(type(document), "null")
        raise ValueError(f"expected a top-level JSON array of records, got {kind}: wrap the records in [ ... ] or deliver them as .jsonl")
    # Elements that are not objects are left to normalize_record, which rejects them one by one.
    yield from enumerate(document, start=1)


# Feeds and mail live in their own modules, which import RejectedRecord from here: import them when
# first used, so that neither import order can catch a module half-initialised (and feedparser and
# selectolax load only when such a file lands).
def read_feed(data: bytes) -> Records:
    """RSS/Atom (.rss, .atom, .xml): see feeds.read_feed."""
    from newsletter_pipeline.stages import feeds

    return feeds.read_feed(data)


def read_eml(data: bytes) -> Records:
    """One email newsletter (.eml): see mail.read_eml."""
    from newsletter_pipeline.stages import mail

    return mail.read_eml(data)


def read_mbox(data: bytes) -> Records:
    """A mailbox of newsletters (.mbox): see mail.read_mbox."""
    from newsletter_pipeline.stages import mail

    return mail.read_mbox(data)


def record_positions(suffix: str, data: bytes) -> list[int] | None:
    """The positions a file's records have, counted without parsing them, so a record no reader reports
    is noticed; None for formats whose records only their reader can find (feeds, e-mail)."""
    try:
        if suffix in (".jsonl", ".ndjson"):
            return [n for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
        if suffix == ".csv":
            rows = sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8-sig", errors="surrogateescape"), newline="")))
            return list(range(1, rows))  # the header is no record
        if suffix == ".json":
            document = json.loads(data.decode("utf-8-sig"))
            return list(range(1, len(document) + 1)) if isinstance(document, list) else None
    except (ValueError, RecursionError, csv.Error):
        return None
    return None


# Suffix -> reader. A suffix not listed here is not read (landing listings filter on these).
READERS: dict[str, Callable[[bytes], Records]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".json": read_json,
    ".rss": read_feed,
    ".atom": read_feed,
    ".xml": read_feed,
    ".eml": read_eml,
    ".mbox": read_mbox,
}
