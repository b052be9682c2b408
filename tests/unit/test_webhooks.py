"""Webhook delivery, pure parts and the deliverer over httpx.MockTransport (no sockets)."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from alerts import webhooks
from alerts.receiver import summary_line
from alerts.webhooks import (
    MAX_PAYLOAD_BYTES,
    USER_AGENT,
    DelivererClosed,
    DeliveryResult,
    RedeliveryError,
    RetryPolicy,
    TargetRefused,
    WebhookDeliverer,
    WebhookError,
    WebhookTarget,
    build_payload,
    classify_status,
    from_dead_letter,
    next_delay,
    parse_retry_after,
    redeliver,
    refusal_reason,
    resolve_target,
    signed_headers,
    to_dead_letter,
)
from pipelines import __version__, metrics
from pipelines.model import DeadLetter
from tests.webhook_servers import SECRET, WHEN, make_alert, target

FAST = RetryPolicy(base_delay_seconds=0.001, max_delay_seconds=0.005)
SECRET_KEY_PART = SECRET.removeprefix("whsec_")


class FakeClock:
    """Monotonic time that only moves when told to, or when the deliverer's scheduler sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        time.sleep(0)


def resolver(*addresses: str):
    def resolve(host, port, **_kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return resolve


def mock(handler) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    lock = threading.Lock()

    def record(request: httpx.Request) -> httpx.Response:
        with lock:
            seen.append(request)
        return handler(request)

    return httpx.MockTransport(record), seen


def deliver(alerts, handler, *, policy=FAST, **target_overrides) -> tuple[list[DeliveryResult], list[httpx.Request]]:
    transport, seen = mock(handler)
    targets = {"desk": target("desk", "http://127.0.0.1:9/hook", **target_overrides)}
    with WebhookDeliverer(targets, transport=transport, policy=policy) as deliverer:
        for alert in alerts:
            deliverer.submit(alert)
        return deliverer.drain(timeout=10), seen


# --- payload ----------------------------------------------------------------------------------------


def test_payload_has_type_rfc3339_timestamp_and_alert_data():
    alert = make_alert(1, story_id="story-1")
    payload = json.loads(build_payload(alert))
    assert payload["type"] == "alert.item"
    assert payload["timestamp"] == "2025-01-02T09:30:01Z"
    data = payload["data"]
    assert {"id", "subscription", "topics", "scores", "story_id", "reason", "details", "items", "truncated"} <= set(
        data
    )
    assert data["id"] == alert.id and data["story_id"] == "story-1" and data["truncated"] is False
    (item,) = data["items"]
    assert set(item) == {"id", "title", "url", "source", "published", "matches"}
    assert item["published"] == "2025-01-02T09:30:00Z"
    match = item["matches"][0]
    assert match["topic"] == "spying" and match["score"] == 0.8
    assert match["evidence"][0] == {
        "term": "spy*", "text": "spies", "field": "body", "start": 0, "end": 5, "rule": "term", "weight": 0.0,
    }  # fmt: skip


def test_payload_is_deterministic_bytes():
    assert build_payload(make_alert(7)) == build_payload(make_alert(7))
    assert build_payload(make_alert(7)) != build_payload(make_alert(8))


def test_oversized_payload_keeps_best_evidence_then_first_items_and_says_so():
    alert = make_alert(1, items=150, evidence=60)
    assert len(json.dumps(alert.model_dump(mode="json"))) > 5 * MAX_PAYLOAD_BYTES
    body = build_payload(alert)
    assert len(body) < MAX_PAYLOAD_BYTES
    data = json.loads(body)["data"]
    assert data["truncated"] is True and data["item_count"] == 150
    assert 1 <= len(data["items"]) <= 10
    assert [i["id"] for i in data["items"]] == [f"item1_{i}" for i in range(len(data["items"]))]
    weights = [e["weight"] for e in data["items"][0]["matches"][0]["evidence"]]
    assert len(weights) <= 3 and weights == sorted(weights, reverse=True) and (not weights or weights[0] == 59)
    assert build_payload(alert) == body


def test_evidence_is_trimmed_before_items():
    alert = make_alert(1, items=3, evidence=200)
    data = json.loads(build_payload(alert))["data"]
    assert data["truncated"] is True and len(data["items"]) == 3
    assert all(len(i["matches"][0]["evidence"]) <= 3 for i in data["items"])


def test_huge_free_text_is_clipped_to_fit():
    alert = make_alert(1, items=5, title="x" * 50_000).model_copy(update={"reason": "r" * 50_000})
    body = build_payload(alert)
    assert len(body) < MAX_PAYLOAD_BYTES and json.loads(body)["data"]["truncated"] is True


# --- signing ----------------------------------------------------------------------------------------


def test_signature_verifies_with_the_library_and_headers_are_complete():
    body = build_payload(make_alert(1))
    now = int(time.time())
    headers = signed_headers("alrt_1", body, Webhook(SECRET), now)
    assert headers["webhook-id"] == "alrt_1" and headers["webhook-timestamp"] == str(now)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT == f"newsmon/{__version__}"
    assert Webhook(SECRET).verify(body, headers)["data"]["id"] == "alrt_desk_alert.item_0001"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    stale = signed_headers("alrt_1", body, Webhook(SECRET), now - 3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, stale)


# --- retry policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 12])
def test_next_delay_is_full_jitter_within_the_exponential_ceiling(attempt):
    rng = random.Random(attempt)
    ceiling = min(16.0, 2 ** (attempt - 1))
    delays = [next_delay(attempt, None, rng) for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.9 * ceiling and min(delays) < 0.1 * ceiling  # spread over the whole range


def test_default_schedule_fits_about_two_minutes():
    target = WebhookTarget(subscription="s", url="https://example.org/h", secret=SECRET)
    policy = webhooks.DEFAULT_RETRY_POLICY
    waits = [min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** (n - 1)) for n in range(1, 6)]
    worst = target.max_attempts * target.timeout_seconds + sum(waits)
    assert target.max_attempts == 6 and sum(waits) == 31 and worst <= 125
    assert target.retry_budget_seconds == 120


def test_retry_after_is_a_floor_and_is_clamped():
    rng = random.Random(1)
    assert all(next_delay(1, 7.0, rng) >= 7.0 for _ in range(100))
    assert next_delay(1, 3600.0, rng) == 60.0
    assert 0 <= next_delay(1, 0.0, rng) <= 1.0


def test_parse_retry_after_seconds_and_http_dates():
    now = datetime(2025, 1, 2, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 3 ", now) == 3.0
    later = format_datetime(datetime(2025, 1, 2, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after("Thu, 02 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "delivered"), (204, "delivered"), (410, "disabled"), (408, "retry"), (429, "retry"), (500, "retry"),
     (502, "retry"), (503, "retry"), (504, "retry"), (400, "reject"), (401, "reject"), (404, "reject"),
     (301, "reject")],
)  # fmt: skip
def test_classify_status(status, verdict):
    assert classify_status(status) == verdict


# --- SSRF guard -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.5", "172.16.0.1", "0.0.0.0", "100.64.0.1",
     "224.0.0.1", "::1", "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254"],
)  # fmt: skip
def test_ssrf_guard_refuses_internal_addresses_unless_allowed(address):
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:8080/hook"
    assert refusal_reason(address)
    with pytest.raises(TargetRefused):
        resolve_target(url, resolve=socket.getaddrinfo)
    assert resolve_target(url, allow_private=True, resolve=socket.getaddrinfo)


def test_ssrf_guard_names_cloud_metadata_and_allows_public_addresses():
    assert "cloud metadata" in refusal_reason("169.254.169.254")
    assert "cloud metadata" in refusal_reason("fd00:ec2::254")
    assert refusal_reason("93.184.216.34") is None and refusal_reason("2606:4700::1111") is None
    assert resolve_target("https://hooks.example.com/x", resolve=resolver("93.184.216.34")) == ["93.184.216.34"]


def test_ssrf_guard_refuses_a_name_with_any_internal_address():
    with pytest.raises(TargetRefused, match=r"hooks\.example\.com resolves to 10\.0\.0\.7 is private"):
        resolve_target("https://hooks.example.com/x", resolve=resolver("93.184.216.34", "10.0.0.7"))


def test_refused_target_is_a_dead_letter_without_a_request():
    transport, seen = mock(lambda r: httpx.Response(200))
    targets = {"desk": target("desk", "http://hooks.example.com/x", allow_private_targets=False)}
    with WebhookDeliverer(targets, transport=transport, resolve=resolver("169.254.169.254")) as deliverer:
        deliverer.submit(make_alert(1))
        (result,) = deliverer.drain(timeout=5)
    assert seen == []
    assert (result.outcome, result.reason, result.attempts) == ("dead_letter", "target_refused", 0)
    assert "cloud metadata" in result.last_error and result.body and result.headers["webhook-signature"]


def test_public_target_is_pinned_to_the_checked_address_with_host_and_sni_kept():
    transport, seen = mock(lambda r: httpx.Response(204))
    targets = {"desk": target("desk", "https://hooks.example.com:8443/x?k=1", allow_private_targets=False)}
    with WebhookDeliverer(targets, transport=transport, resolve=resolver("93.184.216.34")) as deliverer:
        deliverer.submit(make_alert(1))
        (result,) = deliverer.drain(timeout=5)
    assert result.outcome == "delivered"
    (request,) = seen
    assert request.url.host == "93.184.216.34" and request.url.port == 8443 and request.url.query == b"k=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


def test_dns_failure_counts_as_endpoint_down():
    def broken(host, port, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    transport, seen = mock(lambda r: httpx.Response(200))
    targets = {"desk": target("desk", "https://nowhere.invalid/x", allow_private_targets=False)}
    with WebhookDeliverer(targets, transport=transport, resolve=broken, policy=FAST, breaker_threshold=2) as d:
        for n in range(3):
            d.submit(make_alert(n))
        results = d.drain(timeout=5)
    assert seen == [] and {r.reason for r in results} == {"endpoint_down"}
    assert any("DNS" in (r.last_error or "") for r in results)


# --- configuration and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("ftp://example.org/x", SECRET, "http:// or https://"),
        ("https://user:pw@example.org/x", SECRET, "credentials"),
        ("https://example.org/x", "not-a-whsec-secret", "whsec_"),
        ("https://example.org/x", "whsec_a", "base64"),
    ],
)
def test_target_validation_never_echoes_the_secret(url, secret, message):
    with pytest.raises(ValidationError, match=message) as info:
        WebhookTarget(subscription="s", url=url, secret=secret)
    assert secret not in str(info.value)


