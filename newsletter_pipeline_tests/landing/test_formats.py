"""JSON arrays, RSS/Atom feeds and email newsletters (.eml, .mbox), read through the whole landing -> parse path."""

import pandas as pd

from newsletter_pipeline.items import parse
from newsletter_pipeline.landing.listing import local_files
from newsletter_pipeline.landing.mail import clean_link

# A Mailchimp-style newsletter: table layout, a hidden preheader, click-tracked links, a sponsor block,
# share buttons, social icons and the usual footer. Four items; everything else must stay out.
NEWSLETTER_EML = """\
From: Morning Signal <hello@morningsignal.test>
To: reader@example.test
Subject: Morning Signal: rates, rockets and rivers
Date: Tue, 05 Mar 2024 21:30:00 -0500
Message-ID: <issue-412@morningsignal.test>
List-Unsubscribe: <https://morningsignal.test/list/u?id=9f2c>, <mailto:leave@morningsignal.test>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="==sig412=="

--==sig412==
Content-Type: text/plain; charset=utf-8

The plain-text copy: it must not be read when an HTML part exists.

A story only the text part has, to prove it
https://morningsignal.test/text-only-story

--==sig412==
Content-Type: text/html; charset=utf-8

<html><head><style>.h{font-size:20px}</style></head>
<body>
<div style="display:none">Rates, rockets and rivers: your Wednesday briefing</div>
<table width="100%"><tr><td align="right">
  <a href="https://us5.campaign-archive.test/?u=abc&id=412">View this email in your browser</a>
</td></tr></table>
<table width="600" class="main">
  <tr><td><a href="https://morningsignal.test/?utm_source=logo"><img src="https://cdn.test/logo.png" alt="Morning Signal"></a></td></tr>
  <tr><td class="item">
    <h2><a href="https://click.morningsignal.test/track?url=https%3A%2F%2Fwww.reuters.test%2Fmarkets%2Fcentral-bank-holds-rates%3Futm_source%3Dnewsletter%26utm_medium%3Demail%26id%3D77&amp;uid=5521">Central bank holds rates steady for a third month</a></h2>
    <p>Policymakers signalled that cuts could come &ldquo;later this year&rdquo; as inflation cools.</p>
    <p><a href="https://click.morningsignal.test/track?url=https%3A%2F%2Fwww.reuters.test%2Fmarkets%2Fcentral-bank-holds-rates">Read more &rarr;</a>
       <a href="https://twitter.com/intent/tweet?url=https%3A%2F%2Freuters.test%2Fx">Share on X</a></p>
  </td></tr>
  <tr><td class="item">
    <h2><a href="https://links.morningsignal.test/CL0/https:%2F%2Fspace.example.org%2Fnews%2Fbooster-landing%3Futm_campaign=mar5%26ref=ms/1/0100018e/AbC=">Reusable booster lands on a floating platform at night</a></h2>
    <p>It was the first night landing for the company&rsquo;s heavy rocket.</p>
  </td></tr>
  <tr><td class="label">SPONSORED</td></tr>
  <tr><td class="item">
    <h2><a href="https://ads.acme.test/click?utm_source=morningsignal">Cut your cloud bill in half with Acme</a></h2>
    <p>Teams save thousands every month. Try it free for 30 days.</p>
  </td></tr>
  <tr><td class="item">
    <p><a href="https://www.riverwatch.test/reports/2024/spring-floods?utm_source=ms&amp;mc_cid=8a1&amp;mc_eid=77f&amp;page=2">River levels rise ahead of spring floods</a> &mdash; Forecasters expect the crest on Friday, two days earlier than usual.</p>
  </td></tr>
  <tr><td class="item">
    <h3><a href="https://go.morningsignal.test/r/https://www.citydesk.test/transit/night-buses?utm_medium=email&amp;fbclid=IwAR0">City council approves round-the-clock bus service</a></h3>
    <table><tr><td>Night routes start in June on six lines.</td></tr></table>
  </td></tr>
  <tr><td class="footer">
    <a href="https://twitter.com/morningsignal"><img src="https://cdn.test/x.png" alt="X"></a>
    <a href="https://www.linkedin.com/company/morningsignal">LinkedIn</a>
    <a href="https://www.instagram.com/morningsignal">Follow us on Instagram today</a>
    <a href="https://www.youtube.com/@morningsignal/videos">Watch our weekly video recap</a>
    <p>You are receiving this because you signed up at morningsignal.test.</p>
    <p><a href="https://morningsignal.test/list/u?id=9f2c">Leave this list for good</a> |
       <a href="https://morningsignal.test/preferences?id=9f2c">Update your email preferences here</a> |
       <a href="https://morningsignal.test/privacy">Privacy Policy</a> |
       <a href="https://morningsignal.test/terms">Terms of Service</a> |
       <a href="mailto:editors@morningsignal.test">Write to the editors any time</a> |
       <a href="https://morningsignal.test/forward?id=9f2c">Forward this email to a friend</a></p>
  </td></tr>
</table>
</body></html>

--==sig412==--
"""

