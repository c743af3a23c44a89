"""Email newsletters (.eml, .mbox) -> raw records: one record per story of each newsletter.

Newsletters come in several layouts: a heading per story with paragraphs under it; a list of headline links, each
with a blurb; template tables (Mailchimp, Substack and the like) with a "Read more" button per story; plain text
with numbered items and bare URLs. All are read the same way. The HTML part (or the plain-text part) is cut into
blocks - headings, paragraphs, list items, table cells, lines - and each block is ranked: a heading (<h1>..<h6>, a
line in bold, a numbered line), a line that opens with a headline link, a short label, or body text. One section
finder then reads the blocks: a story section is a heading with the blocks under it. Its item: the heading (or the
headline link) as headline, its first paragraph as summary, and as link the heading's own link, else the section's
"Read more" link, else its first article link, else none. Links inside running text are citations, never items;
the intro letter, sponsor and job sections and the footer are left out. Click-tracking redirects are unwrapped and
tracking parameters dropped, so the link is the article's own. The sender names the source and the Date header
dates every item. Everything here is a pure function of the bytes, so a re-read gives the same records.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from itertools import islice
from typing import NamedTuple
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from newsletter_pipeline.landing.readers import Notice, Records, RejectedRecord
from newsletter_pipeline.text import BLOCK_TAGS, clean_link, fold, node_text

# Positions: message_number * 100,000 + item_number, so every item of a mailbox has its own position;
# position message_number * 100,000 itself stands for the message as a whole (unparseable, or no items).
MESSAGE_STRIDE = 100_000
MAX_ITEMS = MESSAGE_STRIDE - 1
MAX_SUMMARY_CHARS = 1000  # a summary, not the article: a long block would otherwise trip the field-size quarantine

SOCIAL_HOSTS = (
    "twitter.com",
    "x.com",
    "t.co",
    "facebook.com",
    "fb.com",
    "fb.me",
    "linkedin.com",
    "lnkd.in",
    "instagram.com",
    "youtube.com",
    "youtu.be",
    "tiktok.com",
    "pinterest.com",
    "threads.net",
    "bsky.app",
    "whatsapp.com",
    "wa.me",
    "t.me",
)
# Path segments of footer pages; whole segments only, and only names no article section uses (not "legal",
# "terms" or "manage": reuters.com/legal/... is news).
FOOTER_SEGMENTS = frozenset(
    {
        "unsubscribe",
        "unsub",
        "optout",
        "opt-out",
        "manage-preferences",
        "email-preferences",
        "privacy-policy",
        "terms-of-service",
        "terms-of-use",
        "webversion",
        "web-version",
        "view-in-browser",
        "forward-to-a-friend",
    }
)
# Of those, the ones that open the mail's footer: nothing after them is a story.
END_SEGMENTS = frozenset({"unsubscribe", "unsub", "optout", "opt-out", "manage-preferences", "email-preferences"})
# Footer link texts are short ("Unsubscribe", "Manage your preferences"); a long text is a headline, even
# one about unsubscribing.
FOOTER_TEXT_MAX_WORDS = 7
_FOOTER_TEXT = re.compile(
    r"unsubscribe|\bopt[ -]?out\b"
    r"|\b(?:view|read|open) (?:this |the |it )?(?:e-?mail |message |newsletter |issue |post )?"
    r"(?:in|on) (?:your |a |the )?(?:web )?browser"
    r"|\b(?:view|read) (?:it |this |the )?(?:e-?mail |message |newsletter |issue |post )?online\b"
    r"|\b(?:web|online|browser) version\b"
    r"|\b(?:manage|update|change) (?:your )?(?:e-?mail |subscription |notification )?"
    r"(?:preferences|settings|subscriptions?|profile)\b|\b(?:e-?mail|subscription) (?:preferences|settings)\b"
    r"|\bprivacy (?:policy|notice|statement|center)\b|^privacy$"
    r"|\bterms (?:of (?:service|use)|and conditions|& conditions)\b|^terms$"
    r"|\bforward (?:this|it|to a friend)\b|\baddress book\b|^(?:subscribe|sign up)\b|\badvertise (?:with us|here)\b",
    re.IGNORECASE,
)
# The footer's own words: after an unsubscribe link or these, the mail holds no more stories.
_END_LINK = re.compile(
    r"unsubscribe|\bopt[ -]?out\b|\b(?:manage|update|change) (?:your )?(?:e-?mail |subscription |notification )?"
    r"(?:preferences|settings|subscriptions?)\b|\b(?:e-?mail|subscription) (?:preferences|settings)\b",
    re.IGNORECASE,
)
_END_TEXT = re.compile(
    r"\byou(?:['’]re| are)? (?:receiving|getting) this\b|\ball rights reserved\b"
    r"|\bno longer (?:want|wish) to receive\b|\bour mailing address is\b|\bwant to change how you receive\b",
    re.IGNORECASE,
)
_SOCIAL_TEXT = re.compile(r"^(?:share|tweet|post|pin|follow|like)\b|\bshare (?:this|on)\b|\bfollow us\b", re.IGNORECASE)
_SHARE_PATH = re.compile(r"/(?:share|sharer|sharing|sharearticle|intent/(?:tweet|post))(?:[/.?]|$)", re.IGNORECASE)
# A label or kicker over a sponsor's section ('SPONSORED', 'Presented by Acme', 'A message from Acme').
_SPONSOR = re.compile(
    r"(?<![-\w])sponsor(?:s|ed|ship)?\b|\badvertisement\b|\badvertorial\b|\bpresented by\b|\bpartner content\b"
    r"|\bpaid (?:post|content|partnership)\b|\bbrought to you by\b|\btogether with\b|\bin partnership with\b"
    r"|\b(?:a )?(?:message|word) from\b|\bfrom our (?:sponsors?|partners?)\b|^(?:ad|promoted|partner)$",
    re.IGNORECASE,
)
# The same in a headline or a summary, where only unmistakable forms count: a story may be about sponsorship.
_SPONSOR_NOTE = re.compile(
    r"[(\[]\s*(?:sponsor(?:ed)?|ad|advertisement|partner|promoted)\s*[)\]]"
    r"|^(?:sponsored|advertisement|promoted|partner content)\b"
    r"|^(?:together with|in partnership with|a (?:message|word) from|presented by)\b"
    r"|\b(?:sponsored|brought to you|underwritten) by\b|\bpaid (?:post|content|partnership)\b",
    re.IGNORECASE,
)
# A label over several sponsors' sections.
_SPONSORS = re.compile(r"\b(?:sponsors|partners|partner offers|advertisers)\b", re.IGNORECASE)
# A label over job ads ('Jobs', 'Hiring', 'Careers', 'Job board'), a job section's own heading, and its links.
_JOBS_LABEL = re.compile(
    r"\bjobs\b|\bjob (?:board|openings?|listings?|ads?|postings?)\b|\bhiring\b|\bcareers?\b"
    r"|\bopen (?:roles|positions)\b|\bwork with us\b|\bjoin (?:us|our team)\b|\bclassifieds?\b",
    re.IGNORECASE,
)
_JOBS_HEADING = re.compile(
    r"(?:(?:featured|open|new|top|remote|latest|this week['’]?s|our|tech|partner) )*"
    r"(?:jobs?(?: board| openings| listings| of the week)?|careers?|open (?:roles|positions)"
    r"|(?:we['’]?re |now )?hiring(?: now)?|who['’]?s hiring|work with us|join (?:us|our team))"
    r"(?: (?:&|and) [\w-]+)?[:!]?",
    re.IGNORECASE,
)
_APPLY = re.compile(
    r"apply(?: now| here| today| online)?|see (?:all )?(?:open )?(?:jobs|roles|positions)"
    r"|view (?:the )?(?:job|role|position|opening)s?",
    re.IGNORECASE,
)
# Headings of the letter around the stories, not of a story: greetings, the editor's note, sign-offs.
_LETTER = re.compile(
    r"^(?:dear|hi|hello|hey|greetings|welcome)\b|^good (?:morning|afternoon|evening)\b"
    r"|\b(?:editor|publisher)['’]?s (?:note|letter|desk)\b|^(?:a )?(?:note|letter|word)s? from (?:the|your|our) \w+"
    r"|^(?:that['’]?s (?:it|all)|until next (?:time|week)|see you next|thanks for reading)\b",
    re.IGNORECASE,
)
# The issue's own title ('Move Briefing #88', 'Weekly — Issue 142') and the greeting that opens a letter.
_ISSUE_TITLE = re.compile(
    r"\b(?:issue|edition|vol(?:ume)?\.?|no\.)\s*#?\d{1,5}\b|#\d{1,5}(?:\s*[:|—–-]|$)", re.IGNORECASE
)
_GREETING = re.compile(
    r"^(?:dear|hi|hello|hey|greetings|good (?:morning|afternoon|evening|day))\b[^.!?]{0,40}?[,!:]", re.IGNORECASE
)
# A label over the issue's table of contents: its entries repeat the stories below.
_CONTENTS = re.compile(
    r"^(?:in|inside) (?:this|today['’]?s|this week['’]?s) (?:issue|edition|newsletter)\b|^(?:table of )?contents$",
    re.IGNORECASE,
)
# Link texts that invite a click rather than name a story.
_CALL_TO_ACTION = re.compile(
    r"^(?:click here|read (?:more|on|the (?:full|whole) \w+)|continue reading|keep reading|learn more|see more"
    r"|find out more|view (?:more|all)|more)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w")
_EDGE_PUNCTUATION = re.compile(r"^[\s\-–—:|•·»›→>]+|[\s\-–—:|•·«‹←<]+$")


# ---------------------------------------------------------------- links


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


def _clean_edges(text: str) -> str:
    text = _EDGE_PUNCTUATION.sub("", fold(text))
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
    context: list[str] = field(default_factory=list)  # the labels over its section ('Top stories', 'SPONSORED')


# ---------------------------------------------------------------- blocks

# A block's rank as a heading: 1-6 for <h1>..<h6> (and their plain-text forms), then weaker kinds. The lower the
# rank, the stronger the heading; BODY is no heading.
BOLD = 7  # a line in bold (or in a headline's font size), a plain-text title over a "Read more" line
LEAD = 8  # a line that opens with a headline link: 'Headline — blurb', a list of links
LABEL = 9  # a short plain line: a label when a heading follows ('SPONSORED', 'Top stories'), else text
BODY = 99
HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
CAPITALS_RANK = 3  # plain text: 'TOP STORIES'
NUMBERED_RANK = 5  # plain text: '3. Headline'
CARD_TAGS = frozenset({"td", "th", "article", "section"})  # a template's story card is one of these
BOLD_LINE_MAX_WORDS = 20  # past this, a bold block is a paragraph set in bold
LABEL_MAX_WORDS = 5
CAPITALS_MAX_WORDS = 8
STORY_MIN_WORDS = 3  # a heading of a word or two ('Jobs', 'Quick links', 'Further reading') names a part of the mail
SUMMARY_MIN_WORDS = 3
LINK_LABEL_MAX_WORDS = 3  # plain text: 'Release notes: URL' is a link line, not a sentence
HEADLINE_FONT_PX = 20  # a font this large marks a headline in templates that style cells instead of using <h2>
_BOLD_STYLE = re.compile(r"font-weight\s*:\s*(?:bold|bolder|[6-9]00)\b", re.IGNORECASE)
_FONT_SIZE = re.compile(r"font-size\s*:\s*(\d+(?:\.\d+)?)\s*(px|pt)", re.IGNORECASE)
# What follows a headline link on its line: 'Headline — blurb', 'Headline: blurb', 'Headline (site.com)', a break.
_SEPARATOR = re.compile(r"^[ \t\xa0]*(?:\n|[—–|:•·(\[]|-\s)")
_LEADING_ASIDE = re.compile(r"^\((?:[^()]{1,40})\)\s*")  # '(github.com)', '(4 minute read)' before a blurb


@dataclass(frozen=True)
class Link:
    """A link of an e-mail block: its text, the article URL behind it and what kind of link it is."""

    text: str
    url: str | None  # the article's own URL; None for mailto:, #anchors and other non-web links
    kind: str  # article, cta ('Read more'), footer, social, or other (no web link)
    end: bool = False  # an unsubscribe or preferences link: the mail's footer begins

    @property
    def article(self) -> bool:
        """Whether it leads to an article (a headline or a 'Read more' link)."""
        return self.url is not None and self.kind in ("article", "cta")


def _link(text: str, href: str, skip_links: frozenset[str]) -> Link:
    """A link, classified by its text and its clean URL."""
    text = fold(text)
    url = clean_link(href)
    if url is None:
        return Link(text, None, "other")
    if url in skip_links or _is_footer(text, url):
        segments = {segment.lower() for segment in urlsplit(url).path.split("/")}
        short = _word_count(text) <= FOOTER_TEXT_MAX_WORDS
        return Link(
            text,
            url,
            "footer",
            url in skip_links or bool(segments & END_SEGMENTS) or (short and bool(_END_LINK.search(text))),
        )
    if _is_social(text, url):
        return Link(text, url, "social")
    return Link(text, url, "cta" if _CALL_TO_ACTION.match(text) else "article")


@dataclass
class Block:
    """A paragraph, heading, list item, table cell's own text or run of plain-text lines, ranked as heading or text."""

    text: str
    links: list[Link] = field(default_factory=list)
    prose: str = ""  # the text without 'Read more', footer and social link texts: what a summary may quote
    rank: int = BODY
    headline: str = ""  # as a heading: its text, or its lead link's text
    own: Link | None = None  # as a heading: its own link
    rest: str = ""  # after a lead link on the same line: the blurb
    card: int = 0  # the table cell or article it sits in: a template's story card
    listed: bool = False  # a list item: an entry, never a label

    @property
    def end(self) -> bool:
        """Does the mail's footer begin here (an unsubscribe link, 'You are receiving this because ...')?"""
        return any(link.end for link in self.links) or (
            bool(_END_TEXT.search(self.text)) and not self._headline_links()
        )

    @property
    def footer(self) -> bool:
        """A web-version, forward or other footer line, part of no story."""
        return self.end or (any(link.kind == "footer" for link in self.links) and not self._headline_links())

    @property
    def written(self) -> bool:
        """Whether the block holds words, not only punctuation or images."""
        return bool(_WORD.search(self.text))

    def _headline_links(self) -> bool:
        return any(link.kind == "article" and _headline_like(link.text) for link in self.links)


