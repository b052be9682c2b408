"""Webhook delivery: signed Standard Webhooks POSTs with retries, a circuit breaker and an SSRF guard.

The decisions are pure functions (payload, headers, retry delay, status classification, address
checks) so they can be tested without a network. ``WebhookDeliverer`` is the only part doing I/O: the
Beam DoFn builds one in ``setup``, calls ``submit`` per alert and ``drain`` in ``finish_bundle``, and
closes it in ``teardown``.

Delivery guarantees, per deliverer:

- every submitted alert ends in exactly one ``DeliveryResult``: ``delivered`` or ``dead_letter`` with a
  reason (``exhausted``, ``non_retryable_status``, ``endpoint_down``, ``subscription_disabled``,
  ``target_refused``, ``unknown_subscription``, ``payload_too_large``, ``drain_timeout``, ``cancelled``,
  ``internal_error``). A dead letter keeps the exact request (url, signed headers, body) for redelivery;
- the ``webhook-id`` is the alert id, identical across retries, reruns and redeliveries, so receivers
  dedupe on it (delivery is at-least-once);
- alerts sharing an ``order_key`` (e.g. a story id) are sent one at a time in submission order (an
  update never overtakes its item; if the item dead-letters, the update still goes);
- a retry waits in a scheduler heap, not in a worker, so one failing alert never holds up another.

Metrics (recorded by ``drain``/``close`` in the caller's thread): ``webhook_deliveries{outcome}``
(``delivered`` or the dead-letter reason), ``webhook_attempts``, ``webhook_delivery_seconds`` (first
attempt to final outcome) and ``dead_letters{stage=delivery}``.
"""

from __future__ import annotations

import email.utils
import heapq
import ipaddress
import itertools
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from standardwebhooks.webhooks import Webhook

from pipelines import __version__, metrics
from pipelines.model import Alert, AlertItem, DeadLetter, Evidence

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "DELIVERY_STAGE",
    "MAX_PAYLOAD_BYTES",
    "USER_AGENT",
    "AttemptRecord",
    "DelivererClosed",
    "DeliveryResult",
    "PayloadTooLarge",
    "RedeliveryError",
    "RetryPolicy",
    "TargetRefused",
    "WebhookDeliverer",
    "WebhookError",
    "WebhookRequest",
    "WebhookTarget",
    "build_payload",
    "classify_status",
    "from_dead_letter",
    "next_delay",
    "parse_retry_after",
    "redeliver",
    "refusal_reason",
    "resolve_target",
    "signed_headers",
    "to_dead_letter",
]

logger = logging.getLogger(__name__)

USER_AGENT = f"newsmon/{__version__}"
DELIVERY_STAGE = "delivery"
# Receivers commonly cap bodies at 20-64 KB (and some log them); staying under 20 KB keeps every
# alert deliverable. Alerts are summaries with a link, not article copies.
MAX_PAYLOAD_BYTES = 20_000
# Trimming ladder for oversized payloads: (evidence kept per topic match, items kept). Evidence goes
# first because the reason line already names the matched terms; items go last.
_TRIM_STEPS: tuple[tuple[int, int | None], ...] = ((3, None), (1, None), (1, 10), (0, 10), (0, 3), (0, 1))
_CLIP_TITLE, _CLIP_REASON, _CLIP_URL = 300, 1000, 2000
_SNIPPET_BYTES = 512  # enough of an error response to explain a 400, never the whole thing
_CONNECT_TIMEOUT = 5.0  # a connect that takes longer than this is a down endpoint, whatever the read timeout
_SCHEDULER_TICK = 0.05  # longest the retry scheduler sleeps before re-checking its heap

Outcome = Literal["delivered", "dead_letter"]
Verdict = Literal["delivered", "retry", "disabled", "reject"]


class WebhookError(Exception):
    """Base of the webhook delivery errors."""


class TargetRefused(WebhookError):
    """The target resolves to an address webhooks may not reach (SSRF guard)."""


class PayloadTooLarge(WebhookError):
    """Even the fully trimmed payload does not fit in MAX_PAYLOAD_BYTES."""


class RedeliveryError(WebhookError):
    """A delivery dead letter whose detail cannot be turned back into a request."""


class DelivererClosed(WebhookError):
    """submit() after close()."""


# --- configuration ----------------------------------------------------------------------------------


