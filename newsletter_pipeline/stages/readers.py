"""File formats -> raw records: each reader yields (position, record dict or RejectedRecord)."""

import csv
import io
import json
import re
from collections.abc import Callable, Iterator


class RejectedRecord(ValueError):
    """A record that cannot become an item; the message says why."""


Records = Iterator[tuple[int, "dict | RejectedRecord"]]

_UNDECODABLE = re.compile("[\udc80-\udcff]")


def read_jsonl(data: bytes) -> Records:
    """JSON Lines: position is the line number; a bad line spoils only itself."""
    for position, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield position, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield position, RejectedRecord("line is not valid UTF-8")
        except json.JSONDecodeError as error:
            yield position, RejectedRecord(f"malformed JSON: {error.msg} at column {error.colno}")


def read_csv(data: bytes) -> Records:
    """CSV with a header row: position is the record number (1 = first data row)."""
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


# Suffix -> reader. A suffix not listed here is not read (landing listings filter on these).
READERS: dict[str, Callable[[bytes], Records]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
}
