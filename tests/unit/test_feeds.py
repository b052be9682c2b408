"""Feeds without a network: feed lists, parsing fixtures, HTML to text, the schedule, the fetcher on MockTransport."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from pipelines import __version__
from pipelines.model import stable_id
from pipelines.sources.feeds import (
    DEFAULT_MAX_BACKOFF,
    MAX_RETRY_AFTER,
    USER_AGENT,
    FeedConfig,
    FeedFetcher,
    FeedListError,
    FeedState,
    FeedUrlError,
    FetchResult,
    cache_max_age,
    check_feed_url,
    html_to_text,
    next_poll,
    parse_feed,
    parse_feed_list,
    parse_retry_after,
    read_feed_list,
)
from pipelines.sources.poller import SeenIds
from tests.feed_server import fixture, rss_feed

NOW = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)
FEED = FeedConfig(url="https://feeds.example.com/news.xml")


def ok(body: bytes, content_type: str = "application/rss+xml", **headers: str) -> FetchResult:
    return FetchResult(
        feed_url=FEED.url,
        final_url=FEED.url,
        outcome="ok",
        http_status=200,
        body=body,
        headers={"content-type": content_type, **headers},
        fetched_at=NOW,
    )


def parse(name: str, content_type: str = "application/rss+xml", **headers: str):
    return parse_feed(ok(fixture(name), content_type, **headers), FEED)


# --- feed configuration and lists -----------------------------------------------------------------


def test_feed_config_derives_a_short_stable_id_from_the_normalised_url():
    a = FeedConfig(url="HTTPS://Feeds.Example.COM/news.xml#top")
    b = FeedConfig(url="https://feeds.example.com/news.xml")
    assert a.url == "https://feeds.example.com/news.xml"
    assert a.id == b.id and len(a.id) == 12
    assert FeedConfig(url="https://feeds.example.com/news.xml", id="bbc-world").id == "bbc-world"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("ftp://example.com/feed.xml", "only http:// and https://"),
        ("feeds.example.com/rss", "without a scheme"),
        ("http:///no-host", "no host"),
        ("https://user:secret@example.com/feed", "credentials"),
        ("https://example.com:99999/feed", "not a URL"),
    ],
)
def test_feed_config_refuses_non_http_urls_with_a_clear_error(url, message):
    with pytest.raises(ValidationError, match=message):
        FeedConfig(url=url)
    with pytest.raises(FeedUrlError, match=message):
        check_feed_url(url)


def test_feed_config_refuses_ids_unfit_for_metrics_labels():
    with pytest.raises(ValidationError, match="feed id"):
        FeedConfig(url="https://example.com/feed", id="has space")


def test_plain_feed_list_skips_comments_and_blanks_and_dedupes(tmp_path):
    path = tmp_path / "feeds.txt"
    path.write_text(
        "# world news\n"
        "\n"
        "https://feeds.example.com/world.xml   world   # inline comment\n"
        "https://feeds.example.com/tech.xml\n"
        "  https://FEEDS.example.com/world.xml\n"  # same feed, other spelling
        "https://feeds.example.com/tech.xml#frag\n",
        encoding="utf-8",
    )
    feeds = read_feed_list(path)
    assert [(f.url, f.id) for f in feeds] == [
        ("https://feeds.example.com/world.xml", "world"),
        ("https://feeds.example.com/tech.xml", FeedConfig(url="https://feeds.example.com/tech.xml").id),
    ]


def test_plain_feed_list_error_names_the_line(tmp_path):
    path = tmp_path / "feeds.txt"
    path.write_text("https://ok.example.com/rss\n# comment\nfile:///etc/passwd\n", encoding="utf-8")
    with pytest.raises(FeedListError, match=r"feeds\.txt:3: only http:// and https://"):
        read_feed_list(path)


def test_feed_list_rejects_one_id_for_two_urls_and_empty_lists():
    with pytest.raises(FeedListError, match=r"<feed list>:2: feed id 'x' is already used by .*line 1"):
        parse_feed_list("https://a.example.com/rss x\nhttps://b.example.com/rss x\n")
    with pytest.raises(FeedListError, match="no feed URLs"):
        parse_feed_list("# nothing here\n\n")
    with pytest.raises(FeedListError, match=r":1: expected 'URL \[id\]'"):
        parse_feed_list("https://a.example.com/rss id extra\n")


OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="News">
      <outline type="rss" text="World" xmlUrl="https://feeds.example.com/world.xml" htmlUrl="https://example.com"/>
      <outline type="rss" text="Tech" xmlUrl="https://feeds.example.com/tech.xml"/>
    </outline>
    <outline text="A folder without feeds"/>
    <outline type="rss" text="World again" xmlUrl="https://feeds.example.com/world.xml"/>
  </body>
</opml>
"""


