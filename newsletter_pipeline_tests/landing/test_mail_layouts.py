"""Issue 12, fault 10: a real newsletter e-mail loses its stories.

A weekly newsletter written as a heading per story gave two items, both wrong (an inline link and a cited paper's
title), and lost its six stories, with nothing quarantined. Newsletters come in at least four layouts: (a) a heading
per story with paragraphs under it, (b) a list of headline links with blurbs, (c) template tables with a "Read more"
button per story, (d) plain text with numbered items and bare URLs. `emails/` holds two e-mails of each, at a
realistic size: 40 to 80 links, click-tracking redirects, utm_* parameters, a web-version link, an intro letter,
sponsor and job sections and a footer. Every story section of each is exactly one item: its heading (or headline
link) as headline, its first paragraph as summary, and as link the heading's own, else the section's "Read more",
else its first article link, else none. No inline link, sponsor, job ad or footer line is an item.
"""

import logging
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import dagster as dg
import pytest
from selectolax.lexbor import LexborHTMLParser

from newsletter_pipeline.defs.assets.items import raw_items
from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.mail import clean_link, node_text

EMAILS = Path(__file__).with_name("emails")


class Story(NamedTuple):
    headline: str
    link: str
    summary: str  # how the summary starts


# Every story section of each e-mail, in order.
LAYOUTS = {
    # (a) a heading per story: seven <h1>, six stories and a jobs board, 54 links
    "model_letter.eml": [
        Story(
            "Robot Hands Learn to Grasp From Online Videos",
            "https://www.modelletter.example/news/robot-hands-learn-from-video",
            "What’s new: Researchers at Tidewater University and",
        ),
        Story(
            "Europe’s AI Office Publishes Draft Code for Model Makers",
            "https://digital-strategy.ec.example/en/library/draft-general-purpose-ai-code-2026",
            "What’s new: The European Union’s AI Office",
        ),
        Story(
            "Open-Weights Coding Model Tops Private Rivals on Benchmark",
            "https://leaderboard.codebench.example/",
            "What’s new: Larchmont AI released Gable-34B, an",
        ),
        Story(
            "Chipmakers Race to Stack Memory Higher",
            "https://www.modelletter.example/news/chipmakers-race-to-stack-memory-higher",
            "What’s new: Two of the three makers",
        ),
        Story(
            "Hospitals Test AI Scribes, With Mixed Results",
            "https://jamanetwork.example/journals/network/fullarticle/2026.11.0931",
            "What’s new: A trial at 14 hospitals",
        ),
        Story(
            "Small Models Learn to Check Their Own Math",
            "https://arxiv.example/abs/2611.06120",
            "What’s new: A 3-billion-parameter model trained to",
        ),
    ],
    # (a) an <h1> per story, some linked, a sponsor and job headings
    "heading_per_story.eml": [
        Story(
            "Hospitals struggle to hire the data scientists their AI projects need",
            "https://www.healthwire.test/2026/11/ai-hiring-gap",
            "A survey of 400 hospital systems found",
        ),
        Story(
            "A small open model beats larger rivals on medical exam questions",
            "https://research.labnotes.test/posts/small-model-medical-exams",
            "The 3-billion-parameter model was trained on curated",
        ),
        Story(
            "European regulators publish the first audit rules for general-purpose AI",
            "https://www.policywatch.test/eu/ai-audit-rules",
            "Providers of the largest models will have",
        ),
        Story(
            "Chip makers race to ship low-power accelerators for laptops",
            "https://www.chipreport.test/news/laptop-npu-race",
            "Three vendors announced neural processing units that",
        ),
        Story(
            "Why a city replaced its chatbot with a phone line again",
            "https://council.city.test/minutes/2026-11-04",
            "After a year of complaints, the council",
        ),
        Story(
            "Translators' union wins a say over machine translation at a publisher",
            "https://www.bookbiz.test/2026/11/translators-agreement",
            "The agreement requires consent before a translator's",
        ),
    ],
    # (b) headline links with blurbs under group headings, a sponsor entry, jobs
    "signal_digest.eml": [
        Story(
            "Orchard delays its smart glasses to 2027 (3 minute read)",
            "https://www.theverge.example/2026/11/17/orchard-glasses-delay",
            "Orchard has pushed the launch of its",
        ),
        Story(
            "Ledgerly raises $210M to automate small-business bookkeeping (2 minute read)",
            "https://techcrunch.example/2026/11/17/ledgerly-series-c",
            "The Series C values the company at",
        ),
        Story(
            "New export rules cap chip sales to 40 more countries (4 minute read)",
            "https://www.reuters.example/technology/chip-export-rules-2026-11-17/",
            "The rules set country-by-country quotas for advanced",
        ),
        Story(
            "Streamly’s ad tier passes its paid plans in sign-ups (3 minute read)",
            "https://www.bloomberg.example/news/articles/2026-11-17/streamly-ad-tier",
            "Two-thirds of new Streamly accounts in the",
        ),
        Story(
            "Lab-grown cartilage repairs knees in a small trial (5 minute read)",
            "https://www.nature.example/articles/d41586-026-03312-7",
            "Twelve patients received implants grown from their",
        ),
        Story(
            "A lunar lander survives its first night on the Moon (3 minute read)",
            "https://spaceflightnow.example/2026/11/17/lunar-lander-night",
            "The lander’s batteries and heaters kept its",
        ),
        Story(
            "Ocean heat content hits a record for the eighth year running (4 minute read)",
            "https://www.sciencenews.example/article/ocean-heat-record-2026",
            "The upper 2,000 metres of the oceans",
        ),
        Story(
            "Async closures are now stable in Rust 1.93",
            "https://blog.rust-lang.example/2026/11/17/async-closures-stable.html",
            "The release also speeds up incremental builds",
        ),
        Story(
            "DuckDB 2.1 adds a native vector index",
            "https://github.example/duckdb/duckdb/releases/tag/v2.1.0",
            "Similarity search now runs inside the database,",
        ),
        Story(
            "Feature flags are technical debt with a timer",
            "https://martinfowler.example/articles/feature-flags-debt.html",
            "A practical guide to expiring flags automatically,",
        ),
        Story(
            "Cross-document view transitions land in every major browser",
            "https://web.dev.example/blog/view-transitions-cross-document",
            "Multi-page sites can now animate between pages",
        ),
        Story(
            "What I learned reading strace output for a week",
            "https://jvns.example/blog/2026/11/16/reading-strace-output/",
            "Julia walks through the system calls behind",
        ),
        Story(
            "Europe’s right-to-repair rules start to change phone design (6 minute read)",
            "https://www.wired.example/story/right-to-repair-phones-eu/",
            "Screws are back. Under rules that took",
        ),
        Story(
            "Office mandates are not raising productivity, a study of 600 firms finds (4 minute read)",
            "https://www.ft.example/content/remote-work-office-mandates-2026",
            "Companies that ordered staff back five days",
        ),
        Story(
            "Zed 1.4 brings remote development to Linux (GitHub Repo)",
            "https://github.example/zed-industries/zed/releases/tag/v1.4.0",
            "",
        ),
        Story(
            "Building small tools with language model plugins (Blog)",
            "https://simonwillison.example/2026/Nov/17/llm-plugins/",
            "",
        ),
        Story(
            "USB Power Delivery 3.2 explained in five minutes (Website)",
            "https://arstechnica.example/gadgets/2026/11/usb-c-power-delivery-3-2/",
            "",
        ),
        Story(
            "The hidden complexity of time zones in calendar apps (Video)",
            "https://www.youtube-nocookie.example/watch?v=Jx3k9aQ2",
            "",
        ),
    ],
    # (b) a Substack-like list of headline links
    "headline_list.eml": [
        Story(
            "Rail operators agree on a single ticket for cross-border trips",
            "https://www.railnews.test/2026/11/single-ticket",
            "Passengers will be able to book Paris",
        ),
        Story(
            "Night trains return to the Alps after a decade-long gap",
            "https://travel.alpinepost.test/night-trains-return",
            "Two operators will run sleeper services from",
        ),
        Story(
            "Airline emissions rose faster than traffic last year, report finds",
            "https://www.climatedesk.test/aviation-emissions-2025",
            "Older planes kept in service during delivery",
        ),
        Story(
            "A ferry line bets on battery ships for short island crossings",
            "https://maritime.example.test/battery-ferries",
            "The first of four electric ferries enters",
        ),
        Story(
            "City bike-share schemes expand to electric cargo bikes",
            "https://www.urbanmobility.test/cargo-bikes",
            "Parents and shop owners are the heaviest",
        ),
        Story(
            "Bus drivers shortage eases as pay deals take hold",
            "https://www.transportworker.test/driver-shortage-2026",
            "Vacancies fell by a third over the",
        ),
        Story(
            "Motorway tolls to vary by time of day on a pilot stretch",
            "https://roads.gov.test/news/variable-tolls-pilot",
            "Drivers will pay less at night and",
        ),
        Story(
            "Why airports are removing liquid limits at security, slowly",
            "https://www.flyerguide.test/liquids-rules",
            "New CT scanners make the 100 ml",
        ),
    ],
    # (c) a Mailchimp template: a card per story, Read more buttons, dividers, a sponsor card
    "city_desk_daily.eml": [
        Story(
            "Night buses are coming to six routes in January",
            "https://citydeskdaily.example/2026/11/18/night-buses-six-routes",
            "The transit board voted 7–2 on Tuesday",
        ),
        Story(
            "Council budget fight puts library hours on the line",
            "https://citydeskdaily.example/2026/11/18/budget-libraries-hours",
            "A proposed 4% cut to the library",
        ),
        Story(
            "East Side finally gets a full-size grocery store",
            "https://citydeskdaily.example/2026/11/18/east-side-grocery",
            "After seven years without one, the neighborhood’s",
        ),
        Story(
            "Beloved Harbor Street bakery reopens after fire",
            "https://citydeskdaily.example/2026/11/18/bakery-reopens-after-fire",
            "Eight months after an electrical fire gutted",
        ),
        Story(
            "River trail extension will link two parks by 2028",
            "https://www.rivertonrecord.example/news/2026/11/17/river-trail-extension",
            "The parks department secured a state grant",
        ),
        Story(
            "Jefferson High robotics team heads to state finals",
            "https://citydeskdaily.example/2026/11/18/high-school-robotics-state",
            "The team’s robot, built largely from salvaged",
        ),
        Story(
            "What the proposed water rate increase means for your bill",
            "https://citydeskdaily.example/2026/11/18/water-rates-hearing",
            "A typical household would pay about $6",
        ),
    ],
    # (c) template tables with Read more buttons
    "template_tables.eml": [
        Story(
            "Smartphone makers promise seven years of software updates",
            "https://www.gadgetline.test/seven-year-updates",
            "Two of the largest brands extended support",
        ),
        Story(
            "Shipping rates fall as new container vessels flood the market",
            "https://www.freightwatch.test/rates-november",
            "Spot rates on the Asia-Europe route dropped",
        ),
        Story(
            "Astronomers spot water vapour around a nearby rocky planet",
            "https://www.skyandstars.test/water-vapour-exoplanet",
            "The planet orbits a red dwarf 40",
        ),
        Story(
            "Trial finds a cheaper drug works as well for high blood pressure",
            "https://www.medjournal.test/bp-trial-results",
            "The generic medicine matched the newer brand",
        ),
        Story(
            "Heat pumps outsell gas boilers for the first time in Germany",
            "https://www.energywende.test/heat-pumps-record",
            "Subsidies and a rise in gas prices",
        ),
        Story(
            "A lost silent film is found in a farmhouse attic",
            "https://www.filmarchive.test/lost-film-found",
            "The 1924 comedy was thought destroyed in",
        ),
    ],
    # (d) plain text: numbered stories, bullets of quick hits, a sponsor and jobs
    "bytesized.eml": [
        Story(
            "Postgres 19 beta ships with built-in vector indexes",
            "https://www.postgresql.example/about/news/postgresql-19-beta-1-released-3102/",
            "The first beta of Postgres 19 adds",
        ),
        Story(
            "GitHub moves Actions runners to ARM by default",
            "https://github.blog.example/changelog/2026-11-17-arm-runners-default/",
            "New repositories will get ARM64 runners unless",
        ),
        Story(
            "A supply-chain attack hid in a popular YAML parser for six weeks",
            "https://www.bleepingcomputer.example/news/security/yaml-parser-supply-chain-attack/",
            "A compromised maintainer account pushed two releases",
        ),
        Story(
            "TypeScript 6.0 drops support for old module resolution modes",
            "https://devblogs.microsoft.example/typescript/announcing-typescript-6-0/",
            'The release removes the "node10" and "classic"',
        ),
        Story(
            "Why our Kubernetes bill dropped 60% after we deleted sidecars",
            "https://engineering.parcelwise.example/blog/sidecarless-mesh",
            "Parcelwise replaced per-pod proxies with a node-level",
        ),
        Story("SQLite 3.52 adds JSONB indexing", "https://sqlite.example/releaselog/3_52_0.html", ""),
        Story(
            "Firefox ships a built-in local translation for 40 languages",
            "https://blog.mozilla.example/en/firefox/local-translation-40/",
            "",
        ),
        Story(
            "The Go team proposes a standard library for structured concurrency",
            "https://github.example/golang/go/issues/71234",
            "",
        ),
        Story("A visual guide to how B-trees split pages", "https://cstack.example/db_tutorial/btree-splits.html", ""),
        Story(
            "Kotlin Multiplatform reaches stable for iOS targets",
            "https://blog.jetbrains.example/kotlin/2026/11/kmp-ios-stable/",
            "",
        ),
        Story(
            "Zig 0.16 ships a new incremental compiler backend",
            "https://ziglang.example/download/0.16.0/release-notes.html",
            "",
        ),
        Story(
            "Deno adds a built-in package registry mirror for air-gapped teams", "https://deno.example/blog/v3.3", ""
        ),
        Story(
            "An interactive explainer of how CRDTs merge concurrent edits", "https://crdt-explained.example/merge", ""
        ),
        Story(
            "Ruby 3.5 makes frozen string literals the default",
            "https://www.ruby-lang.example/en/news/2026/11/16/ruby-3-5-0-preview2-released/",
            "",
        ),
    ],
    # (d) plain text: numbered items, sponsor, quick links and jobs
    "numbered_text.eml": [
        Story(
            "Postgres 19 beta adds incremental materialized views",
            "https://www.postgresql.test/about/news/pg19-beta",
            "Views can now refresh only the rows",
        ),
        Story(
            "A new Python packaging standard lets wheels declare GPU needs",
            "https://peps.python.test/pep-0817/",
            "Installers will pick the right build for",
        ),
        Story(
            "Browser vendors agree to phase out third-party cookies by 2028",
            "https://www.webstandards.test/cookies-timeline",
            "The timeline follows two years of talks",
        ),
        Story(
            "Study finds most open-source maintainers work alone",
            "https://research.oss.test/maintainers-2026",
            "Of 2,000 projects surveyed, 61 percent had",
        ),
        Story(
            "The Linux kernel drops support for 32-bit ARM boards from 2012",
            "https://lwn.test/Articles/998877/",
            "Maintainers said nobody had tested those boards",
        ),
        Story(
            "Rust-based terminal reaches its first stable release",
            "https://blog.termforge.test/1-0",
            "It renders on the GPU and ships",
        ),
        Story(
            "Git gains a faster way to clone huge repositories",
            "https://git.test/blog/partial-clone-speedups",
            "Partial clones now fetch trees on demand,",
        ),
    ],
}

