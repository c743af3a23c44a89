"""The reader contract (a reader takes a file's bytes and yields (position, record dict, RejectedRecord or Notice)) and
the tabular readers: JSON Lines, JSON arrays, CSV. Feeds and e-mail have modules of their own; formats.py registers
all."""

import csv
import io
import json
import re
from collections.abc import Iterator


class RejectedRecord(ValueError):
    """A record that cannot become an item; the message says why.

    `date`, when a reader knows it (an email's Date header), lets the quarantine file the record under its day.
    """

    def __init__(self, message: str, *, date: str | None = None):
        super().__init__(message)
        self.date = date


class Notice(str):
    """Something a reader has to say about a file that is not a record (an e-mail that gave far fewer items than it
    has sections, say): parse_file logs it as a warning naming the file; it counts as no record."""


Records = Iterator[tuple[int, "dict | RejectedRecord | Notice"]]

# Fields of any length are read, so that the record-level size limit (parse.MAX_FIELD_CHARS) quarantines an
# oversized field instead of csv stopping the whole file at its own 131,072-character limit.
csv.field_size_limit(2**31 - 1)

_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _refuse_binary(data: bytes) -> None:
    """Text formats hold no NUL bytes: a file that does is binary, and is quarantined whole, not line by line."""
    if b"\x00" in data[:65536]:
        raise ValueError("binary data (NUL bytes), not a text file: check what was saved under this name")


def _jsonl_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of a JSON Lines file that hold something (blank lines are no records)."""
    return ((n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip())


def read_jsonl(data: bytes) -> Records:
    """JSON Lines: position is the line number; a bad line spoils only itself."""
    _refuse_binary(data)
    for position, raw in _jsonl_lines(data):
        try:
            yield position, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield position, RejectedRecord("line is not valid UTF-8")
        except json.JSONDecodeError as error:
            yield position, RejectedRecord(f"malformed JSON: {error.msg} (column {error.colno})")
        except (ValueError, RecursionError) as error:  # a 5,000-digit number, nesting 100,000 deep
            yield position, RejectedRecord(f"JSON that cannot be read: {type(error).__name__}: {str(error)[:120]}")


def read_csv(data: bytes) -> Records:
    """CSV with a header row: position is the record number (1 = first data row; blank lines are no rows).

    The delimiter is detected from the first lines (`,`, `;`, tab or `|`), as spreadsheet exports in many locales use
    `;`.
    """
    _refuse_binary(data)
    try:
        header, rows = _csv_rows(data)
        for position, row in rows:
            if len(row) > len(header):
                yield position, RejectedRecord("row has more fields than the header")
            elif any(_UNDECODABLE.search(v) for v in row):
                yield position, RejectedRecord("row is not valid UTF-8")
            else:
                yield position, dict(zip(header, row + [None] * (len(header) - len(row)), strict=True))
    except csv.Error as error:
        raise ValueError(f"malformed CSV: {error}") from None


def _csv_rows(data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the numbered data rows of a CSV file. A blank line is no row (csv.DictReader's rule too):
    counting it would invent a record that never existed."""
    # surrogateescape: a bad byte spoils its own row, not the whole file.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    rows = (row for row in csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text)) if row)
    header = next(rows, [])
    return header, enumerate(rows, start=1)


def csv_delimiter(text: str) -> str:
    """The delimiter of a CSV file, read off its first lines by csv.Sniffer; `,` when they say nothing."""
    sample = "\n".join(text[:65536].splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


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
        kind = {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
            type(document), "null"
        )
        raise ValueError(
            f"expected a top-level JSON array of records, got {kind}: wrap the records in [ ... ] or deliver them as "
            ".jsonl"
        )
    # Elements that are not objects are left to normalize_record, which rejects them one by one.
    yield from enumerate(document, start=1)


def record_positions(suffix: str, data: bytes) -> list[int] | None:
    """The positions a file's records have, counted without parsing them, so a record no reader reports
    is noticed; None for formats whose records only their reader can find (feeds, e-mail)."""
    try:
        if suffix in (".jsonl", ".ndjson"):
            return [n for n, _ in _jsonl_lines(data)]
        if suffix == ".csv":
            return [n for n, _ in _csv_rows(data)[1]]
        if suffix == ".json":
            document = json.loads(data.decode("utf-8-sig"))
            return list(range(1, len(document) + 1)) if isinstance(document, list) else None
    except (ValueError, RecursionError, csv.Error):
        return None
    return None
