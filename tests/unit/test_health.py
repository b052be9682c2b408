"""Feed health alerts: down once after N failures, recovered once when it is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.health import FeedHealthTracker
from alerts.subscriptions import Subscription
from pipelines.sources.feeds import FeedHealth

T0 = datetime(2025, 5, 1, tzinfo=UTC)
SUBS = [Subscription(id="ops"), Subscription(id="items-only", kinds=["item"])]


def poll(n: int, outcome: str, failures: int) -> FeedHealth:
    return FeedHealth(feed_id="f1", url="https://feeds.example/rss", checked_at=T0 + timedelta(minutes=n),
                      outcome=outcome, http_status=503 if outcome == "http_error" else 200,
                      consecutive_failures=failures)  # fmt: skip


def test_down_after_n_failures_then_recovered_once():
    tracker = FeedHealthTracker(down_after=3)
    kinds = []
    for n, (outcome, failures) in enumerate(
        [("ok", 0), ("http_error", 1), ("timeout", 2), ("http_error", 3), ("http_error", 4), ("ok", 0), ("ok", 0)]
    ):
        state = tracker.to_state()
        tracker = FeedHealthTracker.from_state(state, down_after=3)  # as the stateful DoFn does
        kinds.extend((a.kind, a.subscription, n) for a in tracker.observe(poll(n, outcome, failures), SUBS))
    assert kinds == [("feed.down", "ops", 3), ("feed.recovered", "ops", 5)]


def test_alert_ids_are_deterministic():
    first = FeedHealthTracker(down_after=1).observe(poll(1, "timeout", 1), SUBS)
    again = FeedHealthTracker(down_after=1).observe(poll(1, "timeout", 1), SUBS)
    assert [a.id for a in first] == [a.id for a in again]
    assert first[0].details["http_status"] == 200 and "timeout" in first[0].reason
