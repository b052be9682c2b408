"""Feeds over real HTTP: FeedFetcher and FeedPoller against the local feed server (127.0.0.1 only).

Timeouts and latencies are small (tenths of a second) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.sources.feeds import FeedConfig, FeedFetcher, parse_feed
from pipelines.sources.poller import FeedPoller
from tests.feed_server import FeedServer, fixture, http_date, rss_feed

NOW = datetime(2024, 10, 20, 12, 0, tzinfo=UTC)
READ_TIMEOUT = 0.3


class Clock:
    """A settable clock: fetch results are stamped with it, and polls are driven by it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetcher(clock) -> Iterator[FeedFetcher]:
    with FeedFetcher(
        connect_timeout=1.0, read_timeout=READ_TIMEOUT, total_timeout=5.0, max_bytes=256 * 1024, trust_env=False,
        clock=clock,
    ) as f:  # fmt: skip
        yield f


def make_poller(feeds, fetcher, **kwargs) -> FeedPoller:
    kwargs.setdefault("interval", 60)
    kwargs.setdefault("max_backoff", 600)
    kwargs.setdefault("rng", random.Random(7))
    return FeedPoller(feeds, fetcher=fetcher, **kwargs)


def entries(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "guid": f"e{i}",
            "title": f"Entry {i}",
            "link": f"https://example.test/e{i}",
            "published": NOW - timedelta(minutes=i),
            "description": f"Body {i}",
        }
        for i in range(start, start + n)
    ]


# --- formats and encodings over HTTP --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "titles"),
    [
        ("rss2.xml", "application/rss+xml", ["Ministers agree new data-protection rules"]),
        ("atom.xml", "application/atom+xml; charset=utf-8", ["Port strike enters third day"]),
        ("rss1.rdf", "application/rdf+xml", ["Flood warnings issued for the north"]),
        ("latin1.xml", "application/rss+xml", ["Hausse des prix à Paris : café, crème brûlée et pâtés"]),
        ("latin1.xml", "text/xml; charset=ISO-8859-1", ["Hausse des prix à Paris : café, crème brûlée et pâtés"]),
        ("utf16.xml", "application/xml", ["Переговоры в Женеве — 東京 update"]),
        ("illformed.xml", "application/rss+xml", ["Council & residents clash over parking"]),
    ],
)
def test_each_format_and_encoding_parses_over_http(server, fetcher, name, content_type, titles):
    server.route("/feed", body=fixture(name), content_type=content_type)
    feed = FeedConfig(url=server.url("/feed"))
    result = fetcher.fetch(feed.url)
    assert result.outcome == "ok" and result.http_status == 200
    parsed = parse_feed(result, feed)
    assert parsed.outcome == "ok"
    assert parsed.items[0].title == titles[0]
    assert all(item.source == feed.url and item.ingested.tzinfo == UTC for item in parsed.items)


def test_gzip_is_accepted_and_decoded(server, fetcher):
    server.route("/gz", body=fixture("rss2.xml"), gzip=True)
    result = fetcher.fetch(server.url("/gz"))
    assert result.outcome == "ok" and result.headers["content-encoding"] == "gzip"
    assert result.body == fixture("rss2.xml")
    assert "gzip" in server.requests("/gz")[0].headers["accept-encoding"]


def test_user_agent_and_keep_alive(server, fetcher):
    server.route("/feed", body=fixture("rss2.xml"))
    for _ in range(3):
        assert fetcher.fetch(server.url("/feed")).outcome == "ok"
    records = server.requests("/feed")
    assert records[0].headers["user-agent"].startswith("newsmon/")
    assert len({r.client_port for r in records}) == 1  # one connection, reused


# --- failures -------------------------------------------------------------------------------------