class WebhookTarget(BaseModel):
    """Where one subscription's alerts go. The secret is resolved already and never printed."""

    # hide_input_in_errors: a validation error would otherwise quote the raw secret string.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    subscription: str
    url: str
    secret: SecretStr = Field(description="a whsec_… Standard Webhooks secret")
    allow_private_targets: bool = Field(default=False, description="let the URL resolve to private addresses")
    max_attempts: int = Field(default=6, ge=1, le=20)
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    retry_budget_seconds: float = Field(default=120.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError("webhook url must be http:// or https://")
        if not parts.hostname:
            raise ValueError("webhook url has no host")
        if parts.username or parts.password:
            # Credentials in the URL would end up in dead-letter records; the secret signs instead.
            raise ValueError("webhook url must not carry credentials")
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("webhook secret must be a whsec_… secret")
        try:
            Webhook(raw)
        except Exception:  # the library raises binascii/ValueError/its own types; none may echo the secret
            raise ValueError("webhook secret is not valid base64 after whsec_") from None
        return value

    @property
    def host(self) -> str:
        """The host alone: what logs may name (paths and queries sometimes carry tokens)."""
        return urlsplit(self.url).hostname or "?"


class RetryPolicy(BaseModel):
    """Backoff shape shared by all targets of a deliverer (attempt counts and budgets are per target).

    Defaults: full-jitter waits drawn from [0, 1], [0, 2], [0, 4], [0, 8], [0, 16] s between the 6
    attempts: at most 31 s of waiting, 15.5 s expected. With the 15 s request timeout the worst case is
    6 x 15 + 31 = 121 s, which the 120 s retry budget caps: ~2 minutes per alert at most.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_delay_seconds: float = Field(default=1.0, gt=0)
    max_delay_seconds: float = Field(default=16.0, gt=0)
    # A Retry-After beyond this is clamped: an hour-long ask would otherwise outlive the retry budget
    # and the bundle; the budget check then decides whether one more try fits.
    max_retry_after_seconds: float = Field(default=60.0, ge=0)


DEFAULT_RETRY_POLICY = RetryPolicy()


# --- payload and signing (pure) ---------------------------------------------------------------------


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _best_evidence(evidence: list[Evidence], keep: int) -> list[Evidence]:
    # Heaviest first; title hits before body hits at equal weight; then position, for determinism.
    ranked = sorted(evidence, key=lambda e: (-e.weight, e.field != "title", e.start, e.term, e.text))
    return ranked[:keep]


def _item_dict(item: AlertItem, evidence_cap: int | None, clip: bool) -> dict[str, Any]:
    matches = []
    for m in item.matches:
        evidence = m.evidence if evidence_cap is None else _best_evidence(m.evidence, evidence_cap)
        matches.append({"topic": m.topic, "score": m.score, "evidence": [e.model_dump(mode="json") for e in evidence]})
    title, url = item.title, item.url
    if clip:
        title = title[:_CLIP_TITLE]
        url = url[:_CLIP_URL] if url else url
    return {
        "id": item.id,
        "title": title,
        "url": url,
        "source": item.source[:_CLIP_URL] if clip else item.source,
        "published": _rfc3339(item.published),
        "matches": matches,
    }


def _payload_dict(alert: Alert, evidence_cap: int | None, item_cap: int | None, clip: bool) -> dict[str, Any]:
    items = alert.items if item_cap is None else alert.items[:item_cap]
    truncated = evidence_cap is not None or item_cap is not None or clip
    details = alert.model_dump(mode="json", include={"details"})["details"]
    data: dict[str, Any] = {
        "id": alert.id,
        "subscription": alert.subscription,
        "topics": alert.topics,
        "scores": alert.scores,
        "story_id": alert.story_id,
        "reason": alert.reason[:_CLIP_REASON] if clip else alert.reason,
        "details": {} if clip and details else details,
        "item_count": len(alert.items),
        "items": [_item_dict(i, evidence_cap, clip) for i in items],
        "truncated": truncated,
    }
    return {"type": alert.kind, "timestamp": _rfc3339(alert.timestamp), "data": data}


def _encode(payload: dict[str, Any]) -> bytes:
    # sort_keys + fixed separators: the same alert gives the same bytes in every run.
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_payload(alert: Alert) -> bytes:
    """The Standard Webhooks body ``{"type", "timestamp", "data"}``: deterministic, under MAX_PAYLOAD_BYTES.

    Oversized alerts are trimmed step by step (evidence per match, then items beyond the first few,
    then long free text) and marked ``data.truncated = true``; ``data.item_count`` keeps the full count.
    """
    body = _encode(_payload_dict(alert, None, None, clip=False))
    if len(body) < MAX_PAYLOAD_BYTES:
        return body
    for evidence_cap, item_cap in _TRIM_STEPS:
        body = _encode(_payload_dict(alert, evidence_cap, item_cap, clip=False))
        if len(body) < MAX_PAYLOAD_BYTES:
            return body
    body = _encode(_payload_dict(alert, 0, 1, clip=True))
    if len(body) < MAX_PAYLOAD_BYTES:
        return body
    raise PayloadTooLarge(f"alert {alert.id}: {len(body)} bytes even when trimmed (limit {MAX_PAYLOAD_BYTES})")


def signed_headers(webhook_id: str, body: bytes | str, signer: Webhook, timestamp: int) -> dict[str, str]:
    """The request headers. The signature covers id, timestamp and body, so it is fresh per attempt."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    # Sign the str: standardwebhooks 1.0 only accepts str, and the UTF-8 encoding is the body sent.
    signature = signer.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), text)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-signature": signature,
        "webhook-timestamp": str(timestamp),
    }