# A post whose stories are <h3> headings under its <h1> title: the title is no story, each <h3> is one.
TITLED_POST = {
    "riverton_roundup.eml": [
        Story(
            "Council approves overnight bus service on six routes",
            "https://rivertontransit.example/board/2026-11-17/agenda.pdf",
            "The transit board voted 7–2 to run",
        ),
        Story(
            "Library hours become the budget’s sticking point",
            "https://rivertoncouncil.example/ruiz/amendment-14",
            "A proposed 4% cut would close branches",
        ),
        Story(
            "East Side co-op grocery opens its doors on Saturday",
            "https://maplestreetcoop.example/opening",
            "About 1,900 households bought $100 shares in",
        ),
        Story(
            "Harbor Street bakery is back eight months after a fire",
            "",
            "Rosa’s Panadería reopens with a wood-fired oven",
        ),
        Story(
            "State grant will pay for the east-bank river trail",
            "https://rivertonparks.example/projects/east-bank-trail",
            "The parks department won $4.2 million to",
        ),
        Story(
            "Water rates hearing set for Thursday at City Hall",
            "https://rivertonwater.example/rates/comment",
            "A typical household would pay about $6",
        ),
    ],
}

# What each e-mail holds that a reader can take for a story, and must not: inline links (the fault report's own
# example among them), cited papers, sponsors, job ads, the letter and the title, web-version links.
NOT_STORIES = {
    "model_letter.eml": [
        "could not find enough people who know how to build with AI",
        "Dexterous Grasping From Passive Human Video at Scale",
        "Sim-to-Real Transfer for Multi-Fingered Hands",
        "A MESSAGE FROM VECTORFORGE",
        "Senior Research Engineer, Multimodal — Northwind Robotics (Remote, US)",
        "See all open roles on our jobs board",
        "Jobs Board",
        "View in browser",
    ],
    "heading_per_story.eml": [
        "many hospitals just can't find enough skilled AI talent",
        "our earlier coverage of this story and what came before",
        "Label your training data ten times faster with DataForge",
        "Machine learning engineer at a hospital network in Leeds",
        "The AI at Work Weekly — Issue 142",
    ],
    "signal_digest.eml": [
        "On-call without the 3 a.m. guesswork",
        "Ship dashboards in an afternoon, not a quarter (Sponsor)",
        "Staff Data Engineer at Ledgerly (Remote, $190k–$230k)",
        "an audit of 10,000 closings",
        "Signal Digest 2026-11-18",
    ],
    "headline_list.eml": [
        "Move Briefing #88",
        "reader meetup in Lyon",
        "Get a Europe-wide rail pass for the winter season",
    ],
    "city_desk_daily.eml": [
        "IN THIS ISSUE",
        "Open a business account in ten minutes",
        "Branch manager, Riverton Public Library",
        "Line cook at The Copper Pot (full time)",
        "get tickets for our holiday market",
    ],
    "template_tables.eml": [
        "Switch your business banking in ten minutes",
        "Listen to today’s podcast",
        "See all past issues",
    ],
    "bytesized.eml": [
        "Catch flaky tests before your users do",
        "Senior Go Engineer at Parcelwise (Berlin or remote EU)",
        "TOP STORIES",
        "Post a job",
    ],
    "numbered_text.eml": [
        "Deploy previews for every pull request with ShipIt.",
        "Ship faster with zero-config CI from ShipIt",
        "Backend engineer at a climate startup (remote, EU)",
        "QUICK LINKS",
    ],
}

