"""Text and link helpers shared by the readers, the parser and the sinks.

Characters that no output can hold: one rule for the parser (cleaning fields) and the sinks (cells).

XML 1.0, which a workbook is made of, allows tab, line feed, carriage return, U+0020..U+D7FF, U+E000..U+FFFD
and U+10000..U+10FFFF. Everything else (C0 controls, lone surrogates, U+FFFE, U+FFFF) breaks the file for good.
Unicode's other noncharacters (U+FDD0..U+FDEF, U+nFFFE and U+nFFFF of every plane) are XML-legal but never text:
they go too.

Links: click-tracking redirects unwrapped and tracking parameters dropped, one rule for e-mail, feeds and the
duplicate check, so the same story from two sources has the same link. HTML: visible text of a node, in words.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

from selectolax.lexbor import LexborNode

# Controls read as word breaks: "a\x00b" is two words, not one.
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NONCHARACTERS = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
    + "]"
)


def storable(text: str) -> str:
    """`text` with controls as spaces and surrogates and noncharacters removed: safe for XML, Parquet and Sheets."""
    return NONCHARACTERS.sub("", CONTROLS.sub(" ", text))


def visible(text: str) -> bool:
    """Whether `text` shows anything: a headline of zero-width spaces, joiners or marks alone is empty."""
    return any(unicodedata.category(char)[0] not in "CZ" for char in text)


# ---------------------------------------------------------------- links

# Query parameters that only say who clicked or which campaign sent the reader (besides utm_*): not part of the
# link. One set for every source, so the same story from an email and from a feed has the same link.
TRACKING_PARAMS = frozenset(
    {
        "mc_cid",
        "mc_eid",
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "twclid",
        "ttclid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "vero_id",
        "vero_conv",
        "oly_anon_id",
        "oly_enc_id",
        "rb_clickid",
        "s_cid",
        "ck_subscriber_id",
        "_ga",
        "_gl",
        "ml_subscriber",
        "ml_subscriber_hash",
        "sc_cid",
        "cmpid",
        "ncid",
    }
)


# Query parameters that carry the real URL in click-tracking redirects (and Google's /url?q=).
REDIRECT_PARAMS = frozenset(
    {
        "url",
        "u",
        "redirect",
        "redirect_url",
        "redirect_uri",
        "redirecturl",
        "target",
        "link",
        "q",
        "dest",
        "destination",
        "to",
        "goto",
        "out",
        "r",
        "href",
    }
)
_EMBEDDED_URL = re.compile(r"https?(?::|%3A)(?:/|%2F){2}", re.IGNORECASE)


def is_http(url: str) -> bool:
    """Whether `url` is a web address (http or https), the only links an item may have."""
    return url[:8].lower().startswith(("http://", "https://"))


def _unquote_url(value: str) -> str:
    # A redirect parameter is sometimes encoded twice (a tracker wrapping a tracker): decode until it reads as a URL.
    for _ in range(3):
        if is_http(value.strip()):
            break
        value = unquote(value)
    return value.strip()


def _inner_url(url: str) -> str | None:
    """The URL a click-tracking redirect leads to, or None when `url` is not a recognisable redirect."""
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in REDIRECT_PARAMS:
            value = _unquote_url(value)
            if is_http(value):
                return value
    found = _EMBEDDED_URL.search(parts.path)
    if found:
        tail = parts.path[found.start() :]
        if "%" in found.group(0):
            # Encoded whole (https:%2F%2F...): it ends at the next raw slash, where the tracker's own path resumes.
            return unquote(tail.split("/", 1)[0])
        # Written out (https://...): the rest of the address, query included, belongs to the inner URL.
        return tail + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return None


def unwrap_redirect(url: str) -> str:
    """Follow click-tracking redirects written into the link itself (no network): query parameters or an encoded
    path."""
    for _ in range(5):  # trackers nest (a mail tracker around a shortener's tracker); bounded so a loop cannot spin
        inner = _inner_url(url)
        if inner is None or inner == url:
            break
        url = inner
    return url


def is_tracking_param(name: str) -> bool:
    """Whether a query parameter only tracks the click (utm_* and TRACKING_PARAMS), and so is no part of the link."""
    name = name.lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


def strip_tracking(url: str) -> str:
    """Drop utm_* and other tracking parameters; the rest of the query keeps its order and its encoding."""
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not is_tracking_param(unquote_plus(p.split("=", 1)[0])))
    fragment = "" if is_tracking_param(parts.fragment.split("=", 1)[0]) else parts.fragment
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, fragment))


def clean_link(href: str) -> str | None:
    """The article's own http(s) URL behind an email link, or None for mailto:, anchors and other non-web links."""
    href = WHITESPACE.sub("", href or "")  # quoted-printable line breaks sometimes leave white space inside an href
    if not is_http(href):
        return None
    url = unwrap_redirect(href)
    return strip_tracking(url) if is_http(url) else None


# ---------------------------------------------------------------- HTML text

WHITESPACE = re.compile(r"\s+")
INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060\ufeff]")  # preheader padding and zero-width joiners

BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "td",
        "th",
        "tr",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "section",
        "article",
        "aside",
        "header",
        "footer",
        "blockquote",
        "center",
        "pre",
        "hr",
        "main",
        "nav",
    }
)


def fold(text: str) -> str:
    """White space runs as one space, invisible characters (soft hyphens, zero-width joiners) removed, ends trimmed."""
    return WHITESPACE.sub(" ", INVISIBLE.sub("", text)).strip()


def node_text(node: LexborNode, skip: frozenset[int] = frozenset()) -> str:
    """Visible text with a space at block and line breaks (never inside a word); `skip` leaves out those elements."""
    if node.tag == "-text":
        return fold(node.text_content or "")
    out: list[str] = []
    stack: list[LexborNode | str] = list(reversed(list(node.iter(include_text=True))))
    while stack:  # iterative: hostile markup can nest deeper than Python's recursion limit
        current = stack.pop()
        if isinstance(current, str):
            out.append(current)
            continue
        tag = current.tag
        if tag == "-text":
            out.append(current.text_content or "")
        elif tag.startswith("-") or current.mem_id in skip:
            continue  # comments, and links that are not part of the prose
        else:
            if tag in BLOCK_TAGS or tag == "br":
                out.append(" ")
                stack.append(" ")
            stack.extend(reversed(list(current.iter(include_text=True))))
    return fold("".join(out))