# Plain text only: 'headline / URL line', 'Headline (URL)', 'Headline: URL', a sponsor and a footer.
TEXT_ONLY_EML = """\
From: digest@devdigest.test
Subject: Dev Digest #88
Date: Mon, 04 Mar 2024 08:00:00 +0000
Message-ID: <dd-88@devdigest.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Dev Digest #88 - your weekly roundup of tools

1. Python 3.13 ships a new interactive shell
https://mail.devdigest.test/c?u=https%3A%2F%2Fdocs.python.test%2Fwhatsnew%2F3.13%3Futm_source%3Ddigest
The REPL gains colour, multi-line editing and a paste mode.

2. Rust compiler gets faster incremental builds (https://blog.rust.test/faster-builds?utm_medium=email)
Incremental compilation is now up to 30% faster on large crates.

SPONSORED
Ship faster with Acme CI pipelines today
https://acme.test/ci?utm_source=devdigest

3. SQLite adds native vector search support: https://sqlite.test/news/vectors
Embeddings can now be queried without loading an extension.

--
Unsubscribe: https://devdigest.test/unsubscribe?id=123
Follow us on Twitter: https://twitter.com/devdigest
"""

# HTML only (no text alternative), a flat Substack-like layout, and a tracker around a Google redirect.
HTML_ONLY_EML = """\
From: =?utf-8?q?Caf=C3=A9_Notes?= <notes@cafe.test>
Subject: Weekend reading
Date: Sat, 09 Mar 2024 10:15:00 +0100
Message-ID: <weekend-19@cafe.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<html><body><div class="post">
<h1>Weekend reading</h1>
<h3><a href="https://t.cafe.test/click?redirect=https%3A%2F%2Fwww.google.com%2Furl%3Fq%3Dhttps%253A%252F%252Fcoffee.example.net%252Fstories%252Fcold-brew%253Futm_source%253Dcafe%26sa%3DD">Why cold brew tastes sweeter than hot coffee</a></h3>
<p>Lower temperatures pull fewer bitter compounds from the beans.</p>
<h3><a href="https://beans.example.net/harvest-report?gclid=abc123">Café owners brace for a smaller bean harvest</a></h3>
<p>Drought in two growing regions cut yields by a fifth.</p>
<p><a href="https://cafe.test/account/unsubscribe">Unsubscribe</a></p>
</div></body></html>
"""

# A greeting and a footer: no item at all.
NO_ITEMS_EML = """\
From: Team Update <team@company.test>
Subject: Office closed on Friday
Date: Thu, 07 Mar 2024 12:00:00 +0000
Message-ID: <closed-friday@company.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body>
<p>Hi all, the office is closed on Friday for maintenance.</p>
<p><a href="https://company.test/preferences">Manage your email preferences</a> &middot;
   <a href="https://company.test/unsubscribe">Unsubscribe</a></p>
</body></html>
"""

# Three messages: an HTML newsletter, an export cut off in the middle (no headers), a text newsletter.
MAILBOX = """\
From hello@morningsignal.test Wed Mar  6 07:00:00 2024
From: Morning Signal <hello@morningsignal.test>
Subject: Morning Signal: markets
Date: Wed, 06 Mar 2024 07:00:00 +0000
Message-ID: <issue-413@morningsignal.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><table>
<tr><td><h2><a href="https://www.reuters.test/markets/stocks-close-higher?utm_source=ms">Stocks close higher after jobs report</a></h2>
<p>Payrolls beat forecasts for a fourth month.</p></td></tr>
<tr><td><h2><a href="https://www.reuters.test/markets/oil-slips?utm_source=ms">Oil slips as inventories build up</a></h2>
<p>Crude stocks rose by 4 million barrels.</p></td></tr>
<tr><td><a href="https://morningsignal.test/unsubscribe">Unsubscribe</a></td></tr>
</table></body></html>

From MAILER-DAEMON Wed Mar  6 07:05:00 2024
<<< export interrupted: message body lost >>>

From digest@devdigest.test Wed Mar  6 08:00:00 2024
From: Dev Digest <digest@devdigest.test>
Subject: Dev Digest #89
Date: Wed, 06 Mar 2024 08:00:00 +0000
Message-ID: <dd-89@devdigest.test>
Content-Type: text/plain; charset=utf-8

>From the editor: a short issue this week.

Linux kernel 6.8 released with new drivers
https://kernel.test/releases/6.8?utm_source=devdigest
"""