# A featured story, then eight headline links in its own box with no heading between: the links may be the story's
# further reading or stories of their own. The reader takes them as the former, and says so in a warning.
AMBIGUOUS = "morning_wire.eml"
WARNING = (
    "far fewer items than sections: 8 story sections (headings, headline links, numbered items) gave 1 item; "
    "its layout may not be read right: check the items it gave"
)


def read(name: str) -> parse.Parsed:
    path = EMAILS / name
    return parse.parse_file(parse.LandingFile(str(path), path.read_bytes))


def message(name: str) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes((EMAILS / name).read_bytes())


def links(name: str) -> list[str]:
    """The e-mail's web links as written: the HTML part's anchors, else the plain-text part's URLs."""
    mail = message(name)
    html = mail.get_body(preferencelist=("html",))
    if html is not None:
        anchors = LexborHTMLParser(html.get_content()).css("a[href]")
        return [a.attributes["href"] for a in anchors if a.attributes["href"].startswith("http")]
    return re.findall(r"https?://[^\s<>()\[\]]+", mail.get_body(preferencelist=("plain",)).get_content())


def inline_link_texts(name: str) -> set[str]:
    """The texts of the links inside running text: a paragraph that begins before the link and goes on well past it."""
    html = message(name).get_body(preferencelist=("html",))
    found = set()
    for anchor in LexborHTMLParser(html.get_content()).css("a[href]"):
        block = anchor.parent
        while block.tag not in ("p", "li", "td", "div", "h1", "h2", "h3", "h4", "h5", "h6", "body"):
            block = block.parent
        text, paragraph = node_text(anchor), node_text(block)
        if text and not paragraph.startswith(text) and len(paragraph.split()) > len(text.split()) + 3:
            found.add(text)
    return found


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_the_test_emails_are_newsletters_of_a_realistic_size(name):
    mail, written = message(name), links(name)
    assert 40 <= len(written) <= 80 and (EMAILS / name).stat().st_size < 60_000
    assert mail["List-Unsubscribe"] or any("unsubscribe" in link for link in written)
    redirects = [link for link in written if urlsplit(clean_link(link)).netloc != urlsplit(link).netloc.lower()]
    assert len(redirects) >= 5 and any("utm_" in link for link in written), (
        "click-tracking redirects and utm_* parameters"
    )


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_story_section_is_one_item_and_nothing_else_is(name):
    parsed = read(name)
    got = [Story(*row) for row in parsed.items[["headline", "link", "short_description"]].values.tolist()]
    want = LAYOUTS[name]
    assert [(s.headline, s.link) for s in got] == [(s.headline, s.link) for s in want]
    for story, expected in zip(got, want, strict=True):
        assert story.summary.startswith(expected.summary), (story.headline, story.summary)
    # Nothing quarantined, no warning, and the balance holds: records = items + duplicates + quarantined.
    assert parsed.rejects.empty and not parsed.warnings and parsed.balanced()
    assert parsed.records == len(parsed.items) + len(parsed.duplicates) + len(parsed.rejects) == len(want)


