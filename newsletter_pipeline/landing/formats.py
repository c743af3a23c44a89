"""Which reader reads a landing file: the suffix registry, and the unpacking (gzip, UTF-16, byte-order marks) that
comes before any reader."""

import zlib
from collections.abc import Callable
from pathlib import PurePosixPath

from newsletter_pipeline.landing import feeds, mail
from newsletter_pipeline.landing.readers import Records, read_csv, read_json, read_jsonl

# Suffix -> reader. A suffix not listed here is not read (landing listings filter on these).
READERS: dict[str, Callable[[bytes], Records]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".json": read_json,
    ".rss": feeds.read_feed,
    ".atom": feeds.read_feed,
    ".xml": feeds.read_feed,
    ".eml": mail.read_eml,
    ".mbox": mail.read_mbox,
}

# Exports often arrive compressed: `name.jsonl.gz` is read as JSON Lines, and so on for these formats.
GZIP_FORMATS = (".jsonl", ".ndjson", ".csv", ".json")
# A gzip file unpacks to at most this much: past it, it is a mistake (or a bomb), quarantined whole.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


def format_of(name: str) -> str | None:
    """The reader's suffix for a file name (`.jsonl` for `a.jsonl` and `a.jsonl.gz`), or None when no reader
    reads it."""
    path = PurePosixPath(name.lower())
    if path.suffix == ".gz":
        inner = PurePosixPath(path.stem).suffix
        return inner if inner in GZIP_FORMATS else None
    return path.suffix if path.suffix in READERS else None


def unpack(name: str, data: bytes) -> bytes:
    """The bytes a reader takes: gunzipped for `.gz`; for the JSON and CSV formats, UTF-16 (with its byte-order mark)
    re-encoded as UTF-8 and a UTF-8 byte-order mark dropped, so every reader and record count sees the same text.

    Raises ValueError, saying what to do, for a broken or oversized gzip file and for UTF-16 without a byte-order mark.
    """
    if name.lower().endswith(".gz"):
        data = _gunzip(data)
    if format_of(name) not in GZIP_FORMATS:  # feeds and e-mail declare their own encodings
        return data
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"UTF-16 (by its byte-order mark) but not valid UTF-16 at byte {error.start}: save the file as UTF-8"
            ) from None
    if _looks_like_utf16(data[:64]):
        raise ValueError(
            "looks like UTF-16 without a byte-order mark (every other byte is NUL): save the file as UTF-8, or as "
            "UTF-16 with a byte-order mark"
        )
    return data.removeprefix(_UTF8_BOM)


def _looks_like_utf16(head: bytes) -> bool:
    """Mostly NUL at one byte parity and hardly at the other: text in UTF-16, not binary data."""
    if len(head) < 8:
        return False
    even, odd = head[0::2].count(0) / len(head[0::2]), head[1::2].count(0) / len(head[1::2])
    return max(even, odd) >= 0.75 and min(even, odd) <= 0.25


def _gunzip(data: bytes) -> bytes:
    """Every member of a gzip file, unpacked, up to MAX_UNPACKED_BYTES."""
    parts, size = [], 0
    while data:
        unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = unpacker.decompress(data, MAX_UNPACKED_BYTES + 1 - size)
        except zlib.error as error:
            raise ValueError(
                f"not a readable gzip file ({error}): compress it again, or deliver it uncompressed"
            ) from None
        size += len(part)
        if size > MAX_UNPACKED_BYTES:
            raise ValueError(
                f"unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB: split the export into smaller files"
            )
        if not unpacker.eof:
            raise ValueError("gzip file broke off before its end: deliver it again")
        parts.append(part)
        data = unpacker.unused_data.lstrip(b"\0")  # a file may hold several gzip members, padded with NULs
    return b"".join(parts)