# ---------------------------------------------------------------- HTML part


# Hidden blocks are preheaders or the other half of a desktop/mobile pair: reading them would double items.
HIDDEN = 'script, style, noscript, template, [hidden], [style*="display:none"], [style*="display: none"]'


@dataclass(frozen=True)
class _Context:
    """Where the walk is: the nearest block element, heading and card, and whether the text is bold or in a link."""

    tag: str = "body"
    level: int = 0  # of the <h1>..<h6> around, 0 outside headings
    card: int = 0
    bold: bool = False
    link: int | None = None  # index of the link around


class _Piece(NamedTuple):
    text: str  # "\n" for a line break
    bold: bool
    link: int | None


class _Leave(NamedTuple):
    """Marks, on the walk's stack, the end of an element: the context to return to, and whether a block ends."""

    context: _Context
    block: bool


def html_blocks(html: str, skip_links: frozenset[str] = frozenset()) -> list[Block]:
    """The blocks of an HTML body in reading order: each block element's own inline content (the text of a nested
    block is a block of its own). Iterative, as node_text: hostile markup can nest deeper than the recursion limit."""
    tree = LexborHTMLParser(html)  # the nodes below live as long as the tree
    body = tree.body
    if body is None:
        return []
    for node in tree.css(HIDDEN):
        node.decompose()
    links: list[Link] = []
    blocks: list[Block] = []
    run: list[_Piece] = []
    context = _Context(card=body.mem_id)
    stack: list[LexborNode | _Leave] = list(reversed(list(body.iter(include_text=True))))

    def flush() -> None:
        if run:
            block = _html_block(run, context, links)
            if block is not None:
                blocks.append(block)
            run.clear()

    while stack:
        node = stack.pop()
        if isinstance(node, _Leave):
            if node.block:
                flush()
            context = node.context
            continue
        tag = node.tag
        if tag == "-text":
            run.append(_Piece(node.text_content or "", context.bold, context.link))
        elif tag == "br":
            run.append(_Piece("\n", context.bold, context.link))
        elif not tag.startswith("-"):  # not a comment
            is_block = tag in BLOCK_TAGS
            if is_block:
                flush()
            entered = _enter(node, context, links, skip_links)
            if entered.link != context.link:
                run.append(_Piece("", entered.bold, entered.link))  # the link's place, for an image link too
            stack.append(_Leave(context, is_block))
            context = entered
            stack.extend(reversed(list(node.iter(include_text=True))))
    flush()
    return blocks