@pytest.mark.parametrize("name", sorted(NOT_STORIES))
def test_no_inline_link_sponsor_job_ad_or_letter_becomes_an_item(name):
    headlines = set(read(name).items["headline"])
    assert not headlines & set(NOT_STORIES[name])
    if message(name).get_body(preferencelist=("html",)) is not None:
        inline = inline_link_texts(name)
        assert inline, "the e-mail has links in running text"
        assert not headlines & inline


def test_the_link_is_the_headings_else_read_more_else_the_first_article_link_else_none():
    def link_of(name: str, headline: str) -> str:
        items = read(name).items
        return items.loc[items["headline"] == headline, "link"].item()

    # The heading's own link.
    assert link_of("city_desk_daily.eml", "Council budget fight puts library hours on the line").endswith(
        "/budget-libraries-hours"
    )
    # No link on the heading: the section's "Read the full story", though links in its paragraphs come first.
    assert link_of("model_letter.eml", "Chipmakers Race to Stack Memory Higher").endswith(
        "/chipmakers-race-to-stack-memory-higher"
    )
    # Neither: the section's first article link (an image linked to the article, a cited document) ...
    assert link_of("model_letter.eml", "Robot Hands Learn to Grasp From Online Videos").endswith(
        "/robot-hands-learn-from-video"
    )
    assert link_of("model_letter.eml", "Europe’s AI Office Publishes Draft Code for Model Makers").endswith(
        "-code-2026"
    )
    # ... that no other story has taken: the leaderboard is the coding model's story's link, so the math story gets its paper.
    assert (
        link_of("model_letter.eml", "Small Models Learn to Check Their Own Math")
        == "https://arxiv.example/abs/2611.06120"
    )
    # No link at all: none.
    post = read("riverton_roundup.eml").items
    assert post.loc[post["headline"] == "Harbor Street bakery is back eight months after a fire", "link"].item() == ""