def test_opml_feed_list_takes_every_outline_with_xml_url(tmp_path):
    path = tmp_path / "subscriptions.opml.txt"  # detected by content, not by name
    path.write_bytes(OPML)
    assert [f.url for f in read_feed_list(path)] == [
        "https://feeds.example.com/world.xml",
        "https://feeds.example.com/tech.xml",
    ]


def test_opml_errors_name_the_line():
    bad_url = OPML.replace(b"https://feeds.example.com/tech.xml", b"file:///etc/hosts")
    with pytest.raises(FeedListError, match=r"subs\.opml:7: only http"):
        parse_feed_list(bad_url, source="subs.opml")
    with pytest.raises(FeedListError, match=r"subs\.opml:4: not well-formed OPML"):
        parse_feed_list(b"<opml>\n<body>\n<outline xmlUrl='https://a.example.com/'>\n</body>\n", source="subs.opml")
    with pytest.raises(FeedListError, match="must be OPML, found a <rss>"):
        parse_feed_list(fixture("rss2.xml"))


# --- parsing --------------------------------------------------------------------------------------


def test_rss2_entries_become_plain_text_items_with_utc_dates():
    parsed = parse("rss2.xml")
    assert parsed.outcome == "ok" and parsed.version == "rss20" and not parsed.bozo
    assert parsed.title == "Example World News"
    first, second, third = parsed.items
    assert first.title == "Ministers agree new data-protection rules"
    assert first.url == "https://news.example.com/2024/10/17/data-rules"
    assert first.guid == "example-2024-10-17-0001"
    assert first.id == stable_id("rss-guid", "example-2024-10-17-0001")
    assert first.published == datetime(2024, 10, 17, 13, 16, tzinfo=UTC)  # +0100 → UTC
    assert first.ingested == first.published and not first.date_estimated
    assert first.source == FEED.url and first.source_kind == "rss"
    # content:encoded is fuller than description; tags, style and script are gone, entities decoded.
    assert first.body == (
        "The watchdog said the rules would apply from January.\n\n"
        "Critics & campaigners were not convinced – yet.\n\n"
        "More\nlines"
    )
    assert second.id == stable_id("rss-link", "https://news.example.com/2024/10/17/markets")
    assert second.body == "Stocks rose & bonds fell."  # double-escaped entity decoded once per layer
    # No guid, no link, no date: id from feed + title, event time is the fetch time, flagged as estimated.
    assert third.id == stable_id("rss-title", FEED.url, "Undated briefing", "")
    assert third.url is None and third.published is None
    assert third.ingested == NOW and third.date_estimated


def test_atom_entries_parse_with_html_titles_xhtml_content_and_relative_links():
    parsed = parse("atom.xml", "application/atom+xml")
    assert parsed.version == "atom10"
    strike, updated = parsed.items
    assert strike.title == "Port strike enters third day"
    assert strike.body == "Dock workers walked out again.\n\nTalks resume on Monday."
    assert strike.published == datetime(2024, 10, 18, 5, 30, tzinfo=UTC)  # published wins over updated
    assert strike.guid == "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert updated.published == datetime(2024, 10, 17, 23, 59, 59, tzinfo=UTC)  # falls back to updated
    assert updated.url == "https://feeds.example.com/relative/only-updated"  # resolved against the feed URL
    assert updated.body == "Plain text summary."