def _enter(node: LexborNode, context: _Context, links: list[Link], skip_links: frozenset[str]) -> _Context:
    """The context inside `node`; a link is classified and numbered as it is entered."""
    tag = node.tag
    style = node.attributes.get("style") or ""
    changes: dict = {
        "bold": context.bold or tag in ("b", "strong") or bool(_BOLD_STYLE.search(style)) or _headline_font(style)
    }
    if tag in BLOCK_TAGS:
        changes.update(tag=tag, level=HEADING_TAGS.get(tag, context.level))
        if tag in CARD_TAGS:
            changes["card"] = node.mem_id
    href = node.attributes.get("href") if tag == "a" else None
    if href:
        links.append(_link(node_text(node), href, skip_links))
        changes["link"] = len(links) - 1
    return replace(context, **changes)


def _headline_font(style: str) -> bool:
    size = _FONT_SIZE.search(style)
    return size is not None and float(size[1]) * (4 / 3 if size[2].lower() == "pt" else 1) >= HEADLINE_FONT_PX


def _html_block(run: list[_Piece], context: _Context, links: list[Link]) -> Block | None:
    text = fold("".join(piece.text for piece in run))
    numbers = list(dict.fromkeys(piece.link for piece in run if piece.link is not None))
    if not text and not numbers:
        return None
    block = Block(text, [links[n] for n in numbers], _prose(run, links), card=context.card, listed=context.tag == "li")
    if block.written and not block.footer:
        _rank_html(block, run, context, links)
    return block