RSS = """\
<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>The Daily Planet</title>
    <link>https://dailyplanet.test/</link>
    <description>News from Metropolis</description>
    <item>
      <title>Metropolis opens its first floating park</title>
      <link>https://dailyplanet.test/city/floating-park?utm_source=rss&amp;utm_medium=feed</link>
      <description>&lt;p&gt;The park sits on &lt;b&gt;recycled&lt;/b&gt; pontoons.&lt;/p&gt;&lt;p&gt;It opens Monday.&lt;/p&gt;</description>
      <pubDate>Sun, 10 Mar 2024 23:30:00 -0300</pubDate>
      <guid isPermaLink="false">dp-20240310-001</guid>
      <dc:creator>Lois Lane</dc:creator>
      <category>City</category>
    </item>
    <item>
      <description>An entry that lost its title.</description>
      <pubDate>Mon, 11 Mar 2024 08:00:00 GMT</pubDate>
      <guid>dp-20240311-002</guid>
    </item>
    <item>
      <title>Subway line 4 reopens after repairs</title>
      <link>https://dailyplanet.test/city/line-4</link>
      <description>Service resumes on Tuesday.</description>
      <pubDate>Mon, 11 Mar 2024 09:45:00 GMT</pubDate>
      <guid>https://dailyplanet.test/city/line-4</guid>
    </item>
  </channel>
</rss>
"""

ATOM = """\
<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Example Engineering Blog</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2024-03-12T18:30:02Z</updated>
  <entry>
    <title>How we cut build times by 40 percent</title>
    <link rel="alternate" href="https://eng.example.test/posts/build-times"/>
    <id>tag:eng.example.test,2024:build-times</id>
    <published>2024-03-12T09:00:00+02:00</published>
    <updated>2024-03-12T18:30:02Z</updated>
    <author><name>Ada Byron</name></author>
    <author><name>Grace Hopper</name></author>
    <summary type="html">&lt;p&gt;Caching &lt;em&gt;everything&lt;/em&gt;, carefully.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Postmortem of the March 4 outage</title>
    <link href="https://eng.example.test/posts/outage"/>
    <id>tag:eng.example.test,2024:outage</id>
    <updated>2024-03-05T01:15:00Z</updated>
    <summary>A certificate expired at midnight.</summary>
  </entry>
</feed>
"""

JSON_ARRAY = """\
[
  {"headline": "Wind power overtakes gas in the grid", "link": "https://energy.test/wind", "date": "2024-03-01T10:00:00Z",
   "source": "Energy Weekly", "short_description": "A first for the winter months."},
  {"title": "Solar panels get cheaper again", "url": "https://energy.test/solar", "published": "2024-03-01", "source": "Energy Weekly"},
  "a stray string",
  {"headline": "", "link": "https://energy.test/empty", "date": "2024-03-01"}
]
"""


def parse_folder(tmp_path, files: dict[str, str | bytes]) -> parse.Parsed:
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return parse.parse_landing(local_files(tmp_path))


def positions(frame: pd.DataFrame) -> list[int]:
    return [int(origin.rsplit(":", 1)[1]) for origin in frame["origin"]]


def test_html_newsletter_gives_its_four_items_and_nothing_else(tmp_path):
    parsed = parse_folder(tmp_path, {"morning_signal.eml": NEWSLETTER_EML})
    items = parsed.items
    assert items["headline"].tolist() == [
        "Central bank holds rates steady for a third month",
        "Reusable booster lands on a floating platform at night",
        "River levels rise ahead of spring floods",
        "City council approves round-the-clock bus service",
    ]
    # Redirects unwrapped (query parameter, encoded path, written-out path); utm_*, mc_* and fbclid dropped.
    assert items["link"].tolist() == [
        "https://www.reuters.test/markets/central-bank-holds-rates?id=77",
        "https://space.example.org/news/booster-landing?ref=ms",
        "https://www.riverwatch.test/reports/2024/spring-floods?page=2",
        "https://www.citydesk.test/transit/night-buses",
    ]
    assert items["short_description"].tolist() == [
        "Policymakers signalled that cuts could come “later this year” as inflation cools.",
        "It was the first night landing for the company’s heavy rocket.",
        "Forecasters expect the crest on Friday, two days earlier than usual.",
        "Night routes start in June on six lines.",
    ]
    assert set(items["source"]) == {"Morning Signal"}
    # 21:30 at UTC-5 is 02:30 the next day in UTC: the items belong to 2024-03-06.
    assert set(items["published_at"]) == {pd.Timestamp("2024-03-06T02:30:00Z")} and set(items["day"]) == {"2024-03-06"}
    assert items["source_id"].tolist() == [f"issue-412@morningsignal.test#{n}" for n in (1, 2, 3, 4)]
    assert positions(items) == [1, 2, 3, 4]
    assert parsed.rejects.empty and parsed.balanced()