# --- retry policy (pure) ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from ``now`` (epoch seconds): delta-seconds or an HTTP date; None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is taken as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_delay(
    attempt: int, retry_after: float | None, rng: random.Random, policy: RetryPolicy = DEFAULT_RETRY_POLICY
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (uniform in [0, min(max, base * 2^(attempt-1))]) spreads the retries of many alerts
    that failed together, so a recovering receiver is not hit by a synchronised wave. A Retry-After
    from the server is a floor (clamped to ``max_retry_after_seconds``).
    """
    ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** max(0, attempt - 1))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.max_retry_after_seconds))
    return delay


def classify_status(status: int) -> Verdict:
    """What an HTTP answer means for the delivery.

    2xx delivered. 410 Gone: the subscriber has switched the endpoint off. 408, 429 and every 5xx are
    retried: a 500 is usually a deploy or an overloaded dependency and retrying is bounded by
    max_attempts and the budget, while giving up on a transient error loses an alert. Every other
    answer (other 4xx, 3xx - redirects are not followed, they could point anywhere) is final.
    """
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "disabled"
    if status in (408, 429) or 500 <= status < 600:
        return "retry"
    return "reject"


# --- SSRF guard -------------------------------------------------------------------------------------

_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

Resolver = Callable[..., list[tuple[Any, ...]]]


def refusal_reason(address: str) -> str | None:
    """Why webhooks may not reach ``address``, or None if it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 (Python < 3.13 does not look through it)
    checks = (
        (ip in _METADATA_ADDRESSES, "cloud metadata"),
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # Catches what the flags above miss: carrier-grade NAT (100.64/10), documentation ranges.
        (not ip.is_global, "not globally routable"),
    )
    for hit, reason in checks:
        if hit:
            return f"{ip} is {reason}"
    return None