def _prose(pieces: list[_Piece], links: list[Link]) -> str:
    """The text of the pieces without 'Read more', footer and social link texts."""
    return fold(
        "".join(piece.text for piece in pieces if piece.link is None or links[piece.link].kind in ("article", "other"))
    )


def _rank_html(block: Block, run: list[_Piece], context: _Context, links: list[Link]) -> None:
    """Rank the block when it is a heading: <h1>..<h6>, a line opening with a headline link, a bold line, a label."""
    lead = _lead_link(run, links)
    if context.level:
        _as_heading(block, context.level)
    elif lead is not None:
        link, rest, bold = lead
        block.rank = BOLD if bold and not rest else LEAD
        block.headline, block.own, block.rest = _clean_edges(link.text), link, rest
    elif _bold_line(run, block):
        _as_heading(block, BOLD)
    elif _label_line(block):
        block.rank, block.headline = LABEL, _clean_edges(block.text)


def _as_heading(block: Block, rank: int) -> None:
    headline = _clean_edges(block.prose)
    if _WORD.search(headline):
        block.rank, block.headline = rank, headline
        block.own = next((link for link in block.links if link.kind == "article"), None)


def _lead_link(run: list[_Piece], links: list[Link]) -> tuple[Link, str, bool] | None:
    """The headline link a block opens with, the text after it (its blurb) and whether the link is in bold; None when
    the block does not open with a headline link, or the link runs on into a sentence (a citation in running text)."""
    start = next((n for n, piece in enumerate(run) if piece.link is not None or piece.text.strip()), None)
    if start is None or run[start].link is None:
        return None
    number = run[start].link
    link = links[number]
    if link.kind != "article" or not _headline_like(link.text):
        return None
    after = start
    while after < len(run) and run[after].link == number:
        after += 1
    following = "".join(piece.text for piece in run[after:])
    if following.strip() and not _SEPARATOR.match(following):
        return None  # 'A new study from Stanford researchers found that ...': the link is part of a sentence
    bold = all(piece.bold for piece in run[start:after] if piece.text.strip())
    return link, _LEADING_ASIDE.sub("", _clean_edges(_prose(run[after:], links))), bold


def _bold_line(run: list[_Piece], block: Block) -> bool:
    """All of the block's text in bold (or a headline's font), short, and no sentence: a heading without the tag.
    Not a button: a bold link alone that names no story ('Apply now', 'Register')."""
    written = [piece for piece in run if piece.text.strip()]
    if not written or not all(piece.bold for piece in written) or block.text.endswith("."):
        return False
    button = all(piece.link is not None for piece in written) and not any(
        _headline_like(link.text) for link in block.links
    )
    return not button and _word_count(block.text) <= BOLD_LINE_MAX_WORDS


def _label_line(block: Block) -> bool:
    """A few words on their own, no link, no sentence: 'SPONSORED', 'Top stories', 'Presented by Acme'."""
    return (
        not block.listed
        and not any(link.url for link in block.links)
        and _word_count(block.text) <= LABEL_MAX_WORDS
        and not block.text.endswith((".", ",", ";", "!", "?"))
    )


