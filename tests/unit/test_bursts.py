"""Bursts: a surge of one topic's coverage against its own baseline, in event time, with bounded state."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.bursts import BurstDetector, BurstEvent, burst_alert
from alerts.policy import alert_id
from pipelines.model import AlertItem

H = timedelta(hours=1)
T0 = datetime(2025, 3, 4, tzinfo=UTC)  # on an hour boundary, like every window start
TOPIC = "spying"


def ref(n: int, source: str | None = None) -> AlertItem:
    return AlertItem(
        id=f"{n:016x}",
        title=f"Headline {n}",
        url=f"https://news.example/{n}",
        source=source or f"https://outlet{n % 4}.example/rss",
    )


class Feed:
    """Feeds a detector numbered items and collects what it emits."""

    def __init__(self, detector: BurstDetector | None = None) -> None:
        self.detector = detector or BurstDetector()
        self.events: list[BurstEvent] = []
        self.n = 0

    def at(self, when: datetime, *, source: str | None = None) -> BurstEvent | None:
        self.n += 1
        event = self.detector.observe(when, ref(self.n, source))
        if event is not None:
            self.events.append(event)
        return event

    def hour(self, hour: int, count: int, *, offset: timedelta = timedelta(0)) -> list[BurstEvent]:
        """``count`` items spread over one hour window, in time order."""
        out = []
        for i in range(count):
            event = self.at(T0 + hour * H + offset + i * (H - offset) / max(count, 1))
            if event is not None:
                out.append(event)
        return out

    def steady(self, hours: range, pattern: tuple[int, ...] = (1, 2, 3, 2)) -> None:
        for h in hours:
            assert self.hour(h, pattern[h % len(pattern)]) == []


# --- the rule -------------------------------------------------------------------------------------


def test_steady_baseline_then_surge_gives_exactly_one_burst_in_the_right_window():
    feed = Feed()
    feed.steady(range(24))  # 1, 2, 3, 2, ...: mean 2, σ 0.71 → threshold 2 + 3·√2 = 6.24
    surge = feed.hour(24, 15)
    feed.steady(range(25, 30))
    (event,) = feed.events
    assert surge == [event]
    assert (event.window_start, event.window_end) == (T0 + 24 * H, T0 + 25 * H)
    assert event.count == 7  # fires as soon as the count exceeds the threshold
    assert event.baseline_mean == pytest.approx(2.0) and event.baseline_std == pytest.approx(0.7071, abs=1e-4)
    assert event.threshold == pytest.approx(2 + 3 * 2**0.5) and event.history_windows == 24
    assert event.triggered_at == T0 + 24 * H + timedelta(minutes=24)  # the 7th item: 6 × 4 min in
    assert [i.id for i in event.items] == [ref(n).id for n in range(49, 56)]
    assert event.sources == sorted({ref(n).source for n in range(49, 56)})


def test_windows_are_aligned_to_the_epoch():
    detector = BurstDetector(window=timedelta(minutes=15))
    assert detector.window_of(datetime(2025, 3, 4, 10, 59, 59, tzinfo=UTC)) == (
        datetime(2025, 3, 4, 10, 45, tzinfo=UTC),
        datetime(2025, 3, 4, 11, 0, tzinfo=UTC),
    )
    # Naive datetimes are UTC, like everywhere in the model.
    assert detector.window_of(datetime(2025, 3, 4, 10, 7)) == (
        datetime(2025, 3, 4, 10, 0, tzinfo=UTC),
        datetime(2025, 3, 4, 10, 15, tzinfo=UTC),
    )


def test_min_count_is_respected_even_against_an_empty_baseline():
    feed = Feed()
    feed.hour(0, 1)  # the topic's first item: history starts here
    assert feed.hour(10, 4) == []  # 4 > 0 + 3·σ, but fewer than min_count
    (event,) = feed.hour(11, 5)
    assert event.count == 5 and event.baseline_mean == pytest.approx(5 / 11)  # hours 0-10: 1, 0 × 9, 4

    strict = Feed(BurstDetector(min_count=10))
    strict.hour(0, 1)
    assert strict.hour(10, 9) == []


def test_a_poisson_floor_keeps_a_flat_baseline_from_firing_on_noise():
    feed = Feed()
    for h in range(24):
        feed.hour(h, 4)  # σ = 0: without the floor 5 > 4 + 3·0 would be a "burst"
    assert feed.hour(24, 10) == []  # threshold 4 + 3·2 = 10: must exceed it
    assert len(feed.hour(25, 11)) == 1


def test_no_burst_until_there_is_some_history():
    feed = Feed()
    assert feed.hour(0, 30) == []  # first window of a topic: nothing to compare with
    assert feed.hour(1, 30) == [] and feed.hour(2, 30) == []
    feed2 = Feed()
    feed2.hour(0, 1)
    assert feed2.hour(3, 20) != []  # three windows of history (1, 0, 0) are enough


def test_cooldown_suppresses_a_second_surge_within_six_hours_but_not_after():
    def run(cooldown: timedelta) -> list[datetime]:
        feed = Feed(BurstDetector(cooldown=cooldown))
        feed.steady(range(24))
        feed.hour(24, 30)
        feed.steady(range(25, 29))
        feed.hour(29, 30)  # 5 h after the first surge
        feed.steady(range(30, 31))
        feed.hour(31, 30)  # 7 h after the first surge, 2 h after the suppressed one
        feed.steady(range(32, 36))
        return [e.window_start for e in feed.events]

    assert run(timedelta(0)) == [T0 + 24 * H, T0 + 29 * H, T0 + 31 * H]  # each surge passes the rule on its own
    assert run(timedelta(hours=6)) == [T0 + 24 * H, T0 + 31 * H]


def test_a_window_fires_at_most_once():
    feed = Feed(BurstDetector(cooldown=timedelta(0)))
    feed.steady(range(24))
    assert len(feed.hour(24, 100)) == 1


# --- event time -----------------------------------------------------------------------------------


def test_late_items_within_the_allowed_lateness_count_and_can_fire_their_window():
    feed = Feed()
    feed.steady(range(28))
    feed.hour(28, 4)
    feed.hour(30, 1)  # the newest window is now 30: window 28 is 2 h behind, still open
    assert feed.events == []
    events = [feed.at(T0 + 28 * H + timedelta(minutes=50 + i)) for i in range(4)]
    (event,) = [e for e in events if e is not None]
    assert event.window_start == T0 + 28 * H and event.count == 7
    assert event.triggered_at == T0 + 28 * H + timedelta(minutes=52)
    assert feed.detector.count(T0 + 28 * H) == 8 and feed.detector.late_dropped == 0


def test_items_beyond_the_allowed_lateness_are_dropped_and_reported():
    feed = Feed()
    feed.steady(range(31))  # the newest window is 30: windows before 28 are closed
    before = feed.detector.count(T0 + 27 * H)
    assert feed.detector.is_late(T0 + 27 * H + timedelta(minutes=59))
    assert not feed.detector.is_late(T0 + 28 * H)
    assert feed.hour(27, 40) == []  # a "surge" 3 windows back: too late to count or to fire
    assert feed.detector.late_dropped == 40
    assert feed.detector.count(T0 + 27 * H) == before
    assert feed.detector.to_state()["late_dropped"] == 40


def test_out_of_order_items_within_a_window_give_the_same_burst_and_state():
    def run(order: list[int]) -> tuple[list[BurstEvent], dict]:
        feed = Feed()
        feed.steady(range(24))
        events = []
        for i in order:
            event = feed.detector.observe(T0 + 24 * H + i * timedelta(minutes=3), ref(1000 + i))
            if event is not None:
                events.append(event)
        return events, feed.detector.to_state()

    in_order, state = run(list(range(15)))
    shuffled = list(range(15))
    random.Random(3).shuffle(shuffled)
    out_of_order, state2 = run(shuffled)
    assert len(in_order) == len(out_of_order) == 1
    assert in_order[0].window_start == out_of_order[0].window_start and out_of_order[0].count == 7
    # The items are listed by event time whatever the order they came in.
    times = [int(item.id, 16) for item in out_of_order[0].items]
    assert times == sorted(times)
    assert state == state2


def test_repeated_items_count_once():
    feed = Feed()
    feed.steady(range(24))
    for _ in range(10):
        assert feed.detector.observe(T0 + 24 * H, ref(5000)) is None
    assert feed.detector.count(T0 + 24 * H) == 1 and feed.detector.duplicates == 9


# --- alerts ---------------------------------------------------------------------------------------


def surge_event() -> BurstEvent:
    feed = Feed(BurstDetector(cooldown=timedelta(0)))
    feed.steady(range(24))
    (event,) = feed.hour(24, 7)
    return event


def test_burst_alert_has_a_deterministic_id_per_subscription_topic_and_window():
    event = surge_event()
    alert = burst_alert(TOPIC, event, "sec")
    assert alert == burst_alert(TOPIC, surge_event(), "sec")
    assert alert.id == alert_id("sec", "alert.burst", f"{TOPIC}/{(T0 + 24 * H).isoformat()}")
    assert burst_alert(TOPIC, event, "other").id != alert.id
    assert burst_alert("cyber", event, "sec").id != alert.id
    later = event.model_copy(update={"window_start": event.window_start + H})
    assert burst_alert(TOPIC, later, "sec").id != alert.id


def test_burst_alert_content():
    event = surge_event()
    alert = burst_alert(TOPIC, event, "sec")
    assert alert.kind == "alert.burst" and alert.topics == [TOPIC] and alert.subscription == "sec"
    assert alert.timestamp == event.triggered_at == T0 + 24 * H + 6 * H / 7
    assert alert.items == event.items and len(alert.items) == 7
    assert alert.details == {
        "window_start": (T0 + 24 * H).isoformat(),
        "window_end": (T0 + 25 * H).isoformat(),
        "count": 7,
        "baseline_mean": 2.0,
        "baseline_std": event.baseline_std,
        "threshold": event.threshold,
        "history_windows": 24,
        "outlets": event.sources,
        "outlet_count": 4,
    }
    assert alert.reason.startswith(f"burst: 7 items on {TOPIC} in {(T0 + 24 * H).isoformat()}")
    json.dumps(alert.model_dump(mode="json"))


def test_the_item_list_is_capped():
    feed = Feed(BurstDetector(min_count=30, max_items=20))
    feed.steady(range(24))
    (event,) = feed.hour(24, 40)
    assert event.count == 30 and len(event.items) == 20
    assert [i.id for i in event.items] == [ref(n).id for n in range(49, 69)]  # the earliest ones


# --- state ----------------------------------------------------------------------------------------


def test_state_round_trips_through_json_and_continues_identically():
    live = Feed()
    live.steady(range(20))
    live.hour(20, 3)
    state = json.loads(json.dumps(live.detector.to_state()))
    restored = Feed(BurstDetector.from_state(state))
    restored.n = live.n
    assert restored.detector.to_state() == live.detector.to_state()
    for feed in (live, restored):
        feed.steady(range(21, 24))
        feed.hour(24, 12)
        feed.at(T0 + 5 * H)  # late
        feed.at(T0 + 24 * H, source="late-comer")
    assert restored.events == live.events and len(live.events) == 1
    assert restored.detector.to_state() == live.detector.to_state()
    assert restored.detector.late_dropped == 1
    assert BurstDetector.from_state(None).to_state() == BurstDetector().to_state()


def test_state_is_bounded_by_the_baseline_horizon():
    feed = Feed(BurstDetector(max_tracked_ids=100))
    rng = random.Random(1)
    for h in range(500):
        feed.hour(h, rng.choice([0, 1, 3, 60, 200]))
        state = feed.detector.to_state()
        assert len(state["counts"]) <= 24 + 2 + 1  # baseline + lateness + the newest window
        assert len(state["open"]) <= 3
        assert all(len(w["items"]) <= 20 and len(w["ids"]) <= 100 for w in state["open"])
        assert len(state["fired"]) <= 3
    assert len(json.dumps(state)) < 50_000
    assert min(i for i, _ in state["counts"]) >= state["newest"] - 26


def test_state_from_another_window_width_is_refused():
    feed = Feed()
    feed.hour(0, 3)
    with pytest.raises(ValueError, match="windows"):
        BurstDetector.from_state(feed.detector.to_state(), window=timedelta(minutes=30))
    with pytest.raises(ValueError, match="version"):
        BurstDetector.from_state({**feed.detector.to_state(), "v": 0})
