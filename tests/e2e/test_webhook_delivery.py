"""Webhook delivery against real HTTP servers on 127.0.0.1: retries, breaker, ordering, redelivery.

Every scenario ends with assert_none_lost: each alert has exactly one result, and every delivered
one was verified and recorded by a receiver. Backoff is shortened (FAST) except where the default
policy is the point of the test.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from alerts.receiver import make_receiver
from alerts.webhooks import (
    RetryPolicy,
    WebhookDeliverer,
    build_payload,
    redeliver,
    signed_headers,
    to_dead_letter,
)
from tests.conftest import ROOT
from tests.webhook_servers import (
    SECRET,
    Reply,
    ScriptedReceiver,
    assert_none_lost,
    closed_port,
    make_alert,
    serving,
    target,
)

FAST = RetryPolicy(base_delay_seconds=0.02, max_delay_seconds=0.1)


def run(deliverer: WebhookDeliverer, alerts, order_keys=None) -> list:
    for n, alert in enumerate(alerts):
        deliverer.submit(alert, order_keys[n] if order_keys else None)
    return deliverer.drain(timeout=60)


def test_healthy_receiver_verifies_records_and_echoes_every_alert(tmp_path):
    out, echo = tmp_path / "received.jsonl", StringIO()
    alerts = [make_alert(n) for n in range(12)]
    with serving(make_receiver("127.0.0.1", 0, SECRET, out, echo)) as server:
        with WebhookDeliverer({"desk": target("desk", server.url + "hook")}, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        assert_none_lost(alerts, results, [server])
    assert [r.alert_id for r in results] == [a.id for a in alerts]  # submission order
    assert all(r.outcome == "delivered" and r.attempts == 1 and r.body is None for r in results)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted(build_payload(a).decode() for a in alerts)
    echoed = echo.getvalue().splitlines()
    assert len(echoed) == 12 and all(line.startswith("alert.item [spying] Alert ") for line in echoed)


def test_receiver_rejects_bad_and_stale_signatures_and_dedupes():
    body = build_payload(make_alert(1))
    with serving(make_receiver("127.0.0.1", 0, SECRET, None, None)) as server, httpx.Client() as client:
        now = int(time.time())

        def post(headers, content=body):
            return client.post(server.url, content=content, headers=headers).status_code

        good = signed_headers("alrt_x", body, Webhook(SECRET), now)
        assert post(signed_headers("alrt_x", body, Webhook("whsec_" + "B" * 32), now)) == 401
        assert post(signed_headers("alrt_x", body, Webhook(SECRET), now - 600)) == 401  # stale
        assert post(good, body + b" ") == 401  # tampered
        assert post({"content-type": "application/json"}) == 401  # unsigned
        assert post(good) == 200
        assert post(signed_headers("alrt_x", body, Webhook(SECRET), now + 1)) == 200  # a retry
        assert client.get(server.url).status_code == 405
        with server.lock:
            assert (server.received_ids, server.duplicates, server.rejected) == (["alrt_x"], 1, 4)


def test_503_for_the_first_two_attempts_is_retried_with_the_same_webhook_id():
    alerts = [make_alert(n) for n in range(6)]
    flaky = ScriptedReceiver(behaviour=lambda wid, n: Reply(503) if n <= 2 else None)
    with serving(flaky) as server:
        with WebhookDeliverer({"desk": target("desk", server.url)}, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        delivered, _ = assert_none_lost(alerts, results, [server])
    assert delivered == {a.id for a in alerts}
    assert all(r.attempts == 3 for r in results)
    assert {wid: len(times) for wid, times in server.arrivals.items()} == {a.id: 3 for a in alerts}
    assert sorted(server.received_ids) == sorted(a.id for a in alerts)


def test_lost_acknowledgements_are_deduped_by_webhook_id():
    # The receiver processes the alert, then answers 503 (as if its answer got lost): the retry is a
    # duplicate that it acknowledges without recording twice.
    alerts = [make_alert(n) for n in range(5)]
    lossy = ScriptedReceiver(behaviour=lambda wid, n: Reply(503, record=True) if n == 1 else None)
    with serving(lossy) as server:
        with WebhookDeliverer({"desk": target("desk", server.url)}, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        assert_none_lost(alerts, results, [server])
    assert all(r.outcome == "delivered" and r.attempts == 2 for r in results)
    assert len(server.received_ids) == 5 and server.duplicates == 5


def test_always_500_dead_letters_then_redelivery_after_recovery():
    alerts = [make_alert(n) for n in range(4)]
    state = {"down": True}
    broken = ScriptedReceiver(behaviour=lambda wid, n: Reply(500) if state["down"] else None)
    with serving(broken) as server:
        targets = {"desk": target("desk", server.url, max_attempts=3)}
        with WebhookDeliverer(targets, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        _, dead = assert_none_lost(alerts, results, [server])
        assert dead == {a.id for a in alerts} and server.received_ids == []
        assert all((r.reason, r.attempts, r.last_status) == ("exhausted", 3, 500) for r in results)
        records = [to_dead_letter(r) for r in results]
        assert all(SECRET.removeprefix("whsec_") not in rec.detail for rec in records)

        state["down"] = False  # the subscriber fixed their endpoint; a fresh deliverer, as a CLI would use
        records = [type(rec).model_validate_json(rec.model_dump_json()) for rec in records]  # via JSONL
        with WebhookDeliverer(targets, policy=FAST) as deliverer:
            again = redeliver(records, deliverer)
        assert_none_lost(alerts, again, [server])
    assert all(r.outcome == "delivered" and r.attempts == 1 for r in again)
    assert sorted(r.webhook_id for r in again) == sorted(a.id for a in alerts)
    for alert in alerts:
        assert server.bodies[alert.id] == build_payload(alert)  # same body, byte for byte
        assert len(server.arrivals[alert.id]) == 4  # 3 failed + the redelivery, all with the same id


def test_429_retry_after_is_honoured():
    alerts = [make_alert(n) for n in range(3)]
    busy = ScriptedReceiver(behaviour=lambda wid, n: Reply(429, {"retry-after": "1"}) if n == 1 else None)
    with serving(busy) as server:
        with WebhookDeliverer({"desk": target("desk", server.url)}, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        assert_none_lost(alerts, results, [server])
    assert all(r.outcome == "delivered" and r.attempts == 2 for r in results)
    for alert in alerts:
        first, second = server.arrivals[alert.id]
        assert second - first >= 0.95  # FAST backoff alone would retry within 0.1 s


def test_a_hanging_receiver_times_out_and_is_retried():
    alerts = [make_alert(n) for n in range(2)]
    hung_forever = alerts[1].id
    hanging = ScriptedReceiver(behaviour=lambda wid, n: Reply(hang=True) if n == 1 or wid == hung_forever else None)
    started = time.monotonic()
    with serving(hanging) as server:
        targets = {"desk": target("desk", server.url, timeout_seconds=0.5, max_attempts=2)}
        with WebhookDeliverer(targets, policy=FAST) as deliverer:
            results = {r.alert_id: r for r in run(deliverer, alerts)}
        assert_none_lost(alerts, list(results.values()), [server])
    elapsed = time.monotonic() - started
    ok, stuck = results[alerts[0].id], results[hung_forever]
    assert (ok.outcome, ok.attempts) == ("delivered", 2)
    assert (stuck.outcome, stuck.reason, stuck.attempts, stuck.last_status) == ("dead_letter", "exhausted", 2, None)
    assert "ReadTimeout" in stuck.last_error and "0.5s" in stuck.last_error
    assert elapsed < 4


def test_410_disables_the_subscription(caplog):
    gone = ScriptedReceiver(behaviour=lambda wid, n: Reply(410))
    with serving(gone) as server, caplog.at_level(logging.WARNING, logger="alerts.webhooks"):
        with WebhookDeliverer({"desk": target("desk", server.url)}, policy=FAST) as deliverer:
            first = run(deliverer, [make_alert(0)])
            later_alerts = [make_alert(n) for n in range(1, 6)]
            later = run(deliverer, later_alerts)
        assert_none_lost([make_alert(0), *later_alerts], first + later, [server])
    assert (first[0].reason, first[0].attempts, first[0].last_status) == ("subscription_disabled", 1, 410)
    assert all((r.reason, r.attempts) == ("subscription_disabled", 0) for r in later)
    assert server.requests == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "'desk' disabled" in warning.getMessage() and "127.0.0.1" in warning.getMessage()


def test_connection_refused_opens_the_breaker_quickly_and_a_probe_closes_it():
    port = closed_port()
    alerts = [make_alert(n) for n in range(40)]
    targets = {"desk": target("desk", f"http://127.0.0.1:{port}/hook")}
    # Default backoff: without the breaker these 40 alerts would spend minutes in retries.
    with WebhookDeliverer(targets, breaker_cooldown_seconds=0.5) as deliverer:
        started = time.monotonic()
        results = run(deliverer, alerts)
        elapsed = time.monotonic() - started
        assert_none_lost(alerts, results, [])
        assert {r.reason for r in results} == {"endpoint_down"}
        assert sum(r.attempts for r in results) <= 8  # five failures trip it; at most a few more were on the wire
        assert sum(1 for r in results if r.attempts == 0) >= 32
        assert elapsed < 3, elapsed
        assert "Connect" in next(r.last_error for r in results if r.attempts)

        # The endpoint comes back on the same port; after the cooldown one probe closes the breaker.
        with serving(ScriptedReceiver(port=port)) as server:
            time.sleep(0.6)
            back = [make_alert(n) for n in range(40, 46)]
            results = run(deliverer, back)
            assert_none_lost(back, results, [server])
    assert all(r.outcome == "delivered" for r in results)


def test_a_slow_receiver_gets_overlapping_requests_and_does_not_hold_up_others():
    slow_alerts = [make_alert(n, "slow") for n in range(8)]
    fast_alerts = [make_alert(n, "fast") for n in range(4)]
    with serving(ScriptedReceiver(delay=0.5)) as slow, serving(ScriptedReceiver()) as fast:
        targets = {"slow": target("slow", slow.url), "fast": target("fast", fast.url)}
        with WebhookDeliverer(targets, policy=FAST) as deliverer:
            started = time.monotonic()
            results = run(deliverer, slow_alerts + fast_alerts)
            elapsed = time.monotonic() - started
        assert_none_lost(slow_alerts + fast_alerts, results, [slow, fast])
    assert all(r.outcome == "delivered" for r in results)
    assert slow.max_in_flight > 1 and slow.max_in_flight <= 4
    assert elapsed < 2.5  # 8 x 0.5 s one at a time would be 4 s; 4 at a time is about 1 s
    fast_latency = max(r.latency_seconds for r in results if r.subscription == "fast")
    assert fast_latency < 0.4, fast_latency


def test_alerts_with_the_same_order_key_arrive_in_submission_order():
    # Story s1: item, then two updates; the item's first attempt fails, so the updates must wait for it.
    alerts = [make_alert(n, kind="alert.item" if n in (0, 3) else "alert.updated") for n in range(8)]
    keys = ["s1", "s1", "s1", "s2", "s2", None, None, None]
    first_item = alerts[0].id
    receiver = ScriptedReceiver(
        delay=0.05, behaviour=lambda wid, n: Reply(503) if wid == first_item and n == 1 else None
    )
    with serving(receiver) as server:
        with WebhookDeliverer({"desk": target("desk", server.url)}, policy=FAST) as deliverer:
            results = run(deliverer, alerts, keys)
        assert_none_lost(alerts, results, [server])
    recorded = server.received_ids
    assert [i for i in recorded if i in {a.id for a in alerts[:3]}] == [a.id for a in alerts[:3]]
    assert [i for i in recorded if i in {a.id for a in alerts[3:5]}] == [a.id for a in alerts[3:5]]
    assert recorded.index(alerts[5].id) < recorded.index(alerts[1].id)  # unkeyed alerts do not wait for s1
    assert [r.order_key for r in results] == keys


def test_dead_port_and_flaky_receiver_finish_well_within_a_minute(capsys):
    """The replay's 14 items to two subscriptions: one endpoint is gone, one answers 503 twice per id.

    Default retry policy, timeouts and breaker: the dead endpoint must not cost minutes of retries,
    and the flaky one must get every alert, once.
    """
    dead_alerts = [make_alert(n, "dead") for n in range(14)]
    flaky_alerts = [make_alert(n, "flaky") for n in range(14)]
    flaky = ScriptedReceiver(behaviour=lambda wid, n: Reply(503) if n <= 2 else None)
    with serving(flaky) as server:
        targets = {
            "dead": target("dead", f"http://127.0.0.1:{closed_port()}/hook"),
            "flaky": target("flaky", server.url),
        }
        started = time.monotonic()
        with WebhookDeliverer(targets) as deliverer:
            results = run(deliverer, [a for pair in zip(dead_alerts, flaky_alerts, strict=True) for a in pair])
        elapsed = time.monotonic() - started
        delivered, dead = assert_none_lost(dead_alerts + flaky_alerts, results, [server])
    with capsys.disabled():
        print(f"\n[webhook mirror] 28 alerts (14 to a dead port, 14 to a 503x2 receiver) finished in {elapsed:.2f}s")
    assert delivered == {a.id for a in flaky_alerts}
    assert dead == {a.id for a in dead_alerts}
    assert {r.reason for r in results if r.subscription == "dead"} <= {"endpoint_down", "exhausted"}
    assert all(r.attempts == 3 for r in results if r.subscription == "flaky")
    assert elapsed < 60


def test_run_receiver_serves_until_ctrl_c(tmp_path):
    out = tmp_path / "received.jsonl"
    code = (
        "import sys; from pathlib import Path; from alerts.receiver import run_receiver; "
        f"run_receiver('127.0.0.1', 0, {SECRET!r}, Path({str(out)!r}), sys.stdout)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        banner = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in banner, banner
        url = banner.split(" on ", 1)[1].split()[0]
        alerts = [make_alert(n) for n in range(3)]
        with WebhookDeliverer({"desk": target("desk", url)}, policy=FAST) as deliverer:
            results = run(deliverer, alerts)
        assert all(r.outcome == "delivered" for r in results)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "3 alerts received, 0 duplicates, 0 rejected" in stderr and "Traceback" not in stderr
    assert len(stdout.splitlines()) == 3
    recorded = [json.loads(line)["data"]["id"] for line in Path(out).read_text().splitlines()]
    assert sorted(recorded) == sorted(a.id for a in alerts)


@pytest.fixture(autouse=True)
def _no_stray_threads():
    """Deliverers and servers clean up after themselves: no webhook threads outlive a test."""
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        stray = [t.name for t in threading.enumerate() if t.name.startswith("webhook")]
        if not stray:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads left running: {stray}")
