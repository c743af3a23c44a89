"""Find duplicate items: the same story delivered twice is kept once, and the copy is recorded, not lost."""

from urllib.parse import parse_qsl, urlencode

import pandas as pd

from newsletter_pipeline.text import is_tracking_param

DUPLICATE_COLUMNS = ["item_id", "duplicate_of", "day", "reason", "origin"]


def normalize_link(link: str) -> str:
    """A link's identity: lower-case scheme and host, no tracking parameters, fragment or trailing slash."""
    # Plain string splitting: urllib's urlsplit is several times slower, and this runs once per item.
    base, _, query = link.strip().partition("#")[0].partition("?")
    if not base.strip("/"):
        return ""
    scheme, separator, rest = base.partition("://")
    if not separator:
        scheme, rest = "https", base
    host, slash, path = rest.partition("/")
    if query:
        query = urlencode(
            sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not is_tracking_param(k))
        )
    return f"{scheme.lower()}://{host.lower().removeprefix('www.')}{(slash + path).rstrip('/')}" + (
        f"?{query}" if query else ""
    )


def item_keys(link: str, source: str, source_id: object, day: str, headline: str) -> list[tuple[str, ...]]:
    """The keys by which an item duplicates an earlier kept one, in the order `find_duplicates` tries them: each is
    (rule, value...), the rule being the reason it gives. The landing index (items.index) keeps them too."""
    keys = [("same headline and source on the day", day, source, headline.casefold())]
    if source_id is not None and source_id == source_id:  # not None, not NaN
        keys.insert(0, ("same source id", source, source_id))
    normalized = normalize_link(link) if link else ""
    if normalized:  # "#" or "?utm_source=x" alone is no link: it must not make unrelated items one
        keys.insert(0, ("same link", normalized))
    return keys


def find_duplicates(items: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Which items to keep, and a row per duplicate saying of what and why.

    Items are taken in the order given (the caller orders them: earliest first). An item is a duplicate
    when an earlier kept item has the same normalized link, the same source and source id, or the same
    source and headline on the same day. A plain loop over dicts: 1,000 items take a few milliseconds
    (benchmarks/dedupe.py).
    """
    owners: dict[tuple, str] = {}  # (rule, key) -> item_id of the kept item that holds it
    keep, rows = [], []
    # Python lists: iterating Arrow-backed pandas columns element by element is slow.
    columns = zip(*(items[c].tolist() for c in ("item_id", "link", "source", "source_id", "day", "headline", "origin")))
    for item_id, link, source, source_id, day, headline, origin in columns:
        keys = item_keys(link, source, source_id, day, headline)
        owner = next(((key[0], owners[key]) for key in keys if key in owners), None)
        if owner is None:
            for key in keys:
                owners[key] = item_id
            keep.append(True)
        else:
            keep.append(False)
            rows.append(
                {"item_id": item_id, "duplicate_of": owner[1], "day": day, "reason": owner[0], "origin": origin}
            )
    # Text columns even when empty: a day's table has the same schema whether or not other days had duplicates.
    return pd.Series(keep, index=items.index, dtype=bool), pd.DataFrame(rows, columns=DUPLICATE_COLUMNS, dtype="str")