def test_a_posts_title_is_no_story_and_its_subheadings_are():
    parsed = read("riverton_roundup.eml")
    got = parsed.items[["headline", "link", "short_description"]].values.tolist()
    want = TITLED_POST["riverton_roundup.eml"]
    assert [(h, link) for h, link, _ in got] == [(s.headline, s.link) for s in want]
    assert all(summary.startswith(s.summary) for (_, _, summary), s in zip(got, want, strict=True))
    assert not parsed.warnings and parsed.balanced()


def test_an_email_that_gives_far_fewer_items_than_sections_is_named_in_a_warning():
    parsed = read(AMBIGUOUS)
    assert parsed.items["headline"].tolist() == ["Coastal towns evacuate as the season’s strongest storm nears"]
    assert parsed.warnings == (f"{EMAILS / AMBIGUOUS}: {WARNING}",)
    assert parsed.rejects.empty and parsed.balanced()  # a warning is no record


def test_in_a_mailbox_the_warning_names_the_message(tmp_path):
    mailbox = tmp_path / "inbox.mbox"
    mailbox.write_bytes(
        b"".join(
            b"From newsletter@example.test Wed Nov 18 06:00:00 2026\n"
            + (EMAILS / name).read_bytes().replace(b"\r\n", b"\n")
            + b"\n"
            for name in ("model_letter.eml", AMBIGUOUS)
        )
    )
    parsed = parse.parse_file(parse.LandingFile(str(mailbox), mailbox.read_bytes))
    assert parsed.warnings == (f"{mailbox}: message 2: {WARNING}",)
    assert len(parsed.items) == len(LAYOUTS["model_letter.eml"]) + 1 and parsed.balanced()