def test_rss1_rdf_entries_parse():
    parsed = parse("rss1.rdf", "application/rdf+xml")
    assert parsed.version == "rss10"
    assert [(i.title, i.url, i.published) for i in parsed.items] == [
        ("Flood warnings issued for the north", "https://rdf.example.net/a/1", datetime(2024, 10, 16, 22, tzinfo=UTC)),
        ("Rail services restored", "https://rdf.example.net/a/2", datetime(2024, 10, 16, 20, 30, tzinfo=UTC)),
    ]
    assert parsed.items[0].body == "Heavy rain is expected overnight."


@pytest.mark.parametrize("content_type", ["application/rss+xml", "text/xml; charset=iso-8859-1", "text/xml"])
def test_iso_8859_1_feed_decodes(content_type):
    (item,) = parse("latin1.xml", content_type).items
    assert item.title == "Hausse des prix à Paris : café, crème brûlée et pâtés"
    assert item.body == "Les Français paient 5 £ de plus ; señor Müller est ravi."
    assert item.guid == "journal-1"  # a relative guid is an opaque string, not rewritten into a URL


def test_utf16_feed_with_bom_decodes():
    parsed = parse("utf16.xml")
    assert parsed.title == "Мировые новости"
    (item,) = parsed.items
    assert item.title == "Переговоры в Женеве — 東京 update"
    assert item.body == "Делегации встретились «снова»."


def test_ill_formed_feed_keeps_its_recoverable_entries():
    parsed = parse("illformed.xml")
    assert parsed.outcome == "ok" and parsed.bozo
    assert "not well-formed" in parsed.error
    assert [i.guid for i in parsed.items] == ["sloppy-1", "sloppy-2"]
    assert parsed.items[0].title == "Council & residents clash over parking"


def test_html_page_is_not_a_feed():
    parsed = parse("forbidden.html", "text/html")
    assert parsed.outcome == "parse_error" and parsed.items == []
    assert parsed.error


@pytest.mark.parametrize("body", [b"", b"  \n\t "])
def test_empty_body_is_a_parse_error(body):
    parsed = parse_feed(ok(body), FEED)
    assert parsed.outcome == "parse_error" and parsed.error == "empty body"


def test_garbage_is_a_parse_error_naming_the_bozo_exception():
    parsed = parse_feed(ok(b"<rss><channel><title>oops</chan"), FEED)
    assert parsed.outcome == "parse_error" and "not a well-formed feed" in parsed.error


def test_valid_but_empty_feed_is_ok_with_no_items():
    parsed = parse_feed(ok(rss_feed([])), FEED)
    assert parsed.outcome == "ok" and parsed.items == []


def test_parse_feed_refuses_a_failed_fetch():
    failed = ok(b"").model_copy(update={"outcome": "http_error", "body": None})
    with pytest.raises(ValueError, match="ok fetch"):
        parse_feed(failed, FEED)


def test_ttl_and_max_age_give_the_minimum_interval():
    parsed = parse("rss2.xml", **{"cache-control": "public, max-age=600"})
    assert (parsed.ttl_seconds, parsed.max_age_seconds, parsed.min_interval_seconds) == (1800, 600, 1800)
    parsed = parse("rss2.xml", **{"cache-control": "max-age=7200"})
    assert parsed.min_interval_seconds == 7200
    assert parse("atom.xml").min_interval_seconds == 0


def test_entries_with_nothing_in_them_are_skipped_and_counted():
    body = b"<rss version='2.0'><channel><title>t</title><item></item><item><title>x</title></item></channel></rss>"
    parsed = parse_feed(ok(body), FEED)
    assert parsed.skipped_entries == 1 and [i.title for i in parsed.items] == ["x"]


def test_untitled_entry_takes_its_title_from_the_body():
    body = rss_feed([{"guid": "g", "description": "First line of the story. " * 10}])
    (item,) = parse_feed(ok(body), FEED).items
    assert item.title.endswith("…") and len(item.title) <= 141


def test_non_http_entry_links_are_dropped():
    body = rss_feed([{"guid": "g", "title": "t", "link": "javascript:alert(1)"}])
    (item,) = parse_feed(ok(body), FEED).items
    assert item.url is None