def test_truncated_download_is_an_error_not_a_crash(server, fetcher, clock):
    body = fixture("rss2.xml")
    server.route("/cut", body=body[: len(body) // 2], declared_length=len(body))
    feed = FeedConfig(url=server.url("/cut"))
    with make_poller([feed], fetcher) as poller:
        (outcome,) = poller.poll_due(clock.now)
    assert outcome.fetch.outcome == "connection_error" and outcome.fetch.http_status == 200
    assert "truncated" in outcome.health.error
    assert outcome.items == [] and outcome.health.consecutive_failures == 1


def test_html_403_is_an_http_error(server, fetcher):
    server.route("/blocked", status=403, body=fixture("forbidden.html"), content_type="text/html")
    result = fetcher.fetch(server.url("/blocked"))
    assert (result.outcome, result.http_status, result.body) == ("http_error", 403, None)


def test_html_200_and_empty_200_are_parse_errors(server, fetcher, clock):
    server.route("/html", body=fixture("forbidden.html"), content_type="text/html; charset=utf-8")
    server.route("/empty", body=b"")
    feeds = [FeedConfig(url=server.url("/html"), id="html"), FeedConfig(url=server.url("/empty"), id="empty")]
    with make_poller(feeds, fetcher) as poller:
        outcomes = {o.feed.id: o for o in poller.poll_due(clock.now)}
        assert outcomes["html"].health.outcome == "parse_error" and outcomes["html"].health.http_status == 200
        assert outcomes["empty"].health.outcome == "parse_error" and outcomes["empty"].health.error == "empty body"
        assert all(o.items == [] and o.state.consecutive_failures == 1 for o in outcomes.values())


def test_slower_than_the_read_timeout_is_a_timeout(server, fetcher):
    server.route("/slow", body=fixture("rss2.xml"), delay=READ_TIMEOUT * 4)
    started = time.monotonic()
    result = fetcher.fetch(server.url("/slow"))
    assert result.outcome == "timeout"
    assert time.monotonic() - started < READ_TIMEOUT * 3


def test_slow_trickling_body_hits_the_total_deadline(server, clock):
    server.route("/trickle", body=b"<rss>" + b" " * 400, chunk_size=20, chunk_delay=0.05)
    with FeedFetcher(read_timeout=1.0, total_timeout=0.3, trust_env=False, clock=clock) as fetcher:
        result = fetcher.fetch(server.url("/trickle"))
    assert result.outcome == "timeout" and "longer than" in result.error


def test_oversize_body_is_too_large(server, fetcher):
    big = b"<rss>" + b"x" * (1024 * 1024)
    server.route("/big", body=big)  # announced by Content-Length
    server.route("/big-gz", body=big, gzip=True)  # small on the wire, large decoded
    assert fetcher.fetch(server.url("/big")).outcome == "too_large"
    result = fetcher.fetch(server.url("/big-gz"))
    assert result.outcome == "too_large" and result.body is None


def test_redirect_loop_is_a_redirect_error(server, fetcher):
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    result = fetcher.fetch(server.url("/a"))
    assert result.outcome == "redirect_error" and "loop" in result.error
    assert server.count("/a") == 1 and server.count("/b") == 1


def test_redirects_are_followed_to_the_feed(server, fetcher):
    server.redirect("/old", "/new", status=301)
    server.route("/new", body=fixture("rss2.xml"))
    result = fetcher.fetch(server.url("/old"))
    assert result.outcome == "ok" and result.final_url == server.url("/new") and result.redirects == 1


def test_file_urls_are_refused(fetcher):
    result = fetcher.fetch("file:///etc/passwd")
    assert result.outcome == "refused" and result.body is None


def test_connection_refused_is_a_connection_error(fetcher):
    with FeedServer() as gone:
        url = gone.url("/feed")
    assert fetcher.fetch(url).outcome == "connection_error"


# --- conditional GET and scheduling ---------------------------------------------------------------


def test_second_poll_sends_validators_and_gets_304(server, fetcher, clock):
    modified = http_date(NOW - timedelta(days=1))
    server.route("/feed", body=fixture("rss2.xml"), etag="auto", last_modified=modified)
    feed = FeedConfig(url=server.url("/feed"))
    with make_poller([feed], fetcher) as poller:
        (first,) = poller.poll_due(clock.now)
        assert first.health.outcome == "ok" and first.health.new_entries == 3
        assert poller.next_due() == NOW + timedelta(seconds=1800)  # the feed's <ttl>30</ttl> beats interval
        (second,) = poller.poll_due(clock.advance(1800))
    assert second.health.outcome == "not_modified" and second.items == []
    assert second.fetch.body is None and second.state.last_success == clock.now
    assert (server.count("/feed", 200), server.count("/feed", 304)) == (1, 1)
    sent = server.requests("/feed")[1].headers
    assert sent["if-none-match"] == first.state.etag and sent["if-modified-since"] == modified


def test_last_modified_alone_is_enough_for_a_304(server, fetcher):
    modified = http_date(NOW)
    server.route("/feed", body=fixture("rss2.xml"), last_modified=modified)
    first = fetcher.fetch(server.url("/feed"))
    second = fetcher.fetch(server.url("/feed"), last_modified=first.last_modified)
    assert (first.outcome, second.outcome) == ("ok", "not_modified")


def test_429_retry_after_pushes_the_next_poll_back(server, fetcher, clock):
    server.route("/limited", status=429, headers={"Retry-After": "1200"}, content_type="text/plain", body=b"slow down")
    server.route("/dated", status=503, headers={"Retry-After": http_date(NOW + timedelta(hours=2))}, body=b"")
    feeds = [FeedConfig(url=server.url("/limited"), id="limited"), FeedConfig(url=server.url("/dated"), id="dated")]
    with make_poller(feeds, fetcher, interval=60, max_backoff=300) as poller:
        outcomes = {o.feed.id: o for o in poller.poll_due(clock.now)}
        assert outcomes["limited"].fetch.retry_after_seconds == 1200
        assert poller.state("limited").next_due >= NOW + timedelta(seconds=1200)
        assert poller.state("dated").next_due >= NOW + timedelta(hours=2)
        assert outcomes["limited"].health.http_status == 429
        assert poller.poll_due(NOW + timedelta(seconds=1199)) == []  # not polled before Retry-After
    assert server.count("/limited") == 1


def test_server_errors_back_off_growing_capped_and_jittered(server, fetcher, clock):
    server.route("/broken", status=500, body=b"oops", content_type="text/plain")
    feed = FeedConfig(url=server.url("/broken"))
    delays = []
    with make_poller([feed], fetcher, interval=10, max_backoff=100, rng=random.Random(5)) as poller:
        for _ in range(10):
            clock.now = poller.next_due()
            (outcome,) = poller.poll_due(clock.now)
            assert outcome.health.outcome == "http_error" and outcome.health.http_status == 500
            delays.append((poller.next_due() - clock.now).total_seconds())
        assert outcome.health.consecutive_failures == 10 and outcome.health.last_success is None
    ceilings = [min(100, 10 * 2**n) for n in range(1, 11)]
    assert all(10 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[4:]) > max(delays[:2])  # the window widened
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    assert server.count("/broken") == 10  # kept trying: never given up


def test_recovery_resets_failures(server, fetcher, clock):
    server.route("/flaky", status=503, body=b"")
    feed = FeedConfig(url=server.url("/flaky"))
    with make_poller([feed], fetcher) as poller:
        (down,) = poller.poll_due(clock.now)
        server.route("/flaky", body=fixture("rss2.xml"))
        (up,) = poller.poll_due(clock.advance(10_000))
    assert down.health.consecutive_failures == 1
    assert up.health.outcome == "ok" and up.health.consecutive_failures == 0 and up.health.last_success == clock.now


# --- concurrency ----------------------------------------------------------------------------------

DELAY = 0.25


@pytest.fixture
def patient_fetcher(clock) -> Iterator[FeedFetcher]:
    """For the concurrency tests: latency is the point there, not a failure."""
    with FeedFetcher(read_timeout=5.0, trust_env=False, clock=clock) as f:
        yield f


def test_due_feeds_are_fetched_concurrently_across_hosts(patient_fetcher, clock):
    servers = [FeedServer() for _ in range(4)]
    try:
        feeds = []
        for s in servers:
            for name in ("/a", "/b"):
                s.route(name, body=rss_feed(entries(1)), delay=DELAY)
                feeds.append(FeedConfig(url=s.url(name)))
        with make_poller(feeds, patient_fetcher, max_workers=16, per_host=2) as poller:
            started = time.monotonic()
            outcomes = poller.poll_due(clock.now)
            elapsed = time.monotonic() - started
        assert [o.health.outcome for o in outcomes] == ["ok"] * 8
        assert elapsed < DELAY * 2.5  # 8 slow feeds in about one delay, not eight
        assert all(s.max_concurrency() == 2 for s in servers)  # both feeds of each host at once
    finally:
        for s in servers:
            s.close()


def test_per_host_limit_is_respected(server, patient_fetcher, clock):
    feeds = []
    for i in range(6):
        server.route(f"/f{i}", body=rss_feed(entries(1)), delay=DELAY)
        feeds.append(FeedConfig(url=server.url(f"/f{i}")))
    with make_poller(feeds, patient_fetcher, max_workers=16, per_host=2) as poller:
        started = time.monotonic()
        outcomes = poller.poll_due(clock.now)
        elapsed = time.monotonic() - started
    assert all(o.health.outcome == "ok" for o in outcomes)
    assert server.max_concurrency() == 2  # overlapping, but never more than 2 at one site
    assert elapsed >= DELAY * 3 * 0.95  # 6 feeds, 2 at a time


def test_only_due_feeds_are_polled(server, fetcher, clock):
    server.route("/fast", body=rss_feed(entries(1)))
    server.route("/slow", body=rss_feed(entries(1), ttl=60))  # ttl 60 min
    feeds = [FeedConfig(url=server.url("/fast"), id="fast"), FeedConfig(url=server.url("/slow"), id="slow")]
    with make_poller(feeds, fetcher, interval=60) as poller:
        assert len(poller.poll_due(clock.now)) == 2
        assert poller.next_due() == NOW + timedelta(seconds=60)
        assert [o.feed.id for o in poller.poll_due(clock.advance(60))] == ["fast"]
    assert (server.count("/fast"), server.count("/slow")) == (2, 1)


# --- dedupe and state -----------------------------------------------------------------------------


def test_a_growing_feed_emits_each_new_entry_exactly_once(server, fetcher, clock):
    published: list[dict] = []
    server.route("/live", body=lambda: rss_feed(list(reversed(published))[:5]), etag="auto")
    feed = FeedConfig(url=server.url("/live"))
    emitted: list[str] = []
    with make_poller([feed], fetcher, interval=60) as poller:
        for batch in (3, 0, 1, 4, 0, 2):
            published.extend(entries(batch, start=len(published)))
            for outcome in poller.poll_due(clock.advance(60)):
                assert outcome.health.outcome in ("ok", "not_modified")
                assert outcome.health.new_entries == len(outcome.items)
                emitted += [item.guid for item in outcome.items]
    # The feed shows only its 5 newest entries, so nothing is ever re-emitted as it scrolls.
    assert sorted(emitted, key=lambda g: int(g[1:])) == [f"e{i}" for i in range(10)]
    assert len(emitted) == len(set(emitted))
    assert server.count("/live", 304) == 2  # the polls where nothing was published


def test_dedupe_memory_stays_bounded(server, fetcher, clock):
    limit, extra = 50, 30
    server.route("/many", body=rss_feed(entries(limit + extra)))
    feed = FeedConfig(url=server.url("/many"))
    with make_poller([feed], fetcher, seen_limit=limit) as poller:
        (outcome,) = poller.poll_due(clock.now)
        assert len(outcome.items) == limit + extra
        assert poller.seen_count(feed.id) == limit
        state = poller.to_state()
    assert len(state["feeds"][feed.id]["seen"]) == limit
    # The newest entries (first in the feed) are the ones remembered.
    assert state["feeds"][feed.id]["seen"][-1] == outcome.items[0].id


def test_state_round_trips_through_json_and_resumes_validators_and_seen(server, fetcher, clock):
    server.route("/feed", body=rss_feed(entries(3)), etag="auto")
    feed = FeedConfig(url=server.url("/feed"), id="main")
    with make_poller([feed], fetcher) as poller:
        (first,) = poller.poll_due(clock.now)
        saved = json.loads(json.dumps(poller.to_state()))
    assert len(first.items) == 3
    extra = FeedConfig(url=server.url("/other"), id="other")
    with FeedPoller.from_state(saved, [feed, extra], fetcher=fetcher, interval=60) as resumed:
        assert resumed.state("main") == first.state
        assert resumed.state("other").next_due < NOW  # new feed: due at once
        (again,) = [o for o in resumed.poll_due(first.state.next_due) if o.feed.id == "main"]
        assert again.health.outcome == "not_modified"
        server.route("/feed", body=rss_feed(entries(4)), etag="auto")  # one more entry, new ETag
        (more,) = [o for o in resumed.poll_due(clock.advance(3600)) if o.feed.id == "main"]
    assert [item.guid for item in more.items] == ["e3"]  # the three already seen are not re-emitted


def test_state_for_a_feed_whose_url_changed_is_not_reused(server, fetcher, clock):
    server.route("/feed", body=rss_feed(entries(1)), etag="auto")
    with make_poller([FeedConfig(url=server.url("/feed"), id="x")], fetcher) as poller:
        poller.poll_due(clock.now)
        saved = poller.to_state()
    moved = FeedConfig(url=server.url("/moved"), id="x")
    with FeedPoller.from_state(saved, [moved], fetcher=fetcher) as resumed:
        assert resumed.state("x").etag is None and resumed.seen_count("x") == 0