# ---------------------------------------------------------------- plain-text part

# A line that ends in a URL: 'https://…', '<https://…>', 'Headline (https://…)', 'Headline: https://…',
# 'Read more: https://…'.
_URL_AT_END = re.compile(r"^(?P<before>.*?)[\s(<\[]*(?P<url>https?://[^\s<>()\[\]]+)[)>\]]*[.,;]?$", re.IGNORECASE)
_BARE_URL = re.compile(r"[<(\[]?(?P<url>https?://[^\s<>()\[\]]+?)[>)\]]?[.,;]?", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>()\[\]]+", re.IGNORECASE)
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|<\s*>|\[\s*\]")
# Prose that runs into its link ('... read the report at https://…') is no headline.
_DANGLING = re.compile(r"\b(?:at|here|on|via|from|see|in|to|by|visit)$", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"[.!?]\s")  # a headline is one sentence at most
_NUMBERED = re.compile(r"^(?:#\s?)?\d{1,3}[.):]\s+(?=\S)")
_BULLETED = re.compile(r"^[-*•·▪►]\s+(?=\S)")
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(?=\S)")
_UNDERLINE = re.compile(r"^(?:={3,}|-{3,})$")  # under a heading: 'Top stories' / '==========='
_RULE = re.compile(r"^[-=_*~#•·\s]{2,}$")  # "--", ----- or ===== between sections: a block break


def text_blocks(text: str) -> list[Block]:
    """The blocks of a plain-text newsletter: its paragraphs, each heading line a block of its own."""
    return [block for paragraph in _paragraphs(text) for block in _paragraph_blocks(paragraph)]


def _paragraphs(text: str) -> Iterator[list[str]]:
    """Runs of lines between blank lines and rules; an underline stays with the heading above it."""
    paragraph: list[str] = []
    for raw in text.splitlines():
        line = fold(_safe(raw))
        if line and _UNDERLINE.match(line) and len(paragraph) == 1:
            paragraph.append(line)
        elif not line or _RULE.match(line):
            if paragraph:
                yield paragraph
            paragraph = []
        else:
            paragraph.append(line)
    if paragraph:
        yield paragraph


def _paragraph_blocks(lines: list[str]) -> list[Block]:
    """A paragraph's heading lines as heading blocks, the lines between them as text blocks."""
    blocks: list[Block] = []
    body: list[str] = []
    index, opening = 0, True  # opening: at the paragraph's start, or just after a label such as 'SPONSORED'
    while index < len(lines):
        found = _text_heading(lines, index, opening)
        if found is None:
            body.append(lines[index])
            index, opening = index + 1, False
            continue
        if body:
            blocks.append(_text_block(body))
            body = []
        heading, index = found
        blocks.append(heading)
        opening = heading.rank in (
            CAPITALS_RANK,
            LABEL,
        )  # 'SPONSORED' over a headline line; a story's own lines are its text
    if body:
        blocks.append(_text_block(body))
    return blocks


def _text_heading(lines: list[str], index: int, opening: bool) -> tuple[Block, int] | None:
    """The heading that starts at lines[index] and the index after it, or None for a line of text."""
    line = lines[index]
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if _UNDERLINE.match(following):
        return _text_heading_block(line, 1 if following.startswith("=") else 2), index + 2
    if (numbered := _NUMBERED.match(line)) is not None:
        return _linked_line(lines, index, line[numbered.end() :], NUMBERED_RANK)
    if (marked := _MARKDOWN_HEADING.match(line)) is not None:
        return _text_heading_block(line[marked.end() :], len(marked[1])), index + 1
    if _capitals(line):
        return _text_heading_block(line, CAPITALS_RANK), index + 1
    if (bullet := _BULLETED.match(line)) is not None:
        return _lead_line(lines, index, line[bullet.end() :])
    if not opening:
        return None
    lead = _lead_line(lines, index, line)
    if lead is not None:
        return lead
    if index == 0 and _titles_read_more(lines):
        return _text_heading_block(line, BOLD), index + 1
    if len(lines) == 1 and not _URL.search(line) and _label_line(Block(line)):
        return Block(line, rank=LABEL, headline=_clean_edges(line)), index + 1
    return None


def _text_heading_block(text: str, rank: int) -> Block:
    headline = _clean_edges(text)
    return Block(text, prose=headline, rank=rank, headline=headline)


def _linked_line(lines: list[str], index: int, text: str, rank: int) -> tuple[Block, int]:
    """A heading line with its link: 'Headline (URL)', 'Headline: URL', or the URL alone on the next line."""
    found = _URL_AT_END.match(text)
    following = _BARE_URL.fullmatch(lines[index + 1]) if index + 1 < len(lines) else None
    if found and _EDGE_PUNCTUATION.sub("", found["before"]):
        headline, url, after = found["before"], found["url"].rstrip(".,;:!?"), index + 1
    elif following is not None:
        headline, url, after = text, following["url"], index + 2
    else:
        headline, url, after = text, None, index + 1
    headline = _clean_edges(headline)
    link = _link(headline, url, frozenset()) if url else None
    own = link if link is not None and link.kind == "article" else None
    return Block(text, [link] if link else [], headline, rank, headline, own), after