def materialize_items(workspace, day: str):
    """raw_items alone, as the day's run makes it first: its figures, its checks and the warnings it logged."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw_items], partition_key=day, resources=workspace.resources(), instance=instance)
    assert result.success
    metadata = next(m.metadata for m in result.asset_materializations_for_node("raw_items"))
    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    warnings = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.level == logging.WARNING]
    return {k: v.value for k, v in metadata.items()}, checks, warnings


def test_the_layouts_through_the_runs_of_their_days(workspace):
    """The user's path: the e-mails land, each day's raw_items is materialized, the stored items are read back."""
    for path in EMAILS.glob("*.eml"):
        (workspace.landing / path.name).write_bytes(path.read_bytes())
    by_day = {"2026-11-18": [], "2026-11-16": []}
    for name, stories in {**LAYOUTS, **TITLED_POST}.items():
        day = parse.published_utc(message(name)["Date"]).strftime("%Y-%m-%d")
        by_day[day] += [story.headline for story in stories]
    by_day["2026-11-18"].append("Coastal towns evacuate as the season’s strongest storm nears")
    for day, headlines in by_day.items():
        figures, checks, warnings = materialize_items(workspace, day)
        assert sorted(workspace.store.read("raw_items", day)["headline"]) == sorted(headlines)
        assert figures["records"] == figures["items"] + figures["duplicates"] + figures["quarantined"]
        assert (figures["items"], figures["duplicates"], figures["quarantined"]) == (len(headlines), 0, 0)
        assert checks["records_balance"]
        # Every file is read in every run: the ambiguous e-mail is named each time, and nothing else is said.
        assert warnings == [f"{workspace.landing / AMBIGUOUS}: {WARNING}"]