def test_secret_never_appears_in_repr_results_or_dead_letters(caplog):
    caplog.set_level(logging.DEBUG)
    t = target("desk", "http://127.0.0.1:9/hook", max_attempts=2)
    for text in (repr(t), str(t), t.model_dump_json()):
        assert SECRET_KEY_PART not in text
    deliverer = WebhookDeliverer({"desk": t}, transport=mock(lambda r: httpx.Response(410))[0], policy=FAST)
    assert SECRET_KEY_PART not in repr(deliverer)
    deliverer.submit(make_alert(1))
    deliverer.submit(make_alert(2))
    results = deliverer.drain(timeout=5)
    deliverer.close()
    for result in results:
        record = to_dead_letter(result)
        assert SECRET_KEY_PART not in record.detail and SECRET_KEY_PART not in repr(result)
        assert json.loads(record.detail)["headers"]["webhook-signature"].startswith("v1,")
    assert SECRET_KEY_PART not in caplog.text


# --- the deliverer over MockTransport ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "reason", "attempts"),
    [
        (200, "delivered", None, 1),
        (202, "delivered", None, 1),
        (400, "dead_letter", "non_retryable_status", 1),
        (401, "dead_letter", "non_retryable_status", 1),
        (302, "dead_letter", "non_retryable_status", 1),
        (408, "dead_letter", "exhausted", 3),
        (429, "dead_letter", "exhausted", 3),
        (500, "dead_letter", "exhausted", 3),
        (503, "dead_letter", "exhausted", 3),
        (410, "dead_letter", "subscription_disabled", 1),
    ],
)
def test_status_handling(status, outcome, reason, attempts):
    (result,), seen = deliver([make_alert(1)], lambda r: httpx.Response(status, text="nope"), max_attempts=3)
    assert (result.outcome, result.reason, result.attempts, result.last_status) == (outcome, reason, attempts, status)
    assert len(seen) == attempts and len({r.headers["webhook-id"] for r in seen}) == 1
    if outcome == "dead_letter":
        assert (
            result.last_error.startswith(f"HTTP {status}")
            and [a.status for a in result.attempt_log] == [status] * attempts
        )