def test_html_to_text_keeps_paragraphs_and_drops_scripts():
    html = (
        "<div><h2>Head</h2><p>One   <b>bold</b>\n word&nbsp;&amp; more</p>"
        "<script>var x = '<p>no</p>';</script><style>.a{}</style>"
        "<ul><li>first</li><li>second</li></ul>line<br>break</div>"
    )
    assert html_to_text(html) == "Head\n\nOne bold word & more\n\nfirst\n\nsecond\n\nline\nbreak"
    assert html_to_text("AT&T &lt;3 &#8212; x < y") == "AT&T <3 — x < y"
    assert html_to_text("") == ""


# --- headers --------------------------------------------------------------------------------------


def test_retry_after_in_seconds_or_http_date():
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Sun, 20 Oct 2024 12:05:00 GMT", NOW) == 300
    assert parse_retry_after("Sun, 20 Oct 2024 11:00:00 GMT", NOW) == 0  # in the past: retry now
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_cache_max_age():
    assert cache_max_age({"cache-control": "public, max-age=300"}) == 300
    assert cache_max_age({"cache-control": "max-age=300, no-cache"}) is None
    assert cache_max_age({"cache-control": "s-maxage=300"}) is None
    assert cache_max_age({}) is None


# --- schedule -------------------------------------------------------------------------------------


