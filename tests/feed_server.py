"""A local HTTP server that plays feed publishers, good and bad, for tests and benchmarks.

Routes are configured per path (`FeedServer.route`): status, headers, body (bytes, or a callable
evaluated per request so a feed can gain entries), latency before the response and between body
chunks, ETag / Last-Modified with real 304 handling, gzip, and a Content-Length larger than what is
sent (the connection is then closed: a truncated download). Every request is recorded with its
headers, client port (keep-alive shows as a reused port) and start/end times, so tests can prove
what the client sent and how many requests overlapped.

    with FeedServer() as server:
        server.route("/feed.xml", body=rss_feed(entries), etag="auto")
        url = server.url("/feed.xml")
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

__all__ = ["FIXTURES", "FeedServer", "RequestRecord", "Route", "fixture", "http_date", "rss_feed"]

FIXTURES = Path(__file__).resolve().parent / "data" / "feeds"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def rss_feed(entries: Iterable[Mapping[str, Any]], *, title: str = "Test feed", ttl: int | None = None) -> bytes:
    """A small RSS 2.0 document. Entry keys: guid, title, link, description, published (datetime)."""
    items = []
    for e in entries:
        parts = [f"<title>{escape(e.get('title', ''))}</title>"]
        if e.get("link"):
            parts.append(f"<link>{escape(e['link'])}</link>")
        if e.get("guid"):
            parts.append(f'<guid isPermaLink="false">{escape(e["guid"])}</guid>')
        if e.get("published"):
            parts.append(f"<pubDate>{http_date(e['published'])}</pubDate>")
        if e.get("description"):
            parts.append(f"<description>{escape(e['description'])}</description>")
        items.append("<item>" + "".join(parts) + "</item>")
    ttl_xml = f"<ttl>{ttl}</ttl>" if ttl is not None else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.test/</link><description>test</description>{ttl_xml}"
        + "".join(items)
        + "</channel></rss>"
    ).encode("utf-8")


@dataclass
class Route:
    status: int = 200
    body: bytes | Callable[[], bytes] = b""
    content_type: str | None = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds between body chunks (a slow body)
    chunk_size: int = 16 * 1024
    etag: str | None = None  # "auto": a hash of the body, so a changed body gets a new ETag
    last_modified: str | None = None
    declared_length: int | None = None  # Content-Length to announce; larger than the body = truncation
    gzip: bool = False  # compress when the client accepts gzip


@dataclass(frozen=True)
class RequestRecord:
    path: str
    method: str
    headers: dict[str, str]  # lower-case keys
    client_port: int
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None when the client went away before a status was sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, size caps) are part of the tests, not server errors.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FeedServer:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._routes: dict[str, Route] = {}
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = threading.Event()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="feed-server", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- configuration --------------------------------------------------------------------------

    def route(self, path: str, route: Route | None = None, **fields: Any) -> Route:
        """Serve ``path`` with ``route`` (or a Route built from ``fields``); replaces any previous one."""
        configured = route or Route(**fields)
        with self._lock:
            self._routes[path] = configured
        return configured

    def redirect(self, path: str, target: str, status: int = 302) -> Route:
        return self.route(path, status=status, headers={"Location": target}, content_type=None)

    # --- observation ----------------------------------------------------------------------------

    def requests(self, path: str | None = None, settle: float = 2.0) -> list[RequestRecord]:
        """Records of finished requests. Waits (up to ``settle`` s) for requests still being handled:
        a client can have its whole response before the handler has written its record."""
        with self._settled:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=settle)
            return [r for r in self._records if path is None or r.path == path]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        return sum(1 for r in self.requests(path) if status is None or r.status == status)

    def max_concurrency(self, paths: Iterable[str] | None = None) -> int:
        """The largest number of requests (to ``paths``, or any) that were in progress at one instant."""
        wanted = set(paths) if paths is not None else None
        events: list[tuple[float, int]] = []
        for r in self.requests():
            if wanted is None or r.path in wanted:
                events += [(r.started, 1), (r.ended, -1)]
        peak = current = 0
        for _, step in sorted(events):  # an end sorts before a start at the same instant
            current += step
            peak = max(peak, current)
        return peak

    # --- serving --------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        started = time.monotonic()
        with self._lock:
            self._in_flight += 1
        path = urlsplit(handler.path).path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        status: int | None = None
        try:
            with self._lock:
                route = self._routes.get(path)
            if route is None:
                status = 404
                self._send(handler, 404, {"Content-Type": "text/plain"}, b"not found")
                return
            if route.delay and self._stopping.wait(route.delay):
                return
            body = route.body() if callable(route.body) else route.body
            etag = f'"{hashlib.sha1(body).hexdigest()[:16]}"' if route.etag == "auto" else route.etag
            out: dict[str, str] = {}
            if etag:
                out["ETag"] = etag
            if route.last_modified:
                out["Last-Modified"] = route.last_modified
            if route.status == 200 and _not_modified(headers, etag, route.last_modified):
                status = 304
                self._send(handler, 304, out, b"", length=False)
                return
            if route.content_type:
                out["Content-Type"] = route.content_type
            if route.gzip and "gzip" in headers.get("accept-encoding", ""):
                body = gzip.compress(body)
                out["Content-Encoding"] = "gzip"
            out.update(route.headers)
            status = route.status
            self._send(handler, route.status, out, body, declared=route.declared_length, route=route)
        except (ConnectionError, TimeoutError):
            handler.close_connection = True
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()
                self._records.append(
                    RequestRecord(
                        path, handler.command, headers, handler.client_address[1], started, time.monotonic(), status
                    )
                )

    def _send(
        self,
        handler: _Handler,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        length: bool = True,
        declared: int | None = None,
        route: Route | None = None,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        if length:
            handler.send_header("Content-Length", str(declared if declared is not None else len(body)))
        handler.end_headers()
        chunk_size = route.chunk_size if route else len(body) or 1
        chunk_delay = route.chunk_delay if route else 0.0
        for offset in range(0, len(body), chunk_size):
            if offset and chunk_delay and self._stopping.wait(chunk_delay):
                break
            handler.wfile.write(body[offset : offset + chunk_size])
            handler.wfile.flush()
        if declared is not None and declared > len(body):
            handler.close_connection = True  # hang up short of the promised length


def _not_modified(headers: Mapping[str, str], etag: str | None, last_modified: str | None) -> bool:
    if "if-none-match" in headers:  # RFC 9110: If-None-Match wins over If-Modified-Since
        sent = {tag.strip() for tag in headers["if-none-match"].split(",")}
        return etag is not None and (etag in sent or "*" in sent)
    if "if-modified-since" in headers and last_modified:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(headers["if-modified-since"])
        except (TypeError, ValueError):
            return False
    return False
