"""Issue 12, fault 10: newsletters come in four layouts, and every story section of each is one item.

The e-mails in `emails/` are written for these tests at a realistic size (45 to 80 links each: click-tracking
redirects, inline links in paragraphs, an intro letter, a web-version link, sponsor and job sections, footers).
`emails/expected.json` lists each one's story sections: headline, the article's link, the start of its summary.
"""

import json
import logging
import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import dagster as dg
import pytest

from newsletter_pipeline.defs.assets import raw_items
from newsletter_pipeline.stages import parse
from newsletter_pipeline.stages.mail import message_items

EMAILS = Path(__file__).with_name("emails")
EXPECTED = json.loads((EMAILS / "expected.json").read_text(encoding="utf-8"))
DAY = "2026-11-16"


def read(name: str) -> parse.Parsed:
    path = EMAILS / name
    return parse.parse_file(parse.LandingFile(str(path), path.read_bytes))


def all_links(name: str) -> int:
    """The e-mail's web links (HTML links and bare URLs), counted on its raw text: what the reader had to choose from."""
    return len(re.findall(r'href="https?://|(?<!")\bhttps?://', (EMAILS / name).read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_story_section_is_one_item_and_nothing_else_is(name):
    parsed = read(name)
    assert 40 <= all_links(name) <= 90, "a realistic e-mail: tens of links to choose from"
    got = parsed.items[["headline", "link", "short_description"]].values.tolist()
    want = EXPECTED[name]
    # Exactly the story sections, in order: no inline link, paper, sponsor, job ad, greeting or footer became an item.
    assert [(headline, link) for headline, link, _ in got] == [(s["headline"], s["link"]) for s in want]
    for (_, _, summary), section in zip(got, want, strict=True):
        assert summary.startswith(section["summary"]), (summary, section["summary"])
        assert " ." not in summary and "( " not in summary  # inline links read as part of the sentence
    assert parsed.rejects.empty and parsed.balanced() and not parsed.warnings


def test_the_heading_layout_takes_the_heading_link_else_read_more_else_the_first_article_link():
    items = read("heading_per_story.eml").items.set_index("headline")["link"]
    assert items["Hospitals struggle to hire the data scientists their AI projects need"] == "https://www.healthwire.test/2026/11/ai-hiring-gap"
    # A heading without a link, with a "Read more" button under its paragraphs.
    assert items["Chip makers race to ship low-power accelerators for laptops"] == "https://www.chipreport.test/news/laptop-npu-race"
    # Neither: the section's first article link.
    assert items["Why a city replaced its chatbot with a phone line again"] == "https://council.city.test/minutes/2026-11-04"
    # The inline link of the fault report is no item.
    assert "many hospitals just can't find enough skilled AI talent" not in items.index


def test_an_email_that_gives_far_fewer_items_than_sections_is_named_in_a_warning(tmp_path):
    stories = "".join(f"<h2>Council votes on the harbour plan, part {n}</h2><p>The vote was close and the debate long.</p>" for n in range(4))
    path = tmp_path / "odd_layout.eml"
    path.write_text("From: Harbour Post <post@harbour.test>\nSubject: Today\nDate: Mon, 16 Nov 2026 07:00:00 +0000\nMessage-ID: <h1@harbour.test>\n"
                    f"MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><body>{stories}"
                    '<p><a href="https://harbour.test/unsubscribe">Unsubscribe</a></p></body></html>\n')
    parsed = parse.parse_file(parse.LandingFile(str(path), path.read_bytes))
    assert parsed.warnings == (f"{path}: e-mail gave 0 items from 4 story sections: check that its layout is read (README, Inputs)",)
    assert parsed.rejects["reason"].tolist() == ["email holds no items"] and parsed.balanced()


def test_message_items_counts_the_sections_it_saw():
    message = BytesParser(policy=policy.default).parsebytes((EMAILS / "heading_per_story.eml").read_bytes())
    items, sections = message_items(message)
    # The title, six stories, the sponsor's and three job headings: eleven sections, six items.
    assert len(items) == 6 and sections == 11


def test_the_four_layouts_through_a_run_of_the_day(workspace):
    for name in EXPECTED:
        (workspace.landing / name).write_bytes((EMAILS / name).read_bytes())
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw_items], partition_key=DAY, resources=workspace.resources(), instance=instance)
    assert result.success
    stored = workspace.store.read("raw_items", DAY)
    assert sorted(stored["headline"]) == sorted(s["headline"] for sections in EXPECTED.values() for s in sections)
    metadata = {k: v.value for k, v in next(m.metadata for m in result.asset_materializations_for_node("raw_items")).items()}
    assert metadata["records"] == metadata["items"] + metadata["duplicates"] + metadata["quarantined"] == 27
    assert not [e for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