def _lead_line(lines: list[str], index: int, text: str) -> tuple[Block, int] | None:
    """A line that is a headline with its link, as in a list of links; None for prose that ends in a link."""
    block, after = _linked_line(lines, index, text, LEAD)
    on_next_line = after == index + 2
    raw = text.rstrip() if on_next_line else block.headline
    if block.own is None or not _headline_like(block.headline) or _word_count(block.headline) > BOLD_LINE_MAX_WORDS:
        return None
    if (
        _SENTENCE_BREAK.search(block.headline)
        or _DANGLING.search(block.headline)
        or (on_next_line and raw.endswith((":", ",", ";")))
    ):
        return None  # 'I also recommend this talk:' and a URL under it is prose
    return block, after


def _capitals(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return (
        len(letters) >= 2
        and all(c.isupper() for c in letters)
        and _word_count(line) <= CAPITALS_MAX_WORDS
        and not _URL.search(line)
    )


def _titles_read_more(lines: list[str]) -> bool:
    """'Headline' / its summary / 'Read more: URL': a paragraph whose first line titles the rest."""
    first = lines[0]
    if (
        len(lines) < 2
        or _URL.search(first)
        or not 2 <= _word_count(first) <= BOLD_LINE_MAX_WORDS
        or first.endswith((".", ",", ";", ":"))
    ):
        return False
    return any(
        (found := _URL_AT_END.match(line)) and _CALL_TO_ACTION.match(_EDGE_PUNCTUATION.sub("", found["before"]))
        for line in lines[1:]
    )


def _text_block(lines: list[str]) -> Block:
    """Lines of text with their links; a line that is a link with a short label ('Read more: URL') is no prose."""
    links: list[Link] = []
    prose: list[str] = []
    for line in lines:
        label = _EDGE_PUNCTUATION.sub("", fold(_EMPTY_BRACKETS.sub("", _URL.sub(" ", line))))
        found = [_link(label, url.rstrip(".,;:!?'\""), frozenset()) for url in _URL.findall(line)]
        links.extend(found)
        if (
            not found or _word_count(label) > LINK_LABEL_MAX_WORDS
        ):  # 'Paper: URL', 'Read more: URL' are links, not prose
            prose.append(label)
    return Block(fold(" ".join(lines)), links, fold(" ".join(prose)))


# ---------------------------------------------------------------- story sections (both parts)


@dataclass
class Section:
    """A heading, the labels over it ('Top stories', 'SPONSORED', 'Jobs') and the blocks under it."""

    heading: Block
    labels: list[str]
    body: list[Block] = field(default_factory=list)
    letter: bool = False  # the issue's title or a greeting: the letter around the stories, which holds none of them

    def add(self, block: Block) -> None:
        """Add a block to the section's body; a greeting under the title marks the intro letter."""
        if _GREETING.match(block.prose) and not any(part.written for part in self.body):
            self.letter = True  # 'Hello everyone,' under the issue's title
        self.body.append(block)


@dataclass
class _Label:
    text: str
    rank: int
    first: int | None = None  # the rank of the first section under it

    @property
    def names_a_part(self) -> bool:
        """'Jobs', 'In this issue', 'From our sponsors': a part of the mail, whatever its heading looks like."""
        return bool(_JOBS_LABEL.search(self.text) or _CONTENTS.search(self.text) or _SPONSORS.search(self.text))

    def covers(self, rank: int) -> bool:
        """A label covers the section right after it ('SPONSORED' over one ad), and further ones while they rank below
        the label and no higher than that first section ('Top stories' over h3 stories, until the next h2). A label
        that names a part of the mail covers every section no higher than its first, until the next label."""
        if self.first is None:
            self.first = rank
            return True
        return self.first <= rank and (self.rank < rank or self.names_a_part)


def find_sections(blocks: list[Block]) -> list[Section]:
    """The story sections of a mail's blocks, in reading order.

    A section starts at a heading and holds the blocks up to the next one; weaker headings inside a story's text (a
    subheading, a list of links) belong to it. A heading with no link of its own right over another heading labels
    what follows. Text before the first heading (the intro letter) belongs to no section; the footer ends the reading.
    """
    repeated = _repeated_headlines(blocks)
    sections: list[Section] = []
    labels: list[_Label] = []
    current: Section | None = None
    for index, block in enumerate(blocks):
        if block.end and sections:
            break
        if block.footer:
            continue
        if block.rank != BODY and _labels(current, block, _next_written(blocks, index), repeated):
            labels = [label for label in labels if label.rank < block.rank] + [_Label(block.headline, block.rank)]
            current = None
        elif block.rank in (BODY, LABEL) or _belongs_to(current, block, repeated):
            if current is not None:  # text before the first heading is the intro letter: no section's
                current.add(block)
        else:
            labels = [label for label in labels if label.covers(block.rank)]
            current = Section(block, [label.text for label in labels], letter=_title_of_issue(block))
            sections.append(current)
    return sections


def _repeated_headlines(blocks: list[Block]) -> set[str]:
    """Heading texts that recur ('Why it matters' in every story): subheadings, not stories."""
    counts = Counter(block.headline.casefold() for block in blocks if block.rank < BODY and block.own is None)
    return {text for text, count in counts.items() if count > 1}


def _subheading(block: Block, repeated: set[str]) -> bool:
    """A heading inside a story's text: no link, and one word, a closing colon, or a text that recurs."""
    return block.own is None and (
        _word_count(block.headline) <= 1 or block.prose.endswith(":") or block.headline.casefold() in repeated
    )


def _title_of_issue(block: Block) -> bool:
    """'Move Briefing #88', 'The AI at Work Weekly — Issue 142': the mail's own title, no story."""
    return block.own is None and bool(_ISSUE_TITLE.search(block.headline))


def _belongs_to(section: Section | None, block: Block, repeated: set[str]) -> bool:
    """Is a heading-like block part of the section's text: a subheading ('Why it matters'), or a list of links under
    the story's paragraphs (the papers it cites)?

    Only a weaker heading can be, and only in the story's own card: a template's next story box starts a section.
    A weaker heading that reads as a headline (three words or more, or a link of its own) starts a section too: a
    post's stories are often <h3> headings under its <h1> title.
    """
    if section is None or section.letter or block.rank <= section.heading.rank:
        return False
    last = next((part for part in reversed(section.body) if part.written), None)  # the story's text so far
    if _subheading(block, repeated):
        return last is None or block.card == last.card
    return block.rank >= LEAD and last is not None and block.card == last.card


def _next_written(blocks: list[Block], index: int) -> Block | None:
    """The next block with words that is not a footer line (an image between a label and its story is skipped)."""
    return next((block for block in islice(blocks, index + 1, None) if block.written and not block.footer), None)


def _labels(section: Section | None, block: Block, following: Block | None, repeated: set[str]) -> bool:
    """Is the block a label: a heading with no link of its own right over another heading ('Top stories', 'SPONSORED',
    'Jobs', 'Presented by Acme')? Not over its own subheading (a story may open with 'What's new'), and a subheading
    inside a story ('Further reading:') over a list of links that belongs to the story is part of its text."""
    if block.own is not None or following is None or following.rank > LEAD:
        return False
    if following.rank > block.rank and _subheading(following, repeated):
        return False
    inside = (
        _subheading(block, repeated)
        and _belongs_to(section, block, repeated)
        and _belongs_to(section, following, repeated)
    )
    return not inside


# ---------------------------------------------------------------- sections -> items


@dataclass
class Reading:
    """What one part of a mail gave: its items, and the counts that tell whether its layout was read."""

    items: list[Item]
    sections: int = 0  # story sections found
    left_out: int = 0  # sections left out: the letter, sponsors, jobs, headings of a word or two
    headings: int = 0  # distinct headings at the busiest heading level: a count that does not depend on the sections

    def shortfall(self) -> str | None:
        """Far fewer items than the mail has story sections: a layout this reader does not know, said in words."""
        expected = max(self.sections, self.headings - self.left_out)
        if expected < FEW_SECTIONS or len(self.items) * 2 >= expected:
            return None
        items = f"{len(self.items)} item" + ("" if len(self.items) == 1 else "s")
        return (
            f"far fewer items than sections: {expected} story sections (headings, headline links, numbered items) "
            f"gave {items}; its layout may not be read right: check the items it gave"
        )


FEW_SECTIONS = 4  # below this, a missing item or two is no sign of an unknown layout


def read_blocks(blocks: list[Block]) -> Reading:
    """The items of a mail's blocks: one per story section, the intro letter, sponsors, jobs and footer left out.

    A section that falls back to its first article link takes one that no other story names as its own or has taken.
    Two sections with the same link both become records: the duplicate rule of the parse records the second one.
    """
    stories: list[tuple[Section, str]] = []
    left_out = 0
    sections = find_sections(blocks)
    _mark_title(sections)
    for section in sections:
        summary = _summary(section)
        if _left_out(section, summary):
            left_out += 1
        else:
            stories.append((section, summary))
    named = [_named_link(section) for section, _ in stories]
    claimed = {url for url in named if url}
    items: list[Item] = []
    taken: set[str] = set()
    for (section, summary), url in zip(stories, named, strict=True):
        url = url or _first_free_link(section, claimed | taken)
        if url:
            taken.add(url)
        items.append(Item(section.heading.headline, url or "", summary, section.labels))
    return Reading(items, len(stories), left_out, _headings(blocks))


def _mark_title(sections: list[Section]) -> None:
    """A lone heading over all the others, with no link of its own, is the post's title ('The Riverton Roundup'):
    the letter around the stories, not a story."""
    if len(sections) < 3:
        return
    first, rest = sections[0], sections[1:]
    if all(section.heading.rank > first.heading.rank for section in rest) and _named_link(first) is None:
        first.letter = True


def _named_link(section: Section) -> str | None:
    """The heading's own link, else the section's 'Read more' / 'Learn more' link."""
    if section.heading.own is not None:
        return section.heading.own.url
    return next((link.url for block in section.body for link in block.links if link.kind == "cta" and link.url), None)


def _first_free_link(section: Section, used: set[str]) -> str | None:
    """The section's first article link that no other story has taken."""
    return next(
        (link.url for block in section.body for link in block.links if link.article and link.url not in used), None
    )


def _summary(section: Section) -> str:
    """The blurb after a headline link, else the section's first paragraph."""
    if section.heading.rest:
        return section.heading.rest
    paragraph = next(
        (block.prose for block in section.body if block.rank == BODY and _word_count(block.prose) >= SUMMARY_MIN_WORDS),
        "",
    )
    return _clean_edges(paragraph)


def _left_out(section: Section, summary: str) -> bool:
    """Is the section no story: a one-word heading, a button, the letter around the stories, a sponsor's, a job ad's?"""
    headline, labels = section.heading.headline, section.labels
    if _word_count(headline) < STORY_MIN_WORDS or _CALL_TO_ACTION.match(headline):
        return True
    if (
        section.letter
        or _LETTER.search(headline)
        or _CONTENTS.search(headline)
        or any(_CONTENTS.search(label) for label in labels)
    ):
        return True
    if (
        any(_SPONSOR.search(label) for label in labels)
        or _SPONSOR_NOTE.search(headline)
        or _SPONSOR_NOTE.search(summary)
    ):
        return True
    links = [link for block in (section.heading, *section.body) for link in block.links]
    return (
        any(_JOBS_LABEL.search(label) for label in labels)
        or bool(_JOBS_HEADING.fullmatch(headline))
        or any(_APPLY.fullmatch(_clean_edges(link.text)) for link in links)
    )


def _headings(blocks: list[Block]) -> int:
    """The distinct headings of the busiest heading level (<h1>..<h6>, numbered lines, headline links) before the
    footer."""
    levels: dict[int, set[str]] = {}
    for block in blocks:
        if block.end and levels:
            break
        if (block.rank <= 6 and _word_count(block.headline) >= STORY_MIN_WORDS) or (
            block.rank == LEAD and block.own is not None
        ):
            levels.setdefault(block.rank, set()).add(block.headline.casefold())
    return max(map(len, levels.values()), default=0)


def html_items(html: str, skip_links: frozenset[str] = frozenset()) -> list[Item]:
    """The items of an HTML newsletter, in reading order."""
    return read_blocks(html_blocks(html, skip_links)).items


def text_items(text: str) -> list[Item]:
    """The items of a plain-text newsletter, in reading order."""
    return read_blocks(text_blocks(text)).items


# ---------------------------------------------------------------- messages


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


def message_reading(message: EmailMessage) -> Reading:
    """What one email gave: from its HTML part; from its text part when there is no HTML part or it gives no item."""
    reading = Reading([])
    html_part = message.get_body(preferencelist=("html",))
    if html_part is not None:
        reading = read_blocks(html_blocks(_content(html_part), _list_unsubscribe(message)))
    text_part = message.get_body(preferencelist=("plain",))
    if not reading.items and text_part is not None:
        reading = read_blocks(text_blocks(_content(text_part)))
    return reading


def message_items(message: EmailMessage) -> list[Item]:
    """The items of one email, in reading order."""
    return message_reading(message).items


def _sender(message: EmailMessage) -> str | None:
    header = message.get("From")
    if header is None:
        return None
    addresses = getattr(header, "addresses", ()) or ()
    if addresses:
        return _safe(addresses[0].display_name or addresses[0].addr_spec) or None
    return _safe(str(header)).strip() or None


def _message_date(message: EmailMessage) -> str | None:
    """The Date header as an ISO string in UTC; one that email cannot read is passed on as written, for pandas to
    try."""
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


Record = tuple[int, "dict | RejectedRecord | Notice"]


def _message_records(raw: bytes, base: int, what: str) -> list[Record]:
    """The records of one message at positions base + item number; base itself for the message as a whole."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not message.keys():
        return [(base, RejectedRecord("not an email: it has no header lines (From:, Date:, Subject: ...)"))]
    date = _message_date(message)
    reading = message_reading(message)
    items = reading.items
    if not items:
        # Recorded, not dropped: the quarantine shows which email gave nothing, so a new layout gets noticed.
        return [(base, RejectedRecord("email holds no items", date=date))]
    # Stories that never became records are invisible to the balance check: say so when most sections gave none.
    shortfall = reading.shortfall()
    notices: list[Record] = [(base, Notice(f"{what}: {shortfall}" if base else shortfall))] if shortfall else []
    if date is None:
        return notices + [
            (base + n, RejectedRecord("email has no Date header")) for n in range(1, min(len(items), MAX_ITEMS) + 1)
        ]
    source, message_id = _sender(message), _message_id(message, raw)
    records: list[Record] = notices + [
        (
            base + number,
            {
                "headline": item.headline,
                "link": item.link,
                "short_description": item.summary,
                "date": date,
                "source": source,
                "id": f"{message_id}#{number}",
            },
        )
        for number, item in enumerate(items[:MAX_ITEMS], start=1)
    ]
    if len(items) > MAX_ITEMS:
        records.append(
            (base, RejectedRecord(f"email holds {len(items)} items: only the first {MAX_ITEMS} were read", date=date))
        )
    return records


def _safe_message_records(raw: bytes, base: int, what: str) -> list[Record]:
    try:
        return _message_records(raw, base, what)
    except Exception as error:  # one malformed message must not cost the mailbox its other messages
        return [(base, RejectedRecord(f"{what} cannot be parsed: {type(error).__name__}: {error}"))]


def read_eml(data: bytes) -> Records:
    """One email (.eml): position = item number (1, 2, ...); position 0 = the email as a whole (no items,
    unparseable)."""
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
        raise ValueError(
            "not an mbox mailbox: it must start with a 'From ' separator line (deliver a single email as .eml)"
        )
    starts = [match.start() for match in _FROM_LINE.finditer(data)] + [len(data)]
    messages = []
    for start, end in zip(starts, starts[1:]):
        chunk = data[start:end]
        newline = chunk.find(b"\n")
        body = b"" if newline < 0 else chunk[newline + 1 :]
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