def test_retry_after_is_honoured_in_injected_time():
    clock = FakeClock()
    answers = iter([httpx.Response(429, headers={"retry-after": "30"}), httpx.Response(200)])
    stamps: list[float] = []

    def handler(request):
        stamps.append(clock())
        return next(answers)

    transport, _ = mock(handler)
    targets = {"desk": target("desk", "http://127.0.0.1:9/hook")}
    started = time.monotonic()
    with WebhookDeliverer(targets, transport=transport, clock=clock, sleep=clock.sleep, policy=FAST) as deliverer:
        deliverer.submit(make_alert(1))
        (result,) = deliverer.drain(timeout=10)
    assert result.outcome == "delivered" and result.attempts == 2
    assert 30.0 <= stamps[1] - stamps[0] < 30.2
    assert time.monotonic() - started < 5


def test_retry_budget_stops_retries():
    clock = FakeClock()
    transport, _ = mock(lambda r: httpx.Response(503, headers={"retry-after": "50"}))
    targets = {"desk": target("desk", "http://127.0.0.1:9/hook", retry_budget_seconds=120)}
    with WebhookDeliverer(targets, transport=transport, clock=clock, sleep=clock.sleep, policy=FAST) as deliverer:
        deliverer.submit(make_alert(1))
        (result,) = deliverer.drain(timeout=10)
    assert (result.reason, result.attempts) == ("exhausted", 3)  # at 0, 50, 100; 150 would pass the budget
    assert "retry budget of 120s spent" in result.last_error


