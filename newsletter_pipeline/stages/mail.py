"""Email newsletters (.eml, .mbox) -> raw records: one record per item of each newsletter.

A newsletter email holds many items, one per story section, in one of four layouts:
- a heading per story with paragraphs under it, and template tables (Mailchimp, Substack) with a "Read more" button
  per story: read by sections (`heading_sections`) when the HTML has two or more story headings;
- a list of headline links, each with a blurb (`html_items`): a link that opens its line and reads like a headline
  (at least four words), with the text after it as its summary; links inside running text are citations, not items;
- plain text with numbered items and bare URLs (`numbered_items`), or headline and URL lines (`text_items`).
Click-tracking redirects are unwrapped and tracking parameters dropped, so the link is the article's own; the greeting,
the issue's title, footer, social, sponsor and job sections are left out. The sender names the source and the Date
header dates every item. Everything here is a pure function of the bytes, so a re-read gives the same records.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from newsletter_pipeline.stages.dedupe import TRACKING_PARAMS
from newsletter_pipeline.stages.readers import Notice, Records, RejectedRecord

# Positions: message_number * 100,000 + item_number, so every item of a mailbox has its own position;
# position message_number * 100,000 itself stands for the message as a whole (unparseable, or no items).
MESSAGE_STRIDE = 100_000
MAX_ITEMS = MESSAGE_STRIDE - 1
MAX_SUMMARY_CHARS = 1000  # a summary, not the article: a long block would otherwise trip the field-size quarantine

# Query parameters that carry the real URL in click-tracking redirects (and Google's /url?q=).
REDIRECT_PARAMS = frozenset({
    "url", "u", "redirect", "redirect_url", "redirect_uri", "redirecturl", "target", "link", "q", "dest", "destination",
    "to", "goto", "out", "r", "href",
})
SOCIAL_HOSTS = (
    "twitter.com", "x.com", "t.co", "facebook.com", "fb.com", "fb.me", "linkedin.com", "lnkd.in", "instagram.com",
    "youtube.com", "youtu.be", "tiktok.com", "pinterest.com", "threads.net", "bsky.app", "whatsapp.com", "wa.me", "t.me",
)
# Path segments of footer pages; whole segments only, and only names no article section uses (not "legal",
# "terms" or "manage": reuters.com/legal/... is news).
FOOTER_SEGMENTS = frozenset({
    "unsubscribe", "unsub", "optout", "opt-out", "manage-preferences", "email-preferences", "privacy-policy",
    "terms-of-service", "terms-of-use", "webversion", "web-version", "view-in-browser", "forward-to-a-friend",
})
# Footer link texts are short ("Unsubscribe", "Manage your preferences"); a long text is a headline, even
# one about unsubscribing.
FOOTER_TEXT_MAX_WORDS = 7
_FOOTER_TEXT = re.compile(
    r"unsubscribe|\bopt[ -]?out\b|\bview (?:this |the )?(?:e-?mail |message |newsletter |issue )?(?:in|on) (?:your |a |the )?(?:web )?browser"
    r"|\bview (?:it |this )?online\b|\b(?:web|online|browser) version\b|\bmanage (?:your )?(?:e-?mail |subscription )?(?:preferences|subscriptions?)\b"
    r"|\bupdate (?:your )?(?:e-?mail |subscription )?(?:preferences|subscriptions?|profile)\b|\b(?:e-?mail|subscription) preferences\b"
    r"|\bprivacy (?:policy|notice|statement|center)\b|^privacy$|\bterms (?:of (?:service|use)|and conditions|& conditions)\b|^terms$"
    r"|\bforward (?:this|it|to a friend)\b|\baddress book\b|^(?:subscribe|sign up)\b|\badvertise with us\b",
    re.IGNORECASE,
)
_SOCIAL_TEXT = re.compile(r"^(?:share|tweet|post|pin|follow|like)\b|\bshare (?:this|on)\b|\bfollow us\b", re.IGNORECASE)
_SHARE_PATH = re.compile(r"/(?:share|sharer|sharing|sharearticle|intent/(?:tweet|post))(?:[/.?]|$)", re.IGNORECASE)
_SPONSOR = re.compile(
    r"\bsponsor(?:s|ed|ship)?\b|\badvertisement\b|\bpresented by\b|\bpartner content\b|\bpaid (?:post|content|partnership)\b"
    r"|\bbrought to you by\b",
    re.IGNORECASE,
)
# Link texts that invite a click rather than name a story.
_CALL_TO_ACTION = re.compile(
    r"^(?:click here|read (?:more|on|the (?:full|whole) \w+)|continue reading|learn more|see more|find out more|view (?:more|all)|more)\b",
    re.IGNORECASE,
)
_EMBEDDED_URL = re.compile(r"https?(?::|%3A)(?:/|%2F){2}", re.IGNORECASE)
_WORD = re.compile(r"\w")
_WS = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060\ufeff]")  # preheader padding and zero-width joiners
_EDGE_PUNCTUATION = re.compile(r"^[\s\-–—:|•·»›→>]+|[\s\-–—:|•·«‹←<]+$")

BLOCK_TAGS = frozenset({
    "p", "div", "td", "th", "tr", "table", "tbody", "thead", "tfoot", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3",
    "h4", "h5", "h6", "section", "article", "aside", "header", "footer", "blockquote", "center", "pre", "hr", "main", "nav",
})


# ---------------------------------------------------------------- links


def _is_http(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _unquote_url(value: str) -> str:
    # A redirect parameter is sometimes encoded twice (a tracker wrapping a tracker): decode until it reads as a URL.
    for _ in range(3):
        if _is_http(value.strip()):
            break
        value = unquote(value)
    return value.strip()


def _inner_url(url: str) -> str | None:
    """The URL a click-tracking redirect leads to, or None when `url` is not a recognisable redirect."""
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in REDIRECT_PARAMS:
            value = _unquote_url(value)
            if _is_http(value):
                return value
    found = _EMBEDDED_URL.search(parts.path)
    if found:
        tail = parts.path[found.start():]
        if "%" in found.group(0):
            # Encoded whole (https:%2F%2F...): it ends at the next raw slash, where the tracker's own path resumes.
            return unquote(tail.split("/", 1)[0])
        # Written out (https://...): the rest of the address, query included, belongs to the inner URL.
        return tail + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return None


def unwrap_redirect(url: str) -> str:
    """Follow click-tracking redirects written into the link itself (no network): query parameters or an encoded path."""
    for _ in range(5):  # trackers nest (a mail tracker around a shortener's tracker); bounded so a loop cannot spin
        inner = _inner_url(url)
        if inner is None or inner == url:
            break
        url = inner
    return url


def _is_tracking_param(name: str) -> bool:
    name = name.lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


def strip_tracking(url: str) -> str:
    """Drop utm_* and other tracking parameters; the rest of the query keeps its order and its encoding."""
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking_param(unquote_plus(p.split("=", 1)[0])))
    fragment = "" if _is_tracking_param(parts.fragment.split("=", 1)[0]) else parts.fragment
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, fragment))


def clean_link(href: str) -> str | None:
    """The article's own http(s) URL behind an email link, or None for mailto:, anchors and other non-web links."""
    href = _WS.sub("", href or "")  # quoted-printable line breaks sometimes leave white space inside an href
    if not _is_http(href):
        return None
    url = unwrap_redirect(href)
    return strip_tracking(url) if _is_http(url) else None


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host[4:] if host.startswith("www.") else host