class MaxRng(random.Random):
    """Always draws the top of the range: shows the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def fresh() -> FeedState:
    return FeedState.initial(FEED, NOW)


def test_success_schedules_the_interval_or_the_publisher_minimum():
    state = next_poll(
        fresh(), "ok", NOW, 300, random.Random(1), etag='"v1"', last_modified="Sat, 19 Oct 2024 10:00:00 GMT"
    )
    assert state.next_due == NOW + timedelta(seconds=300)
    assert (state.etag, state.last_modified, state.last_success) == ('"v1"', "Sat, 19 Oct 2024 10:00:00 GMT", NOW)
    assert state.last_status.outcome == "ok" and state.consecutive_failures == 0
    slow = next_poll(fresh(), "ok", NOW, 300, random.Random(1), min_interval=1800)
    assert slow.next_due == NOW + timedelta(seconds=1800)


def test_not_modified_keeps_validators_and_remembers_the_ttl():
    state = next_poll(fresh(), "ok", NOW, 300, random.Random(1), min_interval=1800, etag='"v1"')
    later = NOW + timedelta(hours=1)
    again = next_poll(state, "not_modified", later, 300, random.Random(1), http_status=304)
    assert again.etag == '"v1"' and again.last_success == later
    assert again.next_due == later + timedelta(seconds=1800)
    assert again.last_status.http_status == 304


def test_failures_keep_validators_and_a_parse_error_does_not_adopt_new_ones():
    state = next_poll(fresh(), "ok", NOW, 300, random.Random(1), etag='"v1"')
    failed = next_poll(state, "parse_error", NOW, 300, random.Random(1), http_status=200, etag='"v2"')
    assert failed.etag == '"v1"' and failed.consecutive_failures == 1 and failed.last_success == NOW


def test_backoff_grows_exponentially_to_the_cap_and_never_gives_up():
    state, delays = fresh(), []
    for _ in range(8):
        state = next_poll(state, "http_error", NOW, 10, MaxRng(), max_backoff=100, http_status=500)
        delays.append((state.next_due - NOW).total_seconds())
    assert delays == [20, 40, 80, 100, 100, 100, 100, 100]
    for _ in range(2000):  # no overflow, still scheduled
        state = next_poll(state, "timeout", NOW, 10, MaxRng(), max_backoff=100)
    assert state.consecutive_failures == 2008 and state.next_due == NOW + timedelta(seconds=100)


def test_backoff_is_jittered_between_the_interval_and_the_ceiling():
    rng = random.Random(42)
    state = fresh().model_copy(update={"consecutive_failures": 9})
    delays = {(next_poll(state, "connection_error", NOW, 60, rng).next_due - NOW).total_seconds() for _ in range(50)}
    assert all(60 <= d <= DEFAULT_MAX_BACKOFF for d in delays)
    assert len(delays) > 40 and max(delays) - min(delays) > 1000


def test_retry_after_is_a_floor_on_the_delay_within_reason():
    state = next_poll(fresh(), "http_error", NOW, 10, random.Random(3), retry_after=900, http_status=429)
    assert state.next_due >= NOW + timedelta(seconds=900)
    huge = next_poll(fresh(), "http_error", NOW, 10, random.Random(3), retry_after=10**9, http_status=503)
    assert huge.next_due == NOW + timedelta(seconds=MAX_RETRY_AFTER)


# --- dedupe memory --------------------------------------------------------------------------------


def test_seen_ids_are_bounded_and_evict_the_least_recently_seen():
    seen = SeenIds(3)
    assert [seen.add(x) for x in "abc"] == [True, True, True]
    assert seen.add("a") is False  # refreshed
    assert seen.add("d") is True  # evicts b, the least recently seen
    assert "b" not in seen and "a" in seen and len(seen) == 3
    assert seen.ids() == ["c", "a", "d"]
    assert SeenIds(3, seen.ids()).ids() == seen.ids()


# --- fetcher on a mock transport ------------------------------------------------------------------


def mock_fetcher(handler, **kwargs) -> FeedFetcher:
    return FeedFetcher(transport=httpx.MockTransport(handler), clock=lambda: NOW, **kwargs)


def test_fetch_sends_user_agent_gzip_and_validators():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(304, headers={"ETag": '"v2"'})

    with mock_fetcher(handler) as fetcher:
        result = fetcher.fetch(FEED.url, etag='"v1"', last_modified="Sat, 19 Oct 2024 10:00:00 GMT")
    assert result.outcome == "not_modified" and result.body is None and result.etag == '"v2"'
    assert result.fetched_at == NOW
    headers = seen[0].headers
    assert headers["user-agent"] == USER_AGENT == f"newsmon/{__version__} (+https://github.com/newsmon/newsmon)"
    assert "gzip" in headers["accept-encoding"]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Sat, 19 Oct 2024 10:00:00 GMT"


def test_fetch_ok_reports_lower_case_headers_validators_and_retry_after():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"<rss/>", headers={"ETag": '"x"', "Last-Modified": "Sat, 19 Oct 2024 10:00:00 GMT"}
        )

    with mock_fetcher(handler) as fetcher:
        result = fetcher.fetch(FEED.url)
    assert result.outcome == "ok" and result.body == b"<rss/>" and result.http_status == 200
    assert result.headers["etag"] == '"x"' and result.etag == '"x"'
    assert result.last_modified == "Sat, 19 Oct 2024 10:00:00 GMT"
    assert result.summary().body is None


def test_fetch_refuses_file_urls_and_redirects_to_them_without_requesting_them():
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(302, headers={"Location": "file:///etc/passwd"})

    with mock_fetcher(handler) as fetcher:
        refused = fetcher.fetch("file:///etc/passwd")
        assert refused.outcome == "refused" and "only http" in refused.error
        assert requested == []
        redirected = fetcher.fetch(FEED.url)
    assert redirected.outcome == "refused" and "redirect refused" in redirected.error
    assert requested == [FEED.url]


@pytest.mark.parametrize(("hops", "outcome"), [(5, "ok"), (6, "redirect_error")])
def test_at_most_five_redirects_are_followed(hops, outcome):
    def handler(request: httpx.Request) -> httpx.Response:
        step = int(request.url.params.get("n", "0"))
        if step < hops:
            return httpx.Response(301, headers={"Location": f"/news.xml?n={step + 1}"})
        return httpx.Response(200, content=b"<rss/>")

    with mock_fetcher(handler) as fetcher:
        result = fetcher.fetch(FEED.url)
    assert result.outcome == outcome
    if outcome == "ok":
        assert result.redirects == 5 and result.final_url == "https://feeds.example.com/news.xml?n=5"


def test_oversize_body_is_cut_off_at_the_cap():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    with mock_fetcher(handler, max_bytes=1000) as fetcher:
        result = fetcher.fetch(FEED.url)
    assert result.outcome == "too_large" and result.body is None


def test_transport_errors_become_outcomes():
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with mock_fetcher(timeout) as fetcher:
        assert fetcher.fetch(FEED.url).outcome == "timeout"
    with mock_fetcher(refused) as fetcher:
        assert fetcher.fetch(FEED.url).outcome == "connection_error"
