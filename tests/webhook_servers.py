"""Real webhook endpoints on 127.0.0.1 for tests: the reference receiver with scripted misbehaviour."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerts.receiver import WebhookReceiver
from alerts.webhooks import DeliveryResult, WebhookTarget
from pipelines.model import Alert, AlertItem, Evidence, TopicMatch

# A fixed test secret (base64 of 32 bytes); the real ones come from configuration.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHEN = datetime(2025, 1, 2, 9, 30, tzinfo=UTC)


@dataclass
class Reply:
    """A scripted answer instead of normal processing."""

    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # answer only when the server stops (the sender must time out)
    record: bool = False  # process (verify, dedupe, record) first, then answer with status: a lost ack


# (webhook-id, how many requests this id has made including this one) -> Reply, or None to process normally
Behaviour = Callable[[str, int], Reply | None]


class ScriptedReceiver(WebhookReceiver):
    """The reference receiver plus per-request delay and scripted failures; logs arrivals per webhook-id."""

    def __init__(self, secret: str = SECRET, behaviour: Behaviour | None = None, delay: float = 0.0, port: int = 0):
        super().__init__(("127.0.0.1", port), secret)
        self.behaviour = behaviour
        self.delay = delay
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # monotonic arrival times per webhook-id
        self.order: list[str] = []  # webhook-ids in arrival order, every request
        self.stopping = threading.Event()

    def handle_delivery(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        webhook_id = headers.get("webhook-id", "")
        with self.lock:
            self.arrivals[webhook_id].append(time.monotonic())
            self.order.append(webhook_id)
            count = len(self.arrivals[webhook_id])
        if self.delay:
            self.stopping.wait(self.delay)
        reply = self.behaviour(webhook_id, count) if self.behaviour else None
        if reply is None:
            return super().handle_delivery(body, headers)
        if reply.hang:
            self.stopping.wait(30)
            return 503, {}
        if reply.record:
            super().handle_delivery(body, headers)
        return reply.status, reply.headers

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.order)


@contextmanager
def serving(server: WebhookReceiver) -> Iterator[WebhookReceiver]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stopping = getattr(server, "stopping", None)
        if stopping is not None:
            stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound once to pick it, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def target(subscription: str, url: str, **overrides: object) -> WebhookTarget:
    settings: dict[str, object] = {"allow_private_targets": True}  # test servers live on loopback
    settings.update(overrides)
    return WebhookTarget(subscription=subscription, url=url, secret=SECRET, **settings)


def make_alert(
    n: int,
    subscription: str = "desk",
    *,
    kind: str = "alert.item",
    story_id: str | None = None,
    items: int = 1,
    evidence: int = 2,
    title: str | None = None,
) -> Alert:
    matches = [
        TopicMatch(
            topic="spying",
            score=0.8,
            evidence=[
                Evidence(term="spy*", text="spies", field="body", start=10 * e, end=10 * e + 5, rule="term", weight=e)
                for e in range(evidence)
            ],
        )
    ]
    return Alert(
        id=f"alrt_{subscription}_{kind}_{n:04d}",
        kind=kind,  # type: ignore[arg-type]
        subscription=subscription,
        topics=["spying"],
        scores={"spying": 0.8},
        items=[
            AlertItem(
                id=f"item{n}_{i}",
                title=title or f"Alert {n} item {i}: MI5 warns of Chinese spies",
                url=f"https://news.example.org/{n}/{i}",
                source="seeds/000.txt",
                published=WHEN,
                matches=matches,
            )
            for i in range(items)
        ],
        reason="matched spying (0.80: spies)",
        timestamp=WHEN + timedelta(seconds=n),
        story_id=story_id,
    )


def assert_none_lost(
    alerts: Iterable[Alert], results: list[DeliveryResult], receivers: Iterable[WebhookReceiver]
) -> tuple[set[str], set[str]]:
    """Every alert has exactly one result; delivered ones reached a receiver (verified), dead letters did not.

    Returns (delivered ids, dead-letter ids).
    """
    ids = [a.id for a in alerts]
    assert sorted(r.alert_id for r in results) == sorted(ids), "each alert must have exactly one result"
    received: set[str] = set()
    for server in receivers:
        with server.lock:
            assert len(server.received_ids) == len(set(server.received_ids)), "a receiver recorded an id twice"
            received.update(server.received_ids)
    delivered = {r.alert_id for r in results if r.outcome == "delivered"}
    dead = {r.alert_id for r in results if r.outcome == "dead_letter"}
    assert delivered <= received, f"delivered but never verified by a receiver: {sorted(delivered - received)}"
    for r in results:
        if r.outcome == "dead_letter":
            assert r.reason and r.body and r.url and r.headers, f"dead letter {r.alert_id} lacks its request"
    return delivered, dead
