"""RSS and Atom feed files (.rss, .atom, .xml) -> raw records, one per entry, with feedparser."""

from __future__ import annotations

import calendar
import io
import re
from datetime import UTC, datetime

import feedparser
from selectolax.lexbor import LexborHTMLParser

from newsletter_pipeline.landing.readers import Records, RejectedRecord
from newsletter_pipeline.text import clean_link, node_text

_WS = re.compile(r"\s+")


def html_to_text(value: str | None) -> str:
    """Feed summaries are HTML fragments: keep their words, drop the markup."""
    if not value:
        return ""
    if "<" not in value and "&" not in value:
        return _WS.sub(" ", value).strip()
    body = LexborHTMLParser(value).body
    # Block-aware: "<p>one</p><p>two</p>" reads "one two", and "<em>every</em>thing" stays one word.
    return "" if body is None else node_text(body)


def _entry_date(entry: dict) -> str | None:
    """published, else updated, as an ISO string in UTC; a date feedparser cannot read is passed on as written."""
    for name in ("published", "updated", "created"):
        parsed = entry.get(f"{name}_parsed")
        if parsed:
            # feedparser normalises every date to a UTC struct_time; timegm reads it as UTC, never local time.
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC).isoformat()
    for name in ("published", "updated", "created"):
        if entry.get(name):
            return entry[
                name
            ]  # normalize_record then quarantines it as 'unparseable date' if pandas cannot read it either
    return None


def _authors(entry: dict) -> str | None:
    names = [
        author.get("name") or author.get("email") for author in entry.get("authors") or [] if isinstance(author, dict)
    ]
    names = [name for name in names if name]
    return ", ".join(names) if names else entry.get("author") or None


def read_feed(data: bytes) -> Records:
    """One record per feed entry: position is the entry number (1 = first entry in the file).

    An entry without a title is rejected; a file that is not a feed at all raises ValueError
    (parse_file quarantines it as an unreadable file).
    """
    # A BytesIO, never the bytes themselves: feedparser treats a bytes argument that names a file as that file.
    feed = feedparser.parse(io.BytesIO(data), resolve_relative_uris=True, sanitize_html=True)
    if not feed.get("entries") and (feed.get("bozo") or not feed.get("version")):
        reason = feed.get("bozo_exception") or "no <rss>, <feed> or <rdf:RDF> root element"
        raise ValueError(f"not an RSS or Atom feed ({reason}): deliver a well-formed RSS 2.0 or Atom 1.0 document")
    source = html_to_text(feed.get("feed", {}).get("title")) or None  # None: parse falls back to the file's name
    for position, entry in enumerate(feed.entries, start=1):
        headline = html_to_text(entry.get("title"))
        if not headline:
            yield position, RejectedRecord("feed entry has no title", date=_entry_date(entry))
            continue
        summary = entry.get("summary") or next(
            (c.get("value") for c in entry.get("content") or [] if c.get("value")), None
        )
        tags = [tag.get("term") for tag in entry.get("tags") or [] if tag.get("term")]
        link = entry.get("link") or ""
        yield (
            position,
            {
                "headline": headline,
                "link": clean_link(link) or link,
                "short_description": html_to_text(summary),
                "date": _entry_date(entry),
                "source": source,
                "id": entry.get("id") or None,
                "authors": _authors(entry),
                "category": tags[0] if tags else None,
            },
        )