def resolve_target(url: str, *, allow_private: bool = False, resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """The addresses ``url``'s host resolves to, all checked; TargetRefused if any is off limits.

    Any forbidden address refuses the whole target: a name that resolves to one public and one
    private address is a rebinding setup. Resolution errors (OSError) propagate: that is a down
    endpoint, not a refusal.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise TargetRefused("url has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = resolve(host, port, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OSError(f"{host} resolved to no addresses")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason:
                raise TargetRefused(f"{host} resolves to {reason}")
    return addresses


# --- results and dead letters -----------------------------------------------------------------------


class WebhookRequest(BaseModel):
    """What is (re)sent: the body and the id stay fixed; timestamp and signature are made per attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription: str
    webhook_id: str
    alert_id: str
    body: str
    order_key: str | None = None


class AttemptRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int
    at_seconds: float = Field(description="seconds after submit")
    status: int | None = None
    error: str | None = None


class DeliveryResult(BaseModel):
    """The one final word on one alert. Dead letters carry the exact request (signature, never the secret)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    subscription: str
    webhook_id: str
    outcome: Outcome
    reason: str | None = None
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    latency_seconds: float = 0.0
    order_key: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    body: str | None = None
    attempt_log: list[AttemptRecord] = Field(default_factory=list)


def to_dead_letter(result: DeliveryResult) -> DeadLetter:
    """A dead-letter record (stage ``delivery``) holding everything needed to redeliver."""
    if result.outcome != "dead_letter":
        raise WebhookError(f"alert {result.alert_id} was delivered; there is no dead letter")
    detail = result.model_dump(
        mode="json",
        include={
            "alert_id", "webhook_id", "order_key", "url", "headers", "body",
            "attempts", "last_status", "last_error", "attempt_log",
        },
    )  # fmt: skip
    return DeadLetter(
        stage=DELIVERY_STAGE,
        source=result.subscription,
        reason=result.reason or "unknown",
        detail=json.dumps(detail, sort_keys=True, ensure_ascii=False),
    )


def from_dead_letter(record: DeadLetter) -> WebhookRequest:
    """The request a delivery dead letter holds (same webhook-id and body)."""
    if record.stage != DELIVERY_STAGE:
        raise RedeliveryError(f"dead letter from stage {record.stage!r} is not a webhook delivery")
    try:
        detail = json.loads(record.detail)
        request = WebhookRequest(
            subscription=record.source,
            webhook_id=detail["webhook_id"],
            alert_id=detail.get("alert_id") or detail["webhook_id"],
            body=detail["body"],
            order_key=detail.get("order_key"),
        )
        if not request.body:
            raise ValueError("no body recorded")
        return request
    except (ValueError, KeyError, TypeError) as exc:
        raise RedeliveryError(f"delivery dead letter for {record.source!r} has an unusable detail: {exc}") from None


# --- the deliverer ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Lane:
    """Per-subscription state. Guarded by the deliverer's lock."""

    target: WebhookTarget
    signer: Webhook = field(repr=False)
    ready: deque[_Job] = field(default_factory=deque)
    chains: dict[str, deque[_Job]] = field(default_factory=dict)  # order_key → jobs, head is the active one
    scheduled: set[_Job] = field(default_factory=set)  # jobs waiting in the retry heap
    in_flight: int = 0
    consecutive_down: int = 0
    open_until: float | None = None  # breaker: open until then, half-open after, closed when None
    probe: _Job | None = None
    disabled: bool = False


@dataclass(eq=False)
class _Job:
    seq: int
    request: WebhookRequest
    lane: _Lane | None
    submitted_at: float
    attempts: int = 0
    first_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_headers: dict[str, str] | None = None
    log: list[AttemptRecord] = field(default_factory=list)
    in_flight: bool = False
    token: int = 0  # bumped when a scheduled retry is dropped, so its stale heap entry is skipped
    abandoned: str | None = None
    final: bool = False


@dataclass
class _Outcome:
    headers: dict[str, str] | None
    started: float
    sent: bool = False
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    endpoint_down: bool = False
    refused: str | None = None
    internal: str | None = None


class WebhookDeliverer:
    """Delivers alerts to their subscriptions' webhook targets, concurrently, with retries.

    ``submit`` never blocks on the network; ``drain`` waits for everything submitted before it and
    returns those results in submission order. Up to ``max_in_flight_per_subscription`` requests run
    per subscription on a shared thread pool; failed attempts are rescheduled on a heap watched by one
    scheduler thread, so a worker is never parked in a backoff.

    Circuit breaker, per subscription: ``breaker_threshold`` consecutive endpoint-down failures
    (connect errors, DNS failures, timeouts) open it; while open, new and pending alerts become dead
    letters (``endpoint_down``) without an attempt. After ``breaker_cooldown_seconds`` one probe is
    let through; an HTTP answer of any status closes it again (the endpoint is up, even if unhappy).

    Metrics are recorded by ``drain``/``close``, in the caller's thread: Beam metric containers are
    thread-local, so counters bumped from worker threads would be lost inside a pipeline.
    """

    def __init__(
        self,
        targets: dict[str, WebhookTarget],
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        resolve: Resolver = socket.getaddrinfo,
        max_in_flight_per_subscription: int = 4,
        breaker_threshold: int = 5,
        breaker_cooldown_seconds: float = 30.0,
        max_workers: int | None = None,
    ) -> None:
        if max_in_flight_per_subscription < 1 or breaker_threshold < 1:
            raise ValueError("max_in_flight_per_subscription and breaker_threshold must be at least 1")
        mismatched = sorted(name for name, t in targets.items() if name != t.subscription)
        if mismatched:
            raise ValueError(f"targets must be keyed by their subscription id: {', '.join(mismatched)}")
        self._clock = clock  # monotonic: backoff, budgets, breaker, latency
        self._sleep = sleep
        self._wall_clock = wall_clock  # epoch seconds: only the webhook-timestamp and Retry-After dates
        self._rng = rng or random.Random()
        self._policy = policy
        self._resolve = resolve
        self._max_in_flight = max_in_flight_per_subscription
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown = breaker_cooldown_seconds
        self._lanes = {
            name: _Lane(target=t, signer=Webhook(t.secret.get_secret_value())) for name, t in targets.items()
        }
        # Enough workers for every subscription's full in-flight allowance, so a slow subscription can
        # never take the threads another one needs (the pool starts threads only as work arrives).
        workers = max_workers or max_in_flight_per_subscription * max(1, len(targets))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        # One keep-alive client for all targets; redirects are not followed (a 3xx could point at an
        # internal address) and proxy/.netrc settings from the environment are ignored for the same reason.
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
            timeout=httpx.Timeout(15.0, connect=_CONNECT_TIMEOUT),
        )
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)  # a job became final
        self._wake = threading.Condition(self._lock)  # the retry heap got an entry, or we are closing
        self._heap: list[tuple[float, int, int, _Job]] = []
        self._tiebreak = itertools.count()
        self._seq = 0
        self._open: dict[int, _Job] = {}  # seq → unfinished job; insertion order = seq order
        self._results: dict[int, DeliveryResult] = {}
        self._closed = False
        self._scheduler = threading.Thread(target=self._run_scheduler, name="webhook-scheduler", daemon=True)
        self._scheduler.start()

    def __enter__(self) -> WebhookDeliverer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # public API

    def submit(self, alert: Alert, order_key: str | None = None) -> None:
        """Queue ``alert`` for delivery to its subscription's target; returns at once."""
        try:
            body, failure = build_payload(alert).decode("utf-8"), None
        except PayloadTooLarge as exc:
            body, failure = "", ("payload_too_large", str(exc))
        request = WebhookRequest(
            subscription=alert.subscription, webhook_id=alert.id, alert_id=alert.id, body=body, order_key=order_key
        )
        self._enqueue(request, failure)

    def submit_request(self, request: WebhookRequest) -> None:
        """Queue a prepared request (redelivery): same webhook-id and body, fresh timestamp and signature."""
        self._enqueue(request, None)

    def drain(self, timeout: float | None = None) -> list[DeliveryResult]:
        """Wait for every alert submitted so far; their results, in submission order.

        ``timeout`` bounds the wait for queued and scheduled alerts (real seconds, the caller's
        budget): at the deadline those become ``drain_timeout`` dead letters; requests already on
        the wire are waited for (they end within their request timeout).
        """
        with self._lock:
            upto = self._seq
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._pending_before(upto):
                if deadline is None:
                    self._done.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._abandon(upto, "drain_timeout")
                    deadline = None
                    continue
                self._done.wait(remaining)
            results = [self._results.pop(seq) for seq in sorted(s for s in self._results if s < upto)]
        _record_metrics(results)
        return results

    def close(self) -> list[DeliveryResult]:
        """Stop: unfinished alerts become ``cancelled`` dead letters; returns results never drained."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            self._abandon(self._seq, "cancelled")
            while self._open:  # only requests on the wire are left; they end within their timeout
                self._done.wait()
            leftovers = [self._results.pop(seq) for seq in sorted(self._results)]
            self._wake.notify_all()
        self._scheduler.join()
        self._pool.shutdown(wait=True)
        self._client.close()
        if leftovers:
            logger.warning("webhook deliverer closed with %d results never drained", len(leftovers))
        _record_metrics(leftovers)
        return leftovers

    # scheduling (all under self._lock)

    def _enqueue(self, request: WebhookRequest, failure: tuple[str, str] | None) -> None:
        with self._lock:
            if self._closed:
                raise DelivererClosed("webhook deliverer is closed")
            lane = self._lanes.get(request.subscription)
            job = _Job(seq=self._seq, request=request, lane=lane, submitted_at=self._clock())
            self._seq += 1
            self._open[job.seq] = job
            if lane is None:
                failure = ("unknown_subscription", f"no webhook target for subscription {request.subscription!r}")
            if failure is not None:
                job.last_error = failure[1]
                self._finalize(job, "dead_letter", failure[0])
                return
            key = request.order_key
            if key is not None:
                chain = lane.chains.setdefault(key, deque())
                chain.append(job)
                if len(chain) > 1:
                    return  # waits for its predecessor to finish
            lane.ready.append(job)
            self._pump(lane)

    def _pending_before(self, upto: int) -> bool:
        return bool(self._open) and next(iter(self._open)) < upto

    def _blocked(self, lane: _Lane, now: float) -> str | None:
        if lane.disabled:
            return "subscription_disabled"
        if lane.open_until is not None and now < lane.open_until:
            return "endpoint_down"
        return None

    def _pump(self, lane: _Lane) -> None:
        """Start what may start: respects the in-flight limit, the breaker and the disabled flag."""
        now = self._clock()
        while lane.ready:
            job = lane.ready[0]
            if job.final:
                lane.ready.popleft()
                continue
            blocked = self._blocked(lane, now)
            if blocked is not None:
                lane.ready.popleft()
                self._finalize(job, "dead_letter", blocked)
                continue
            if lane.open_until is not None:  # half-open: a single probe decides
                if lane.probe is not None:
                    return
                lane.probe = job
            elif lane.in_flight >= self._max_in_flight:
                return
            lane.ready.popleft()
            job.in_flight = True
            lane.in_flight += 1
            self._pool.submit(self._attempt, job)

    def _schedule_retry(self, job: _Job, retry_after: float | None, now: float) -> None:
        lane = job.lane
        assert lane is not None
        blocked = job.abandoned or self._blocked(lane, now)
        if blocked is not None:
            self._finalize(job, "dead_letter", blocked)
            return
        if job.attempts >= lane.target.max_attempts:
            self._finalize(job, "dead_letter", "exhausted")
            return
        delay = next_delay(job.attempts, retry_after, self._rng, self._policy)
        started = job.first_attempt_at if job.first_attempt_at is not None else now
        if now + delay - started > lane.target.retry_budget_seconds:
            job.last_error = (
                f"{job.last_error or 'failed'} (retry budget of {lane.target.retry_budget_seconds:g}s spent)"
            )
            self._finalize(job, "dead_letter", "exhausted")
            return
        job.token += 1
        heapq.heappush(self._heap, (now + delay, next(self._tiebreak), job.token, job))
        lane.scheduled.add(job)
        self._wake.notify()

    def _sweep(self, lane: _Lane, reason: str) -> None:
        """Dead-letter every job of ``lane`` that is not on the wire (queued, waiting in order, scheduled)."""
        for job in [j for j in self._open.values() if j.lane is lane and not j.in_flight]:
            self._finalize(job, "dead_letter", reason)

    def _abandon(self, upto: int, reason: str) -> None:
        for job in list(self._open.values()):
            if job.seq >= upto:
                break
            job.abandoned = reason
            if not job.in_flight:
                self._finalize(job, "dead_letter", reason)
        for lane in self._lanes.values():
            self._pump(lane)

    def _finalize(self, job: _Job, outcome: Outcome, reason: str | None) -> None:
        job.final = True
        job.token += 1
        lane = job.lane
        if lane is not None:
            lane.scheduled.discard(job)
            self._release_chain(lane, job)
        request = job.request
        dead = outcome == "dead_letter"
        headers = None
        if dead and lane is not None:
            # Never sent (breaker, refusal...): record the request as it would have gone out.
            headers = job.last_headers or signed_headers(
                request.webhook_id, request.body, lane.signer, int(self._wall_clock())
            )
        self._results[job.seq] = DeliveryResult(
            alert_id=request.alert_id,
            subscription=request.subscription,
            webhook_id=request.webhook_id,
            outcome=outcome,
            reason=reason,
            attempts=job.attempts,
            last_status=job.last_status,
            last_error=job.last_error,
            latency_seconds=max(0.0, self._clock() - job.submitted_at),
            order_key=request.order_key,
            url=lane.target.url if dead and lane is not None else None,
            headers=headers,
            body=request.body if dead else None,
            attempt_log=list(job.log),
        )
        del self._open[job.seq]
        self._done.notify_all()

    def _release_chain(self, lane: _Lane, job: _Job) -> None:
        key = job.request.order_key
        chain = lane.chains.get(key) if key is not None else None
        if not chain or job not in chain:
            return
        was_head = chain[0] is job
        chain.remove(job)
        if not chain:
            del lane.chains[key]  # type: ignore[arg-type]
        elif was_head:
            # The next alert of the story goes even if this one dead-lettered: holding it would stall
            # the story; the dead letter can be redelivered.
            lane.ready.append(chain[0])

    def _settle(self, job: _Job, out: _Outcome) -> None:
        """Decide what an attempt means: final result, retry, breaker, disable."""
        lane = job.lane
        assert lane is not None
        now = self._clock()
        job.in_flight = False
        lane.in_flight -= 1
        was_probe = lane.probe is job
        if was_probe:
            lane.probe = None
        if out.headers is not None:
            job.last_headers = out.headers
        if out.sent:
            job.attempts += 1
            if job.first_attempt_at is None:
                job.first_attempt_at = out.started
            job.last_status = out.status
            job.log.append(
                AttemptRecord(
                    attempt=job.attempts,
                    at_seconds=round(out.started - job.submitted_at, 3),
                    status=out.status,
                    error=out.error,
                )
            )
        job.last_error = out.error or out.refused or out.internal

        if out.refused is not None:
            self._finalize(job, "dead_letter", "target_refused")
        elif out.internal is not None:
            self._finalize(job, "dead_letter", "internal_error")
        elif out.status is not None:
            self._endpoint_up(lane)
            verdict = classify_status(out.status)
            if verdict == "delivered":
                self._finalize(job, "delivered", None)
            elif verdict == "disabled":
                if not lane.disabled:
                    lane.disabled = True
                    logger.warning(
                        "webhook subscription %r disabled: %s answered 410 Gone; its alerts now go to dead "
                        "letters (reason subscription_disabled) until the deliverer is restarted",
                        lane.target.subscription,
                        lane.target.host,
                    )
                self._finalize(job, "dead_letter", "subscription_disabled")
                self._sweep(lane, "subscription_disabled")
            elif verdict == "reject":
                self._finalize(job, "dead_letter", "non_retryable_status")
            else:
                self._schedule_retry(job, out.retry_after, now)
        elif out.endpoint_down:
            lane.consecutive_down += 1
            if was_probe or lane.consecutive_down >= self._breaker_threshold or self._blocked(lane, now):
                self._trip(lane, now, out.error)
                can_retry = job.attempts < lane.target.max_attempts
                self._finalize(job, "dead_letter", job.abandoned or ("endpoint_down" if can_retry else "exhausted"))
                self._sweep(lane, "endpoint_down")
            else:
                self._schedule_retry(job, None, now)
        else:
            self._schedule_retry(job, None, now)
        self._pump(lane)

    def _trip(self, lane: _Lane, now: float, error: str | None) -> None:
        if lane.open_until is not None and now < lane.open_until:
            return  # already open: more failures of the same outage do not extend it
        lane.open_until = now + self._breaker_cooldown
        logger.warning(
            "webhook subscription %r: %s is down after %d consecutive failures (%s); alerts go to dead letters "
            "(reason endpoint_down) for %gs, then one probe",
            lane.target.subscription,
            lane.target.host,
            lane.consecutive_down,
            error or "no answer",
            self._breaker_cooldown,
        )

    def _endpoint_up(self, lane: _Lane) -> None:
        lane.consecutive_down = 0
        if lane.open_until is not None:
            lane.open_until = None
            logger.info("webhook subscription %r: %s answers again", lane.target.subscription, lane.target.host)

    def _run_scheduler(self) -> None:
        """Moves due retries back to their lane's queue. Sleeps in short ticks so the clock is injectable."""
        while True:
            with self._lock:
                if self._closed and not self._open:
                    return
                now = self._clock()
                due: list[_Lane] = []
                while self._heap and (self._heap[0][0] <= now or self._stale(self._heap[0])):
                    _, _, token, job = heapq.heappop(self._heap)
                    if self._stale((0.0, 0, token, job)) or job.lane is None:
                        continue
                    job.lane.scheduled.discard(job)
                    job.lane.ready.append(job)
                    if job.lane not in due:
                        due.append(job.lane)
                for lane in due:
                    self._pump(lane)
                if not self._heap:
                    self._wake.wait()
                    continue
                delay = self._heap[0][0] - now
            self._sleep(min(max(delay, 0.0), _SCHEDULER_TICK))

    @staticmethod
    def _stale(entry: tuple[float, int, int, _Job]) -> bool:
        _, _, token, job = entry
        return job.final or token != job.token

    # I/O (worker threads, no lock held)

    def _attempt(self, job: _Job) -> None:
        try:
            out = self._send(job)
        except Exception as exc:  # a bug must not lose the alert or hang drain(): it becomes a dead letter
            logger.error(
                "webhook attempt for alert %s failed unexpectedly: %s", job.request.alert_id, type(exc).__name__
            )
            out = _Outcome(headers=None, started=self._clock(), internal=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._settle(job, out)

    def _send(self, job: _Job) -> _Outcome:
        lane = job.lane
        assert lane is not None
        target, request = lane.target, job.request
        headers = signed_headers(request.webhook_id, request.body, lane.signer, int(self._wall_clock()))
        started = self._clock()
        url = httpx.URL(target.url)
        send_headers = dict(headers)
        extensions: dict[str, Any] = {}
        if not target.allow_private_targets:
            try:
                addresses = resolve_target(target.url, resolve=self._resolve)
            except TargetRefused as exc:
                return _Outcome(headers=headers, started=started, refused=str(exc))
            except OSError as exc:  # DNS failure: as unreachable as a refused connection, and an attempt
                return _Outcome(headers=headers, started=started, sent=True, error=f"DNS: {exc}", endpoint_down=True)
            # Connect to the address we checked, not to a second lookup that a rebinding DNS server
            # could answer differently; Host and TLS SNI/certificate checks keep the real name.
            send_headers["host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
            url = url.copy_with(host=addresses[0])
        timeout = httpx.Timeout(target.timeout_seconds, connect=min(target.timeout_seconds, _CONNECT_TIMEOUT))
        try:
            with self._client.stream(
                "POST",
                url,
                content=request.body.encode("utf-8"),
                headers=send_headers,
                timeout=timeout,
                extensions=extensions,
            ) as response:
                status = response.status_code
                retry_after = parse_retry_after(response.headers.get("retry-after"), self._wall_clock())
                snippet = b"" if 200 <= status < 300 else _read_snippet(response)
        except httpx.TimeoutException as exc:
            return _Outcome(
                headers=headers, started=started, sent=True, error=_describe(exc, target), endpoint_down=True
            )
        except httpx.ConnectError as exc:
            return _Outcome(
                headers=headers, started=started, sent=True, error=_describe(exc, target), endpoint_down=True
            )
        except httpx.TransportError as exc:  # reset mid-answer, protocol errors: reachable but flaky
            return _Outcome(headers=headers, started=started, sent=True, error=_describe(exc, target))
        error = None
        if not 200 <= status < 300:
            text = snippet.decode("utf-8", "replace").strip()
            error = f"HTTP {status}" + (f": {text[:200]}" if text else "")
        return _Outcome(
            headers=headers, started=started, sent=True, status=status, error=error, retry_after=retry_after
        )


def _read_snippet(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _SNIPPET_BYTES:
            break
    return b"".join(chunks)[:_SNIPPET_BYTES]


def _describe(exc: httpx.TransportError, target: WebhookTarget) -> str:
    kind = type(exc).__name__
    text = str(exc) or "no detail"
    if isinstance(exc, httpx.TimeoutException):
        text = f"no answer within {target.timeout_seconds:g}s ({text})"
    return f"{kind}: {text}"


def _record_metrics(results: list[DeliveryResult]) -> None:
    # Label values are bounded: "delivered" or a dead-letter reason from the fixed set in the module
    # docstring. Never URLs, hosts or secrets. The deliverer counts its own dead letters (the
    # producer counts, as the replay source does), so the Beam adapter must not count them again.
    try:
        _record(results)
    except KeyError as exc:  # a metric declaration out of step must not cost the delivery results
        logger.error("webhook metrics not recorded: %s", exc)


def _record(results: list[DeliveryResult]) -> None:
    for r in results:
        metrics.inc("webhook_deliveries", outcome="delivered" if r.outcome == "delivered" else r.reason or "unknown")
        if r.attempts:
            metrics.inc("webhook_attempts", r.attempts)
            first_attempt = r.attempt_log[0].at_seconds if r.attempt_log else 0.0
            metrics.observe("webhook_delivery_seconds", max(0.0, r.latency_seconds - first_attempt))
        if r.outcome == "dead_letter":
            metrics.inc("dead_letters", stage=DELIVERY_STAGE)


def redeliver(records: Iterable[DeadLetter], deliverer: WebhookDeliverer) -> list[DeliveryResult]:
    """Re-send delivery dead letters with their original webhook-id and body (fresh timestamp/signature).

    Records from other stages (bad input files and the like) are skipped. Uses ``deliverer.drain()``,
    so the results include anything else submitted to that deliverer: give it a deliverer of its own.
    """
    for record in records:
        if record.stage != DELIVERY_STAGE:
            continue
        deliverer.submit_request(from_dead_letter(record))
    return deliverer.drain()