def test_breaker_opens_probes_after_cooldown_and_closes_on_an_answer(caplog):
    clock = FakeClock()
    state = {"down": True}

    def handler(request):
        if state["down"]:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return httpx.Response(200)

    transport, seen = mock(handler)
    targets = {"desk": target("desk", "http://127.0.0.1:9/hook", max_attempts=3)}
    deliverer = WebhookDeliverer(
        targets, transport=transport, clock=clock, policy=FAST, breaker_threshold=3, breaker_cooldown_seconds=30
    )
    with deliverer, caplog.at_level(logging.WARNING):
        for n in range(3):  # the clock stands still, so no retry is ever due: three failures trip it
            deliverer.submit(make_alert(n))
        first = deliverer.drain(timeout=5)
        assert [(r.reason, r.attempts) for r in first] == [("endpoint_down", 1)] * 3
        assert len(seen) == 3

        for n in range(3, 6):  # open: no attempts at all
            deliverer.submit(make_alert(n))
        assert [(r.reason, r.attempts) for r in deliverer.drain(timeout=5)] == [("endpoint_down", 0)] * 3
        assert len(seen) == 3

        clock.advance(31)  # half-open: one probe; it fails, the queued one is dead-lettered without a try
        deliverer.submit(make_alert(6))
        deliverer.submit(make_alert(7))
        assert [(r.reason, r.attempts) for r in deliverer.drain(timeout=5)] == [
            ("endpoint_down", 1),
            ("endpoint_down", 0),
        ]
        assert len(seen) == 4

        clock.advance(31)
        state["down"] = False
        for n in range(8, 12):
            deliverer.submit(make_alert(n))
        assert [r.outcome for r in deliverer.drain(timeout=5)] == ["delivered"] * 4
    assert len(seen) == 8
    trips = [r for r in caplog.records if r.levelno == logging.WARNING and "is down" in r.getMessage()]
    assert len(trips) == 2  # one line per opening, not per alert