def _is_footer(text: str, url: str) -> bool:
    if len(text.split()) <= FOOTER_TEXT_MAX_WORDS and _FOOTER_TEXT.search(text):
        return True
    segments = {segment.lower() for segment in urlsplit(url).path.split("/")}
    return bool(segments & FOOTER_SEGMENTS)


def _is_social(text: str, url: str) -> bool:
    host = _host(url)
    if any(host == social or host.endswith("." + social) for social in SOCIAL_HOSTS):
        return True
    return bool(_SHARE_PATH.search(urlsplit(url).path) or _SOCIAL_TEXT.search(text))


def _word_count(text: str) -> int:
    return sum(1 for token in text.split() if _WORD.search(token))


def _headline_like(text: str) -> bool:
    """At least four words, and not an invitation to click or a bare address."""
    return _word_count(text) >= 4 and not _CALL_TO_ACTION.match(text) and not text.lower().startswith(("http", "www."))


def _fold(text: str) -> str:
    return _WS.sub(" ", _INVISIBLE.sub("", text)).strip()


def _clean_edges(text: str) -> str:
    text = _EDGE_PUNCTUATION.sub("", _fold(text))
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[:MAX_SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
    return text


def _safe(text: str) -> str:
    # Undecodable header or body bytes arrive as lone surrogates, which no Parquet or Sheets writer accepts.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class Item:
    """One newsletter item as found in an email, before it becomes a record."""

    headline: str
    link: str
    summary: str = ""
    context: list[str] = field(default_factory=list)  # nearby text that can mark it as a sponsor's


# ---------------------------------------------------------------- HTML part


def node_text(node: LexborNode, skip: frozenset[int] = frozenset()) -> str:
    """Visible text with a space at block and line breaks (never inside a word); `skip` leaves out those elements."""
    if node.tag == "-text":
        return _fold(node.text_content or "")
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
    return _fold("".join(out))


class _Page:
    """The body of an HTML email with its links classified, and which links each element holds."""

    def __init__(self, html: str, skip_links: frozenset[str]):
        self.tree = LexborHTMLParser(html)  # the nodes below live as long as the tree
        self.body = self.tree.body
        # Hidden blocks are preheaders or the other half of a desktop/mobile pair: reading them would double items.
        for node in self.tree.css('script, style, noscript, template, [hidden], [style*="display:none"], [style*="display: none"]'):
            node.decompose()
        self.links: list[tuple[LexborNode, str, str | None]] = []  # (anchor, text, clean url), in reading order
        self.kind: dict[int, str] = {}  # anchor mem_id -> item, footer, social, cta or other
        self.urls_under: dict[int, set[str]] = {}  # element mem_id -> urls of the headline-like links it holds (or is)
        self.footer_under: set[int] = set()  # elements that hold (or are) an unsubscribe/footer link
        self.by_url: dict[str | None, set[int]] = {}  # url -> its anchors
        self.not_prose: set[int] = set()  # footer, social and call-to-action anchors: never part of a summary
        self.url_of: dict[int, str | None] = {}  # anchor mem_id -> clean url
        self.blocks: list[_Block] | None = None  # the body as blocks (_blocks), made on first use
        if self.body is None:
            return
        for anchor in self.body.css("a[href]"):
            text = node_text(anchor)
            url = clean_link(anchor.attributes.get("href") or "")
            if url is None:
                kind = "other"  # mailto:, tel:, #anchors: never an item
            elif url in skip_links or _is_footer(text, url):
                kind = "footer"
            elif _is_social(text, url):
                kind = "social"
            elif _CALL_TO_ACTION.match(text):
                kind = "cta"
            elif _headline_like(text):
                kind = "item"
            else:
                kind = "other"
            self.links.append((anchor, text, url))
            self.kind[anchor.mem_id], self.url_of[anchor.mem_id] = kind, url
            self.by_url.setdefault(url, set()).add(anchor.mem_id)
            if kind in ("footer", "social", "cta"):
                self.not_prose.add(anchor.mem_id)
            if url is not None and _headline_like(text):
                # Every headline-like link bounds the items around it, footer and sponsor ones included.
                for node in self._self_and_ancestors(anchor):
                    self.urls_under.setdefault(node.mem_id, set()).add(url)
            if kind == "footer":
                self.footer_under.update(node.mem_id for node in self._self_and_ancestors(anchor))

    def link_of(self, anchor: LexborNode) -> tuple[str, str] | None:
        """An anchor's clean URL and kind (item, footer, social, cta, other), or None when it is no web link."""
        kind, url = self.kind.get(anchor.mem_id), self.url_of.get(anchor.mem_id)
        return None if kind is None or url is None else (url, kind)

    @staticmethod
    def _self_and_ancestors(node: LexborNode | None) -> Iterator[LexborNode]:
        while node is not None and node.tag not in ("html", "-document"):
            yield node
            if node.tag == "body":
                return
            node = node.parent

    def _others(self, node: LexborNode, url: str) -> bool:
        """Does `node` hold another item's link, or a footer link? Then it is past this item."""
        urls = self.urls_under.get(node.mem_id, ())
        return len(urls) > 1 or (len(urls) == 1 and url not in urls) or node.mem_id in self.footer_under

    def card(self, anchor: LexborNode, url: str) -> LexborNode:
        """The largest element around the link that holds no other item: the item's own box in a table layout."""
        node = anchor
        while True:
            parent = node.parent
            if parent is None or parent.tag in ("body", "html", "-document") or self._others(parent, url):
                return node
            node = parent

    def label_before(self, node: LexborNode) -> str:
        """A short line just before the item's box, such as 'SPONSORED' or 'Presented by Acme'."""
        previous = node.prev
        while previous is not None and not node_text(previous):  # white space, comments, spacer images
            previous = previous.prev
        if previous is None or self.urls_under.get(previous.mem_id):
            return ""
        text = node_text(previous)
        return text if _word_count(text) <= 4 else ""

    def summary(self, anchor: LexborNode, url: str) -> str:
        """The text after the headline: the rest of its line, else the next block, climbing out of its box if needed."""
        skip = frozenset(self.not_prose | self.by_url.get(url, set()))  # the headline's own links, and links that are not prose
        node = anchor
        while node is not None and node.tag not in ("body", "html", "-document"):
            inline: list[str] = []
            sibling = node.next
            while sibling is not None:
                if sibling.tag != "-text" and self._others(sibling, url):
                    return _clean_edges("".join(inline))  # the next item (or the footer) begins
                text = node_text(sibling, skip)
                if sibling.tag in BLOCK_TAGS:
                    if _clean_edges("".join(inline)):
                        return _clean_edges("".join(inline))
                    if _clean_edges(text):
                        return _clean_edges(text)
                elif text:
                    inline.append(text)  # text and inline elements on the headline's own line run together
                sibling = sibling.next
            if _clean_edges("".join(inline)):
                return _clean_edges("".join(inline))
            parent = node.parent
            if parent is None or self._others(parent, url):
                return ""
            node = parent
        return ""


def html_items(html: str, skip_links: frozenset[str] = frozenset()) -> list[Item]:
    """Candidate items of an HTML newsletter, in reading order; one per link (the first headline-like anchor wins)."""
    return _link_items(_Page(html, skip_links))


def _link_items(page: _Page) -> list[Item]:
    """A list of headline links, each with the text after it as its summary; links inside running text are none."""
    inline = _links_in_running_text(page)
    items: list[Item] = []
    seen: set[str] = set()
    for anchor, text, url in page.links:
        if page.kind[anchor.mem_id] != "item" or url in seen or anchor.mem_id in inline:
            continue
        seen.add(url)
        card = page.card(anchor, url)
        items.append(Item(text, url, page.summary(anchor, url), [node_text(card), page.label_before(card)]))
    return items


# ---------------------------------------------------------------- HTML part: story sections

# A newsletter written as a heading per story (a weekly letter with <h1>/<h2> stories, a Mailchimp or Substack
# template with a "Read more" button under each) is read by sections, not by links: the links of its paragraphs are
# citations in running text, not stories. html_items reads the other layout, a list of headline links.
HEADING_RANKS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
NO_RANK = 9  # a bold line or a label in a plain cell: below every heading
_SEPARATOR = re.compile(r"^\s*[—–\-:|•·]")
_JOBS = re.compile(r"^(?:jobs?|hiring|careers?|job board|open roles|now hiring|we'?re hiring)\b|\b(?:is|are) hiring\b|\bjob openings?\b",
                   re.IGNORECASE)
# Greetings, sign-offs and the issue's own title are no stories.
_LETTER = re.compile(r"^(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|welcome|greetings|thanks?\b|thank you|cheers|see you"
                     r"|until next|that'?s (?:it|all)|in (?:this|today'?s) (?:issue|edition))\b", re.IGNORECASE)
_ISSUE_NUMBER = re.compile(r"\b(?:issue|edition|no\.|vol\.|volume)\s*#?\d+|#\d+\b", re.IGNORECASE)  # the newsletter's own title
_CAPITALS = re.compile(r"^[^a-z]*[A-Z][^a-z]*$")  # "SPONSORED", "TOP STORIES"


@dataclass
class _Segment:
    text: str
    anchor: LexborNode | None  # the link it belongs to
    bold: bool
    line_break: bool = False  # a <br>, not text


@dataclass
class _Block:
    """A block element's own inline content (text of nested blocks belongs to those), in reading order."""

    tag: str
    segments: list[_Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return _fold("".join(" " if s.line_break else s.text for s in self.segments))

    @property
    def rank(self) -> int:
        return HEADING_RANKS.get(self.tag, NO_RANK)

    def anchors(self) -> list[LexborNode]:
        found: dict[int, LexborNode] = {}
        for segment in self.segments:
            if segment.anchor is not None:
                found.setdefault(segment.anchor.mem_id, segment.anchor)
        return list(found.values())


def _blocks(page: _Page) -> list[_Block]:
    """The body's blocks in reading order, each with its inline text, links and bold runs. Iterative, as node_text;
    made once per page."""
    if page.blocks is None:
        page.blocks = _read_blocks(page)
    return page.blocks


def _read_blocks(page: _Page) -> list[_Block]:
    blocks: list[_Block] = [_Block("body")]
    if page.body is None:
        return []
    stack: list[tuple[LexborNode, _Block, LexborNode | None, bool]] = [
        (child, blocks[0], None, False) for child in reversed(list(page.body.iter(include_text=True)))]
    while stack:
        node, block, anchor, bold = stack.pop()
        tag = node.tag
        if tag == "-text":
            block.segments.append(_Segment(node.text_content or "", anchor, bold))
            continue
        if tag.startswith("-"):
            continue
        if tag == "br":
            block.segments.append(_Segment("", anchor, bold, line_break=True))
            continue
        if tag in BLOCK_TAGS:
            block = _Block(tag)
            blocks.append(block)
        elif tag == "a" and node.attributes.get("href"):
            anchor = node
        elif tag in ("b", "strong"):
            bold = True
        stack.extend((child, block, anchor, bold) for child in reversed(list(node.iter(include_text=True))))
    return [block for block in blocks if block.text]


_OPENING = re.compile(r"^[\W\d_]*$")  # what may stand before a headline link on its line: a bullet, a number


def _links_in_running_text(page: _Page) -> set[int]:
    """The anchors that do not open their line: a link in the middle of a sentence cites, it is no story."""
    inline: set[int] = set()
    for block in _blocks(page):
        before, seen = "", set()
        for segment in block.segments:
            if segment.line_break:
                before = ""  # a new line: a link may open it
                continue
            anchor = segment.anchor
            if anchor is not None and anchor.mem_id not in seen:
                seen.add(anchor.mem_id)
                if not _OPENING.match(before):
                    inline.add(anchor.mem_id)
            before += segment.text
    return inline


@dataclass
class _Heading:
    text: str
    rank: int
    link: str | None = None  # the heading's own link
    rest: str = ""  # text after a lead link on the same line: the summary


def _heading(block: _Block, page: _Page, lead_links: bool) -> _Heading | None:
    """The block as a heading: an <h1>..<h6>, a line in bold, or (with `lead_links`) a list item or line that opens with a
    headline link followed by a dash or a line break. None for prose, and for buttons ('Read more') and footer lines."""
    written = [s for s in block.segments if s.text.strip()]
    links = [page.link_of(s.anchor) if s.anchor is not None else None for s in written]
    if not written or all(found is not None and found[1] in ("cta", "footer", "social") for found in links):
        return None
    if block.rank < NO_RANK or all(s.bold for s in written):
        own = next((found[0] for found in links if found is not None and found[1] in ("item", "other")), None)
        return _Heading(block.text, block.rank, own)
    first = written[0].anchor
    if not lead_links or first is None or links[0] is None or links[0][1] != "item":
        return None
    segments = block.segments[next(n for n, s in enumerate(block.segments) if s is written[0]):]
    lead = len(segments) - len(list(itertools.dropwhile(lambda s: s.anchor is first, segments)))
    after = segments[lead] if lead < len(segments) else None
    opened = block.tag == "li" or (after is not None and (after.line_break or bool(_SEPARATOR.match(after.text))))
    headline = _fold("".join(s.text for s in segments[:lead]))
    if not opened or not _headline_like(headline):
        return None
    rest = _fold("".join(" " if s.line_break else s.text for s in segments[lead:]))
    return _Heading(headline, NO_RANK, links[0][0], _EDGE_PUNCTUATION.sub("", rest))


def _is_label(heading: _Heading) -> bool:
    """A line that names what follows ('Top stories', 'SPONSORED', 'Jobs') rather than a story."""
    return not _headline_like(heading.text) or bool(_CAPITALS.match(heading.text) and _word_count(heading.text) <= 4)


@dataclass
class _Section:
    heading: _Heading
    label: str
    blocks: list[_Block] = field(default_factory=list)


def _section_link(section: _Section, page: _Page) -> str:
    """The heading's own link, else the section's 'Read more' link, else its first article link, else none."""
    if section.heading.link:
        return section.heading.link
    links = [found for block in section.blocks for found in map(page.link_of, block.anchors()) if found is not None]
    return next((url for url, kind in links if kind == "cta"), None) or next((url for url, kind in links if kind in ("item", "other")), "")


def _section_summary(section: _Section, page: _Page) -> str:
    """The text after a lead link, else the section's first paragraph (links that are no prose left out)."""
    if section.heading.rest:
        return _clean_edges(section.heading.rest)
    for block in section.blocks:
        prose = _fold("".join(" " if s.line_break else s.text for s in block.segments
                               if s.anchor is None or s.anchor.mem_id not in page.not_prose))
        if _word_count(prose) >= 2:
            return _clean_edges(prose)
    return ""


def _leaves_section(block: _Block, page: _Page) -> bool:
    """A footer line, or a sponsor's paragraph: the story before it has ended."""
    kinds = [found[1] for found in map(page.link_of, block.anchors()) if found is not None]
    text = block.text
    return "footer" in kinds or (_word_count(text) <= FOOTER_TEXT_MAX_WORDS and bool(_FOOTER_TEXT.search(text))) or bool(_SPONSOR.search(text))


def heading_sections(page: _Page) -> tuple[list[Item], int]:
    """The story sections of a newsletter written as a heading per story, and how many story headings it has.

    A section runs from its heading to the next heading or label, a footer or a sponsor's paragraph. Its item: the
    heading as headline, the first paragraph as summary, and the link by `_section_link`. Labels ('Sponsored', 'Jobs')
    mark the sections under them; text before the first story (the letter's greeting, the issue's title) is no item.
    """
    sections: list[_Section] = []
    current: _Section | None = None
    label, label_rank, labelled = "", NO_RANK, 0
    for block in _blocks(page):
        heading = _heading(block, page, lead_links=True)
        if heading is not None and _is_label(heading):
            label, label_rank, labelled, current = heading.text, heading.rank, 0, None
            continue
        if heading is not None:
            if labelled and heading.rank <= label_rank:
                label = ""  # a label covers the first section under it, and further ones only below its own rank
            labelled += 1
            current = _Section(heading, label)
            sections.append(current)
        elif _leaves_section(block, page):
            if _word_count(block.text) <= 6 and _SPONSOR.search(block.text):
                label, label_rank, labelled = block.text, NO_RANK, 0  # 'Presented by Acme' over the next section
            current = None
        elif current is not None:
            current.blocks.append(block)
    items: list[Item] = []
    linked = False
    for section in sections:
        link, text = _section_link(section, page), section.heading.text
        linked = linked or bool(link)
        summary = _section_summary(section, page)
        title = not section.heading.link and _ISSUE_NUMBER.search(text)
        if _LETTER.match(text) or _LETTER.match(summary) or title or (not link and not linked) or _JOBS.search(section.label) or _JOBS.search(text):
            continue  # the letter around the stories (greeting, the issue's title), and job ads
        short_lines = [block.text for block in section.blocks if _word_count(block.text) <= 6]
        items.append(Item(text, link, summary, [section.label, *short_lines]))
    headings = sum(1 for section in sections if section.heading.rank < NO_RANK or not section.heading.rest)
    return items, headings


def _story_headings(page: _Page) -> int:
    """How many headline-like headings (<h1>..<h6>, lines in bold) the body has: two or more make a heading layout."""
    return sum(1 for block in _blocks(page) if (heading := _heading(block, page, lead_links=False)) is not None and not _is_label(heading))


# ---------------------------------------------------------------- plain-text part

# A line that ends in a URL: 'https://…', '<https://…>', 'Headline (https://…)', 'Headline: https://…', 'Read more: https://…'.
_URL_AT_END = re.compile(r"^(?P<before>.*?)[\s(<\[]*(?P<url>https?://[^\s<>()\[\]]+)[)>\]]*[.,;]?$", re.IGNORECASE)
# Prose that runs into its link ('... read the report at https://…') is no headline.
_DANGLING = re.compile(r"\b(?:at|here|on|via|from|see|in|to|by|visit)$", re.IGNORECASE)
_BULLET = re.compile(r"^(?:[-*•·▪►#]+|\d{1,3}[.)])\s+")
_RULE = re.compile(r"^[-=_*~#•·\s]{2,}$")  # "--", ----- or ===== between sections: a block break


def text_items(text: str) -> list[Item]:
    """Candidate items of a plain-text newsletter.

    A headline line followed by a URL line; or 'Headline (URL)' / 'Headline: URL' on one line; or a headline, its
    summary and then 'Read more: URL'. Text between one item's link and the next headline is the first item's
    summary; a short line on its own ('SPONSORED') labels the item after it.
    """
    items: list[Item] = []
    pending: list[str] = []  # text lines since the last item boundary
    label: list[str] = []  # short lines seen before the next item
    awaiting: Item | None = None  # the latest item, while it can still take a summary

    def take_summary(lines: list[str]) -> None:
        nonlocal awaiting
        if awaiting is not None and lines:
            awaiting.summary = _clean_edges(" ".join(lines))
            awaiting = None

    for raw in [*text.splitlines(), ""]:
        line = _fold(_safe(raw))
        if not line or _RULE.match(line):
            if pending:
                if len(pending) == 1 and _word_count(pending[0]) <= 4:
                    label.append(pending[0])  # a heading or label on its own: context for what follows
                else:
                    take_summary(pending)
                awaiting = None  # only the block right after an item can be its summary
                pending = []
            continue
        line = _BULLET.sub("", line)
        found = _URL_AT_END.match(line)
        if not found:
            pending.append(line)
            continue
        before = _EDGE_PUNCTUATION.sub("", found["before"])
        if before and _word_count(before) >= 4 and not _CALL_TO_ACTION.match(before) and not _DANGLING.search(before):
            # 'Headline (URL)' / 'Headline: URL': what came before it closes the previous item.
            take_summary(pending)
            headline, summary = before, []
        elif before:
            # 'Read more: URL' closes an item that began with its headline: headline first, summary after.
            while len(pending) > 1 and _word_count(pending[0]) < 4:
                label.append(pending.pop(0))  # 'SPONSORED' or 'Top story' over the headline
            headline, summary = (pending[0], pending[1:]) if pending else ("", [])
            if _word_count(before) >= 4 and not _CALL_TO_ACTION.match(before):
                summary.append(before)  # prose that ends in its link is part of the summary
        else:
            # A bare URL line belongs to the line just above it; lines before that close the previous item.
            earlier = pending[:-1]
            if len(earlier) == 1 and _word_count(earlier[0]) <= 4:
                label.extend(earlier)
            elif awaiting is not None:
                take_summary(earlier)
            headline, summary = (pending[-1] if pending else ""), []
        item = Item(headline, clean_link(found["url"]) or found["url"], _clean_edges(" ".join(summary)), list(label))
        items.append(item)
        awaiting = None if item.summary else item
        pending, label = [], []
    return items


_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(?P<rest>\S.*)$")
_URL = re.compile(r"https?://[^\s<>()\[\]]+", re.IGNORECASE)


def _ends_numbered_item(line: str) -> bool:
    """A rule, a footer line, or a label such as 'SPONSORED' or 'Jobs': the numbered item above is over."""
    words = _word_count(line)
    return bool(_RULE.match(line)) or (words <= FOOTER_TEXT_MAX_WORDS and bool(_FOOTER_TEXT.search(line))) or (
        words <= 4 and not _URL.search(line) and (bool(_CAPITALS.match(line)) or bool(_SPONSOR.search(line)) or bool(_JOBS.match(line))))


def numbered_items(text: str) -> list[Item]:
    """The items of a plain-text newsletter that numbers its stories ('1. Headline', its paragraph, a bare URL), or []
    when it numbers fewer than two with a link.

    An item runs from its numbered line to the next one, a rule or a label. Its headline is the numbered line, its
    summary the first paragraph after it, its link the URL on the headline's line, else after 'Read more', else the
    first URL of the item.
    """
    items: list[Item] = []
    current: list[str] | None = None
    for raw in [*text.splitlines(), "--"]:
        line = _fold(_safe(raw))
        numbered = _NUMBERED.match(line)
        if numbered or (current is not None and line and _ends_numbered_item(line)):
            if current:
                items.append(_numbered_item(current))
            current = [numbered["rest"]] if numbered else None
        elif current is not None:
            current.append(line)
    items = [item for item in items if item.link]
    return items if len(items) >= 2 else []


def _numbered_item(lines: list[str]) -> Item:
    found = _URL_AT_END.match(lines[0])
    headline, link = (found["before"], found["url"]) if found and found["before"] else (lines[0], None)
    paragraph: list[str] = []
    for line in lines[1:]:
        if not line:
            if paragraph:
                break
            continue
        url = _URL.search(line)
        if url is None:
            paragraph.append(line)
        elif link is None and _CALL_TO_ACTION.match(line):
            link = url.group(0)  # 'Read more: https://…'
    link = link or next((url.group(0) for line in lines[1:] if (url := _URL.search(line))), None)
    return Item(_EDGE_PUNCTUATION.sub("", headline), (clean_link(link) or link) if link else "", _clean_edges(" ".join(paragraph)))


# ---------------------------------------------------------------- messages


def _keep(item: Item) -> bool:
    """An article, not a footer, social, sponsor or call-to-action link."""
    if not _headline_like(item.headline) or _is_footer(item.headline, item.link) or _is_social(item.headline, item.link):
        return False
    return not any(_SPONSOR.search(text) for text in (item.headline, item.summary, *item.context))


def _content(part: EmailMessage) -> str:
    try:
        return _safe(part.get_content())
    except (LookupError, ValueError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True) or b""
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("cp1252", "replace")  # the usual truth behind a wrong label; reads almost any byte


def _list_unsubscribe(message: EmailMessage) -> frozenset[str]:
    """The List-Unsubscribe header's web links: never items, whatever their anchor text says."""
    links = re.findall(r"<(https?://[^>]+)>", str(message.get("List-Unsubscribe", "")))
    return frozenset(filter(None, map(clean_link, links)))


def message_items(message: EmailMessage) -> tuple[list[Item], int]:
    """The items of one email, and how many story sections it shows (headings, numbered items).

    From its HTML part: by sections when it has two or more story headings, else by headline links; from its text part
    when there is no HTML part or it yields none: by numbered items when it has them, else by headline and URL lines.
    """
    skip = _list_unsubscribe(message)
    items: list[Item] = []
    sections = 0
    html_part = message.get_body(preferencelist=("html",))
    if html_part is not None:
        page = _Page(_content(html_part), skip)
        if _story_headings(page) >= 2:
            items, sections = heading_sections(page)
        else:
            items = _link_items(page)
    text_part = message.get_body(preferencelist=("plain",))
    if not any(map(_keep, items)) and text_part is not None:
        text = _content(text_part)
        numbered = numbered_items(text)
        items, sections = (numbered, len(numbered)) if numbered else (text_items(text), sections)
    kept, seen = [], set()
    for item in items:
        key = item.link or item.headline  # an item without a link is told apart by its headline
        if key in seen:
            continue
        seen.add(key)  # one item per link; a sponsor's second link stays out with its first
        if item.link not in skip and _keep(item):
            kept.append(item)
    return kept, sections


def _sender(message: EmailMessage) -> str | None:
    header = message.get("From")
    if header is None:
        return None
    addresses = getattr(header, "addresses", ()) or ()
    if addresses:
        return _safe(addresses[0].display_name or addresses[0].addr_spec) or None
    return _safe(str(header)).strip() or None


def _date(message: EmailMessage) -> str | None:
    """The Date header as an ISO string in UTC; one that email cannot read is passed on as written, for pandas to try."""
    header = message.get("Date")
    if header is None:
        return None
    stamp = getattr(header, "datetime", None)
    if stamp is None:
        return _safe(str(header)).strip() or None
    # RFC 5322's '-0000' (zone unknown) arrives naive: read it as UTC, as the rest of the pipeline does.
    return (stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)).isoformat()


def _message_id(message: EmailMessage, raw: bytes) -> str:
    message_id = _safe(str(message.get("Message-ID", ""))).strip().strip("<>").strip()
    # Without one, a hash of the message: the same email re-delivered keeps its ids.
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def _message_records(raw: bytes, base: int) -> list[tuple[int, dict | RejectedRecord]]:
    """The records of one message at positions base + item number; base itself for the message as a whole."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not message.keys():
        return [(base, RejectedRecord("not an email: it has no header lines (From:, Date:, Subject: ...)"))]
    date = _date(message)
    items, sections = message_items(message)
    notices: list[tuple[int, dict | RejectedRecord | Notice]] = []
    if sections >= 3 and len(items) < sections / 2:
        # Likely a layout the reader does not know: the balance check cannot see stories that never became records.
        notices.append((base, Notice(f"{'message ' + str(base // MESSAGE_STRIDE) + ': ' if base else ''}e-mail gave {len(items)} items "
                                     f"from {sections} story sections: check that its layout is read (README, Inputs)")))
    if not items:
        # Recorded, not dropped: the quarantine shows which email gave nothing, so a new layout gets noticed.
        return [*notices, (base, RejectedRecord("email holds no items", date=date))]
    if date is None:
        return [(base + n, RejectedRecord("email has no Date header")) for n in range(1, min(len(items), MAX_ITEMS) + 1)]
    source, message_id = _sender(message), _message_id(message, raw)
    records: list[tuple[int, dict | RejectedRecord | Notice]] = notices + [
        (base + number, {
            "headline": item.headline,
            "link": item.link,
            "short_description": item.summary,
            "date": date,
            "source": source,
            "id": f"{message_id}#{number}",
        })
        for number, item in enumerate(items[:MAX_ITEMS], start=1)
    ]
    if len(items) > MAX_ITEMS:
        records.append((base, RejectedRecord(f"email holds {len(items)} items: only the first {MAX_ITEMS} were read", date=date)))
    return records


def _safe_message_records(raw: bytes, base: int, what: str) -> list[tuple[int, dict | RejectedRecord]]:
    try:
        return _message_records(raw, base)
    except Exception as error:  # one malformed message must not cost the mailbox its other messages
        return [(base, RejectedRecord(f"{what} cannot be parsed: {type(error).__name__}: {error}"))]


def read_eml(data: bytes) -> Records:
    """One email (.eml): position = item number (1, 2, ...); position 0 = the email as a whole (no items, unparseable)."""
    yield from _safe_message_records(data, 0, "email")


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)
_MBOXRD_ESCAPE = re.compile(rb"^>(>*From )", re.MULTILINE)


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox, each without its 'From ' separator line.

    A message starts at every line beginning 'From ', the rule the stdlib's mailbox.mbox reads by;
    '>From ' escapes (mboxrd) are undone. Splitting the bytes here keeps the reader a pure function.
    """
    if not data.strip():
        return []  # an empty mailbox holds no messages
    if not data.lstrip(b"\r\n").startswith(b"From "):
        raise ValueError("not an mbox mailbox: it must start with a 'From ' separator line (deliver a single email as .eml)")
    starts = [match.start() for match in _FROM_LINE.finditer(data)] + [len(data)]
    messages = []
    for start, end in zip(starts, starts[1:]):
        chunk = data[start:end]
        newline = chunk.find(b"\n")
        body = b"" if newline < 0 else chunk[newline + 1:]
        messages.append(_MBOXRD_ESCAPE.sub(rb"\1", body))
    return messages


def read_mbox(data: bytes) -> Records:
    """A mailbox (.mbox) of newsletters.

    Positions are message based: message_number * 100,000 + item_number, with message_number counted
    from 1 in file order, so item 3 of message 2 is position 200003. Position message_number * 100,000 is
    the message as a whole: one that cannot be parsed, or one that holds no items. A message gives at
    most 99,999 items; more are reported at its whole-message position.
    """
    for number, raw in enumerate(split_mbox(data), start=1):
        yield from _safe_message_records(raw, number * MESSAGE_STRIDE, f"message {number}")