def test_text_only_newsletter(tmp_path):
    parsed = parse_folder(tmp_path, {"dev_digest.eml": TEXT_ONLY_EML})
    items = parsed.items
    assert items[["headline", "link", "short_description"]].values.tolist() == [
        [
            "Python 3.13 ships a new interactive shell",
            "https://docs.python.test/whatsnew/3.13",
            "The REPL gains colour, multi-line editing and a paste mode.",
        ],
        [
            "Rust compiler gets faster incremental builds",
            "https://blog.rust.test/faster-builds",
            "Incremental compilation is now up to 30% faster on large crates.",
        ],
        [
            "SQLite adds native vector search support",
            "https://sqlite.test/news/vectors",
            "Embeddings can now be queried without loading an extension.",
        ],
    ]
    assert set(items["source"]) == {"digest@devdigest.test"}  # no display name: the address
    assert set(items["day"]) == {"2024-03-04"} and parsed.rejects.empty


def test_html_only_newsletter(tmp_path):
    items = parse_folder(tmp_path, {"weekend.eml": HTML_ONLY_EML}).items
    assert items[["headline", "link", "short_description"]].values.tolist() == [
        [
            "Why cold brew tastes sweeter than hot coffee",
            "https://coffee.example.net/stories/cold-brew",
            "Lower temperatures pull fewer bitter compounds from the beans.",
        ],
        [
            "Café owners brace for a smaller bean harvest",
            "https://beans.example.net/harvest-report",
            "Drought in two growing regions cut yields by a fifth.",
        ],
    ]
    assert set(items["source"]) == {"Café Notes"}  # an RFC 2047 encoded display name
    assert set(items["published_at"]) == {pd.Timestamp("2024-03-09T09:15:00Z")}


def test_an_email_without_items_is_quarantined_not_dropped(tmp_path):
    parsed = parse_folder(tmp_path, {"office.eml": NO_ITEMS_EML})
    assert parsed.items.empty
    assert parsed.rejects[["file", "position", "reason"]].values.tolist() == [
        [str(tmp_path / "office.eml"), 0, "email holds no items"]
    ]
    assert parsed.balanced()


def test_mailbox_positions_are_message_based_and_a_broken_message_spoils_only_itself(tmp_path):
    parsed = parse_folder(tmp_path, {"inbox.mbox": MAILBOX})
    items = parsed.items
    assert items[["headline", "link", "source"]].values.tolist() == [
        [
            "Stocks close higher after jobs report",
            "https://www.reuters.test/markets/stocks-close-higher",
            "Morning Signal",
        ],
        ["Oil slips as inventories build up", "https://www.reuters.test/markets/oil-slips", "Morning Signal"],
        ["Linux kernel 6.8 released with new drivers", "https://kernel.test/releases/6.8", "Dev Digest"],
    ]
    assert positions(items) == [100001, 100002, 300001]
    assert items["source_id"].tolist() == [
        "issue-413@morningsignal.test#1",
        "issue-413@morningsignal.test#2",
        "dd-89@devdigest.test#1",
    ]
    assert items["short_description"].tolist()[:2] == [
        "Payrolls beat forecasts for a fourth month.",
        "Crude stocks rose by 4 million barrels.",
    ]
    assert parsed.rejects[["position", "reason"]].values.tolist() == [
        [200000, "not an email: it has no header lines (From:, Date:, Subject: ...)"]
    ]
    assert parsed.balanced() and parsed.records == 4


def test_a_file_that_is_not_a_mailbox_is_unreadable(tmp_path):
    rejects = parse_folder(tmp_path, {"inbox.mbox": NO_ITEMS_EML}).rejects
    assert rejects[["position", "reason"]].values.tolist() == [
        [
            0,
            "unreadable file: not an mbox mailbox: it must start with a 'From ' separator line (deliver a single email as .eml)",
        ]
    ]


