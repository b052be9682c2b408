"""The reference webhook receiver: what a subscriber's endpoint should do, small enough to read.

It verifies every POST with the Standard Webhooks library (a bad or stale signature is a 401),
dedupes by ``webhook-id`` (delivery is at-least-once: a retry after a lost answer is answered 200
and not recorded twice), prints one line per alert and appends the raw JSON body to a JSONL file.

    server = make_receiver("127.0.0.1", 0, secret, Path("received.jsonl"), sys.stdout)
    host, port = server.server_address[:2]

Tests use the server object directly: ``received`` (parsed bodies), ``received_ids``, ``bodies``,
``duplicates``, ``rejected`` and ``max_in_flight`` are kept on it, guarded by ``lock``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["MAX_BODY_BYTES", "WebhookReceiver", "make_receiver", "run_receiver", "summary_line"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # senders keep alerts under 20 KB; anything near this is not an alert
_MAX_REMEMBERED_IDS = 100_000  # dedupe window: bounded so a long-running receiver does not grow forever
# Titles come from the open web: strip control characters so an alert cannot drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class WebhookReceiver(ThreadingHTTPServer):
    """A threaded HTTP server that verifies, dedupes and records Standard Webhooks deliveries."""

    daemon_threads = True  # a stuck client must not keep the process alive at Ctrl-C

    def __init__(
        self,
        address: tuple[str, int],
        secret: str,
        out_path: Path | None = None,
        echo: TextIO | None = None,
    ) -> None:
        self._verifier = Webhook(secret)  # keeps only the decoded key; the secret string is not stored
        self.out_path = out_path
        self.echo = echo
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.received_ids: list[str] = []
        self.bodies: dict[str, bytes] = {}
        self.duplicates = 0
        self.rejected = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        super().__init__(address, _Handler)

    def __repr__(self) -> str:
        return f"WebhookReceiver(address={self.server_address!r}, received={len(self.received)})"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def handle_delivery(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """Verify, dedupe and record one delivery; returns (status, extra response headers).

        ``headers`` have lower-case names. Subclasses (scripted test servers) wrap this.
        """
        try:
            payload = self._verifier.verify(body, headers)
        except WebhookVerificationError as exc:
            with self.lock:
                self.rejected += 1
            logger.info("rejected delivery: %s", exc)
            return 401, {}
        except ValueError:  # signed, but not JSON
            return 400, {}
        if not isinstance(payload, dict):
            return 400, {}
        webhook_id = headers["webhook-id"]
        with self.lock:
            if webhook_id in self._seen:
                self.duplicates += 1
                return 200, {}
            try:
                self._write(body, payload)
            except OSError as exc:
                # Not recorded, so not remembered either: a 500 makes the sender retry later.
                logger.error("cannot append to %s: %s", self.out_path, exc)
                return 500, {}
            self._seen[webhook_id] = None
            if len(self._seen) > _MAX_REMEMBERED_IDS:
                self._seen.popitem(last=False)
            self.received.append(payload)
            self.received_ids.append(webhook_id)
            self.bodies[webhook_id] = body
        return 200, {}

    def _write(self, body: bytes, payload: dict[str, Any]) -> None:
        if self.out_path is not None:
            # The raw body is one line already (JSON escapes newlines); a sender that pretty-printed
            # gets re-serialised so the file stays JSONL.
            line = body if b"\n" not in body and b"\r" not in body else json.dumps(payload).encode("utf-8")
            with self.out_path.open("ab") as out:
                out.write(line + b"\n")
        if self.echo is not None:
            self.echo.write(summary_line(payload) + "\n")
            self.echo.flush()

    @contextmanager
    def _tracking(self) -> Iterator[None]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender that timed out and hung up is routine for a webhook endpoint, not a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            logger.debug("client %s went away: %s", client_address, exc)
            return
        logger.exception("error handling request from %s", client_address)


def summary_line(payload: dict[str, Any]) -> str:
    """``alert.item [spying, cyber] Title of the first item (+2 more)``: one readable line per alert."""
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    topics = data.get("topics") or []
    items = data.get("items") or []
    title = items[0].get("title", "") if items and isinstance(items[0], dict) else data.get("reason", "")
    count = data.get("item_count", len(items))
    more = f" (+{count - 1} more)" if isinstance(count, int) and count > 1 else ""
    text = f"{payload.get('type', '?')} [{', '.join(map(str, topics))}] {title}{more}"
    return _CONTROL.sub(" ", text).strip()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sender reuses its connections
    server_version = "newsmon-receiver"
    timeout = 30  # a client that stalls mid-request gives its thread back after this
    server: WebhookReceiver

    def do_POST(self) -> None:
        length_header = self.headers.get("content-length")
        if length_header is None:
            self._reply(411, close=True)
            return
        try:
            length = int(length_header)
        except ValueError:
            self._reply(400, close=True)
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._reply(413, close=True)  # the body is not read, so the connection cannot be reused
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server._tracking():
            status, extra = self.server.handle_delivery(body, headers)
        self._reply(status, extra)

    def do_GET(self) -> None:
        self._reply(405, {"allow": "POST"})

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _reply(self, status: int, extra: dict[str, str] | None = None, close: bool = False) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", "0")
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def make_receiver(
    host: str, port: int, secret: str, out_path: Path | None = None, echo: TextIO | None = None
) -> WebhookReceiver:
    """A bound (not yet serving) receiver; port 0 picks a free port, see ``server.server_address``."""
    return WebhookReceiver((host, port), secret, out_path, echo)


def run_receiver(
    host: str, port: int, secret: str, out_path: Path | None = None, echo: TextIO | None = sys.stdout
) -> int:
    """Serve until Ctrl-C, then print a one-line summary; returns the number of alerts received."""
    server = make_receiver(host, port, secret, out_path, echo)
    status = sys.stderr
    print(f"newsmon receiver listening on {server.url} (Ctrl-C to stop)", file=status, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    with server.lock:
        received, duplicates, rejected = len(server.received), server.duplicates, server.rejected
    print(
        f"newsmon receiver stopped: {received} alerts received, {duplicates} duplicates, {rejected} rejected",
        file=status,
        flush=True,
    )
    return received
