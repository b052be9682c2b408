"""newsmon watch against real feed servers on 127.0.0.1: live items once each, polite polling, health."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.e2e.test_cli import newsmon, read_jsonl
from tests.feed_server import FeedServer, Route, fixture, rss_feed

SPY = "Prosecutors say the pair passed state secrets to Beijing's intelligence services."


def growing_feed(started: float, every: float = 1.5):
    def body() -> bytes:
        n = 2 + int((time.monotonic() - started) / every)
        return rss_feed(
            {
                "guid": f"case-{i}",
                "title": f"Espionage trial {i}: two men charged with spying for China",
                "link": f"https://news.example/spy/{i}",
                "description": SPY,
                "published": datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
            }
            for i in range(n)
        )

    return body


def test_watch_polls_live_feeds_for_a_duration_and_emits_each_entry_once(tmp_path):
    with FeedServer() as server:
        started = time.monotonic()
        server.route("/grow.xml", Route(body=growing_feed(started), etag="auto"))
        server.route("/atom.xml", Route(body=fixture("atom.xml"), content_type="application/atom+xml"))
        server.route("/busy.xml", Route(status=503, body=b"busy", headers={"Retry-After": "1"}))
        server.route("/forbidden.xml", Route(status=403, body=fixture("forbidden.html"), content_type="text/html"))
        feeds = tmp_path / "feeds.txt"
        feeds.write_text(
            "# test feeds\n" + "\n".join(server.url(p) for p in ("/grow.xml", "/atom.xml", "/busy.xml")) + "\n"
        )
        result = newsmon(
            "watch", "--feeds", str(feeds), "--feed", server.url("/forbidden.xml"), "--interval", "1",
            "--duration", "7", "--metrics-port", "0", "--out", "out", cwd=tmp_path,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        grow_requests = server.requests("/grow.xml")
    assert result.returncode == 0, result.stderr
    assert "newsmon: stopped." in result.stdout and "Traceback" not in result.stderr
    assert elapsed < 40
    out = tmp_path / "out"
    items = read_jsonl(out / "items.jsonl")
    grow = [r for r in items if r["url"] and "/spy/" in r["url"]]
    urls = [r["url"] for r in grow]
    assert len(urls) == len(set(urls)), "an entry was emitted twice"
    assert len(grow) >= 5  # entries that appeared while watching were picked up
    assert any(r["source_kind"] == "rss" for r in items)
    atom = [r for r in items if r["source"].endswith("/atom.xml")]
    assert atom, "the Atom feed's entries are items too"
    # polite polling: validators sent after the first response, and some polls answered 304
    assert any("if-none-match" in r.headers for r in grow_requests[1:])
    assert any(r.status == 304 for r in grow_requests)
    assert all("newsmon/" in r.headers.get("user-agent", "") for r in grow_requests)
    health = read_jsonl(out / "feeds.jsonl")
    outcomes = {(h["url"].rsplit("/", 1)[1], h["outcome"]) for h in health}
    assert ("busy.xml", "http_error") in outcomes and ("forbidden.xml", "http_error") in outcomes
    assert ("grow.xml", "ok") in outcomes
    busy = [h for h in health if h["url"].endswith("/busy.xml")]
    assert max(h["consecutive_failures"] for h in busy) >= 2
    alerts = read_jsonl(out / "alerts.jsonl")
    assert any(a["kind"] == "alert.item" and "spying" in a["topics"] for a in alerts)
    # one story from one outlet: a single item alert, never one per near-identical entry
    spy_items = [a for a in alerts if a["kind"] == "alert.item" and "spying" in a["topics"]]
    assert len(spy_items) < len(grow)


def test_watch_refuses_options_that_drop_polls(tmp_path):
    result = newsmon("watch", "--feed", "http://127.0.0.1:9/x", "--direct_num_workers=2", cwd=tmp_path)
    assert result.returncode == 2 and "direct_num_workers" in result.stderr
    result = newsmon("watch", "--feed", "http://127.0.0.1:9/x", "--direct_running_mode=multi_processing",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "multi_processing" in result.stderr


def test_watch_user_errors_are_one_line(tmp_path):
    for args, message in (
        ([], "give feeds with --feed URL"),
        (["--feed", "file:///etc/passwd"], "file"),
        (["--feeds", "missing.txt"], "missing.txt"),
        (["--feed", "http://x.test/a", "--interval", "0"], "--interval"),
    ):
        result = newsmon("watch", *args, "--metrics-port", "0", cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