def test_http_errors_do_not_open_the_breaker():
    results, seen = deliver([make_alert(n) for n in range(8)], lambda r: httpx.Response(503), max_attempts=2)
    assert {r.reason for r in results} == {"exhausted"} and len(seen) == 16


def test_410_disables_the_subscription_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        results, seen = deliver([make_alert(n) for n in range(10)], lambda r: httpx.Response(410))
    assert {(r.outcome, r.reason) for r in results} == {("dead_letter", "subscription_disabled")}
    assert 1 <= len(seen) <= 4  # only what was already on the wire
    assert sum(r.attempts for r in results) == len(seen)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'desk' disabled" in warnings[0] and "410" in warnings[0]
    assert "/hook" not in warnings[0]  # host only: paths can carry tokens


def test_targets_must_be_keyed_by_subscription():
    with pytest.raises(ValueError, match="keyed by their subscription id: other"):
        WebhookDeliverer({"other": target("desk", "http://127.0.0.1:9/hook")})


def test_unknown_subscription_and_submit_after_close():
    transport, _ = mock(lambda r: httpx.Response(200))
    deliverer = WebhookDeliverer({}, transport=transport)
    deliverer.submit(make_alert(1, subscription="nobody"))
    (result,) = deliverer.drain()
    assert (result.outcome, result.reason, result.url) == ("dead_letter", "unknown_subscription", None)
    assert deliverer.close() == []
    with pytest.raises(DelivererClosed):
        deliverer.submit(make_alert(2))


def test_drain_timeout_dead_letters_what_is_still_waiting():
    transport, _ = mock(lambda r: httpx.Response(503, headers={"retry-after": "30"}))
    targets = {"desk": target("desk", "http://127.0.0.1:9/hook")}
    with WebhookDeliverer(targets, transport=transport) as deliverer:
        deliverer.submit(make_alert(1))
        started = time.monotonic()
        (result,) = deliverer.drain(timeout=0.3)
        assert time.monotonic() - started < 2
    assert (result.reason, result.attempts, result.last_status) == ("drain_timeout", 1, 503)


def test_close_cancels_and_returns_undrained_results():
    transport, _ = mock(lambda r: httpx.Response(503, headers={"retry-after": "30"}))
    deliverer = WebhookDeliverer({"desk": target("desk", "http://127.0.0.1:9/hook")}, transport=transport)
    deliverer.submit(make_alert(1))
    time.sleep(0.2)
    (result,) = deliverer.close()
    assert result.reason == "cancelled"


# --- dead letters and redelivery --------------------------------------------------------------------


def test_dead_letter_round_trip_keeps_id_body_and_order_key():
    result = DeliveryResult(
        alert_id="a1", subscription="desk", webhook_id="a1", outcome="dead_letter", reason="exhausted", attempts=6,
        last_status=500, url="https://example.org/h", headers={"webhook-id": "a1"}, body='{"x":1}', order_key="s1",
    )  # fmt: skip
    record = to_dead_letter(result)
    assert (record.stage, record.source, record.reason) == ("delivery", "desk", "exhausted")
    request = from_dead_letter(record)
    assert (request.webhook_id, request.body, request.order_key, request.subscription) == (
        "a1", '{"x":1}', "s1", "desk",
    )  # fmt: skip
    with pytest.raises(WebhookError):
        to_dead_letter(result.model_copy(update={"outcome": "delivered"}))