def test_rss_feed(tmp_path):
    parsed = parse_folder(tmp_path, {"planet.rss": RSS})
    items = parsed.items
    assert items[
        ["headline", "link", "short_description", "source", "source_id", "authors", "category"]
    ].values.tolist() == [
        [
            "Metropolis opens its first floating park",
            "https://dailyplanet.test/city/floating-park",
            "The park sits on recycled pontoons. It opens Monday.",
            "The Daily Planet",
            "dp-20240310-001",
            "Lois Lane",
            "City",
        ],
        [
            "Subway line 4 reopens after repairs",
            "https://dailyplanet.test/city/line-4",
            "Service resumes on Tuesday.",
            "The Daily Planet",
            "https://dailyplanet.test/city/line-4",
            "",
            "",
        ],
    ]
    # 23:30 at UTC-3 is 02:30 the next day in UTC.
    assert items["published_at"].tolist() == [
        pd.Timestamp("2024-03-11T02:30:00Z"),
        pd.Timestamp("2024-03-11T09:45:00Z"),
    ]
    assert positions(items) == [1, 3]
    assert parsed.rejects[["position", "reason"]].values.tolist() == [[2, "feed entry has no title"]]


def test_atom_feed(tmp_path):
    items = parse_folder(tmp_path, {"eng_blog.atom": ATOM}).items
    assert items[["headline", "link", "short_description", "source", "source_id", "authors"]].values.tolist() == [
        [
            "Postmortem of the March 4 outage",
            "https://eng.example.test/posts/outage",
            "A certificate expired at midnight.",
            "Example Engineering Blog",
            "tag:eng.example.test,2024:outage",
            "",
        ],
        [
            "How we cut build times by 40 percent",
            "https://eng.example.test/posts/build-times",
            "Caching everything, carefully.",
            "Example Engineering Blog",
            "tag:eng.example.test,2024:build-times",
            "Ada Byron, Grace Hopper",
        ],
    ]
    # published when there is one (09:00 at UTC+2), else updated.
    assert items["published_at"].tolist() == [
        pd.Timestamp("2024-03-05T01:15:00Z"),
        pd.Timestamp("2024-03-12T07:00:00Z"),
    ]


def test_xml_that_is_not_a_feed_is_unreadable(tmp_path):
    rejects = parse_folder(
        tmp_path, {"sitemap.xml": "<urlset><url><loc>https://x.test/</loc></url></urlset>", "cut.rss": RSS[:120]}
    ).rejects
    assert rejects["position"].tolist() == [0, 0]
    assert all(reason.startswith("unreadable file: not an RSS or Atom feed") for reason in rejects["reason"])


def test_json_array(tmp_path):
    parsed = parse_folder(tmp_path, {"energy.json": JSON_ARRAY})
    assert parsed.items[["headline", "link", "source", "day"]].values.tolist() == [
        ["Solar panels get cheaper again", "https://energy.test/solar", "Energy Weekly", "2024-03-01"],
        ["Wind power overtakes gas in the grid", "https://energy.test/wind", "Energy Weekly", "2024-03-01"],
    ]
    assert sorted(positions(parsed.items)) == [1, 2]
    assert parsed.rejects[["position", "reason"]].values.tolist() == [
        [3, "expected an object with named fields, got str"],
        [4, "missing headline (looked for: headline, title)"],
    ]


def test_json_that_is_not_an_array_is_unreadable(tmp_path):
    rejects = parse_folder(
        tmp_path,
        {
            "object.json": '{"items": [{"headline": "Wrapped in an object", "date": "2024-03-01"}]}',
            "truncated.json": '[{"headline": "Cut off',
        },
    ).rejects
    assert rejects[["position", "reason"]].values.tolist() == [
        [
            0,
            "unreadable file: expected a top-level JSON array of records, got an object: wrap the records in [ ... ] or deliver them as .jsonl",
        ],
        [
            0,
            "unreadable file: malformed JSON at line 1 column 15: Unterminated string starting at; "
            "fix the syntax, or deliver one record a line as JSON Lines (.jsonl)",
        ],
    ]


def test_click_tracking_is_unwrapped_and_trackers_dropped():
    assert (
        clean_link("https://t.test/c?u=https%253A%252F%252Fa.test%252Fx%253Futm_source%253Dy%2526k%253D1")
        == "https://a.test/x?k=1"
    )
    assert (
        clean_link("https://A.TEST/x?utm_source=n&_hsenc=1&gclid=2&keep=yes#utm_medium=mail")
        == "https://a.test/x?keep=yes"
    )
    assert clean_link("https://a.test/x?q=plain+search") == "https://a.test/x?q=plain+search"  # q= that is no URL stays
    assert clean_link("mailto:someone@a.test") is None and clean_link("#top") is None