def test_redeliver_resends_same_id_and_body_with_a_fresh_signature():
    alert = make_alert(1)
    body = build_payload(alert).decode()
    old = signed_headers(alert.id, body, Webhook(SECRET), int(time.time()) - 3600)
    record = to_dead_letter(
        DeliveryResult(
            alert_id=alert.id, subscription="desk", webhook_id=alert.id, outcome="dead_letter", reason="exhausted",
            url="http://127.0.0.1:9/hook", headers=old, body=body,
        )
    )  # fmt: skip
    other = DeadLetter(stage="replay", source="seeds/x.txt", reason="binary_file")
    transport, seen = mock(lambda r: httpx.Response(200))
    with WebhookDeliverer({"desk": target("desk", "http://127.0.0.1:9/hook")}, transport=transport) as deliverer:
        (result,) = redeliver([other, record], deliverer)
    assert result.outcome == "delivered" and result.webhook_id == alert.id
    (request,) = seen
    assert request.content.decode() == body and request.headers["webhook-id"] == alert.id
    assert request.headers["webhook-timestamp"] != old["webhook-timestamp"]
    Webhook(SECRET).verify(request.content, dict(request.headers))


def test_redeliver_rejects_a_broken_delivery_record():
    transport, _ = mock(lambda r: httpx.Response(200))
    with WebhookDeliverer({}, transport=transport) as deliverer, pytest.raises(RedeliveryError):
        redeliver([DeadLetter(stage="delivery", source="desk", reason="exhausted", detail="{not json")], deliverer)


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_are_recorded_with_bounded_labels_only(monkeypatch):
    calls: list[tuple[str, int, dict[str, str]]] = []
    monkeypatch.setattr(webhooks.metrics, "inc", lambda name, n=1, **labels: calls.append((name, n, labels)))
    monkeypatch.setattr(webhooks.metrics, "observe", lambda name, value, **labels: calls.append((name, value, labels)))
    answers = iter([httpx.Response(503), httpx.Response(200)])
    results, _ = deliver([make_alert(1)], lambda r: next(answers))
    assert results[0].outcome == "delivered"
    assert ("webhook_deliveries", 1, {"outcome": "delivered"}) in calls
    assert ("webhook_attempts", 2, {}) in calls
    assert any(name == "webhook_delivery_seconds" for name, _, _ in calls)
    calls.clear()
    results, _ = deliver([make_alert(2)], lambda r: httpx.Response(400))
    assert ("webhook_deliveries", 1, {"outcome": "non_retryable_status"}) in calls
    assert ("dead_letters", 1, {"stage": "delivery"}) in calls
    for name, _, labels in calls:
        assert set(labels) == set(metrics.METRICS[name].labels)  # declared, with exactly these labels
        for value in labels.values():
            assert "://" not in value and "127.0.0.1" not in value and SECRET_KEY_PART not in value


# --- receiver helpers -------------------------------------------------------------------------------


def test_summary_line_is_one_clean_line():
    payload = json.loads(build_payload(make_alert(1, items=3, title="Spies\x1b[31m in\nLondon")))
    line = summary_line(payload)
    assert line == "alert.item [spying] Spies [31m in London (+2 more)"
    assert summary_line({"type": "feed.down", "data": {"topics": [], "items": [], "reason": "feed x down"}}) == (
        "feed.down [] feed x down"
    )


def test_payload_timestamp_is_event_time_not_send_time():
    alert = make_alert(1).model_copy(update={"timestamp": WHEN - timedelta(days=400)})
    assert json.loads(build_payload(alert))["timestamp"] == "2023-11-29T09:30:00Z"
