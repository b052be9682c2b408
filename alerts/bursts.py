"""Bursts: a surge of coverage of one topic, in event time.

``BurstDetector`` holds one topic's recent history (the Beam DoFn keys by topic and keeps
``to_state()`` in a state cell). Items are counted in fixed event-time windows aligned to the Unix
epoch. A window bursts when, at the moment an item is counted in it,

    count ≥ min_count  and  count > mean + k·σ_eff

where mean and σ are over the previous ``baseline_windows`` windows (empty windows count as 0) and
σ_eff = max(σ, √mean). The √mean floor is the Poisson noise of independent arrivals: a history that
happens to be flat (σ = 0) would otherwise make a count of 5 against a steady 4 a "surge".

Decisions, and why:

* History: the baseline only covers windows since the topic's first item (capped at
  ``baseline_windows``), and at least ``min_history_windows`` (3) of them are required. Before the
  first item the detector knows nothing, and treating "no data yet" as a long run of zeros would make
  every topic burst in the first hour of a run.
* A window fires as soon as the rule holds (not when it closes), once at most, and not within
  ``cooldown`` of another fired window (either side: late data can fire an earlier window).
* The alert timestamp is the event time of the item that made the window fire: the moment the surge
  became true in event time. The window end would lie in the future of the data that caused it.
  The alert id does not depend on it (subscription + topic + window start).
* Late data: an item whose window starts more than ``allowed_lateness`` before the newest window
  is counted in ``late_dropped`` (see ``is_late``) and changes nothing; within the lateness it counts
  towards its window, which may fire then if the rule holds.
* The same item id twice in one window counts once (``duplicates``), up to ``max_tracked_ids`` ids
  per window.
* State: counts only for the windows a still-open window's baseline can use; items and outlets only
  for the still-open windows (a few), each capped. The state is bounded whatever the traffic.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alerts.policy import alert_id
from pipelines.model import Alert, AlertItem, to_utc

__all__ = ["BurstDetector", "BurstEvent", "burst_alert"]

STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class BurstEvent(BaseModel):
    """One window of one topic that surged above its baseline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_start: datetime
    window_end: datetime
    triggered_at: datetime = Field(description="event time of the item that made the window fire")
    count: int
    baseline_mean: float
    baseline_std: float = Field(description="population σ of the baseline windows (before the √mean floor)")
    threshold: float = Field(description="mean + k·max(σ, √mean): the count had to exceed this")
    history_windows: int = Field(description="how many previous windows the baseline covered")
    sources: list[str] = Field(description="distinct outlets in the window (sorted, capped)")
    items: list[AlertItem] = Field(description="the window's earliest items by event time (capped)")


@dataclass
class _Open:
    """Details of a window that can still fire: who covered it and which items."""

    ids: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    # (event time ISO, item id, item dump) kept sorted; ISO UTC strings sort chronologically.
    items: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def _bucket_micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICRO


class BurstDetector:
    """Burst detection for one topic: ``observe`` each item, get a ``BurstEvent`` when the topic surges."""

    def __init__(
        self,
        window: timedelta = timedelta(hours=1),
        baseline_windows: int = 24,
        k: float = 3.0,
        min_count: int = 5,
        cooldown: timedelta = timedelta(hours=6),
        allowed_lateness: timedelta = timedelta(hours=2),
        min_history_windows: int = 3,
        max_items: int = 20,
        max_sources: int = 50,
        max_tracked_ids: int = 500,
    ) -> None:
        if window <= timedelta(0) or window % _MICRO:
            raise ValueError("window must be a positive whole number of microseconds")
        if baseline_windows < 1 or not 1 <= min_history_windows <= baseline_windows:
            raise ValueError("need 1 ≤ min_history_windows ≤ baseline_windows")
        if k < 0 or min_count < 1 or cooldown < timedelta(0) or allowed_lateness < timedelta(0):
            raise ValueError("k, cooldown and allowed_lateness must be ≥ 0 and min_count ≥ 1")
        if max_items < 1 or max_sources < 1 or max_tracked_ids < 1:
            raise ValueError("caps must be at least 1")
        self.window = window
        self.baseline_windows = baseline_windows
        self.k = k
        self.min_count = min_count
        self.cooldown = cooldown
        self.allowed_lateness = allowed_lateness
        self.min_history_windows = min_history_windows
        self.max_items = max_items
        self.max_sources = max_sources
        self.max_tracked_ids = max_tracked_ids

        self._w = window // _MICRO
        self._late_windows = allowed_lateness // window  # windows behind the newest that still count
        self._newest: int | None = None  # newest window index seen
        self._first: int | None = None  # first window with an item: where history begins
        self._counts: dict[int, int] = {}
        self._open: dict[int, _Open] = {}
        self._fired: list[int] = []  # sorted window indices
        self.late_dropped = 0
        self.duplicates = 0

    # -- windows --

    def _index(self, when: datetime) -> int:
        return _bucket_micros(when) // self._w

    def _start(self, index: int) -> datetime:
        return _EPOCH + index * self.window

    def window_of(self, event_time: datetime) -> tuple[datetime, datetime]:
        """The [start, end) of the epoch-aligned window an event time falls in."""
        start = self._start(self._index(_utc(event_time)))
        return start, start + self.window

    def is_late(self, event_time: datetime) -> bool:
        """Would an item at this event time be dropped as late (older than the newest window − lateness)?"""
        return self._newest is not None and self._index(_utc(event_time)) < self._newest - self._late_windows

    @property
    def newest_window(self) -> datetime | None:
        return None if self._newest is None else self._start(self._newest)

    def count(self, event_time: datetime) -> int:
        """Items counted so far in the window of this event time (0 once it fell out of the state)."""
        return self._counts.get(self._index(_utc(event_time)), 0)

    # -- the decision --

    def observe(self, event_time: datetime, item: AlertItem) -> BurstEvent | None:
        """Count one item of this topic; a ``BurstEvent`` if its window fires now, else None.

        Late items return None and increment ``late_dropped``; repeats of an item id in its window
        return None and increment ``duplicates``.
        """
        when = _utc(event_time)
        index = self._index(when)
        if self._newest is not None and index < self._newest - self._late_windows:
            self.late_dropped += 1
            return None
        if self._newest is None or index > self._newest:
            self._newest = index
            self._prune()
        self._first = index if self._first is None else min(self._first, index)

        details = self._open.setdefault(index, _Open())
        if item.id in details.ids:
            self.duplicates += 1
            return None
        if len(details.ids) < self.max_tracked_ids:
            details.ids.add(item.id)
        if len(details.sources) < self.max_sources:
            details.sources.add(item.source)
        entry = (when.isoformat(timespec="microseconds"), item.id, item.model_dump(mode="json", exclude={"matches"}))
        if len(details.items) < self.max_items or entry[:2] < details.items[-1][:2]:
            # Earliest items by event time: the same set of items gives the same list in any order.
            bisect.insort(details.items, entry, key=lambda e: e[:2])
            del details.items[self.max_items :]
        self._counts[index] = self._counts.get(index, 0) + 1
        return self._evaluate(index, when)

    def _evaluate(self, index: int, when: datetime) -> BurstEvent | None:
        count = self._counts[index]
        if count < self.min_count or index in self._fired:
            return None
        assert self._first is not None
        history = min(self.baseline_windows, index - self._first)
        if history < self.min_history_windows:
            return None
        counts = [self._counts.get(i, 0) for i in range(index - history, index)]
        mean = statistics.fmean(counts)
        std = statistics.pstdev(counts)
        threshold = mean + self.k * max(std, math.sqrt(mean))
        if count <= threshold:
            return None
        if any(abs(index - f) * self.window < self.cooldown for f in self._fired):
            return None
        bisect.insort(self._fired, index)
        details = self._open[index]
        return BurstEvent(
            window_start=self._start(index),
            window_end=self._start(index + 1),
            triggered_at=when,
            count=count,
            baseline_mean=mean,
            baseline_std=std,
            threshold=threshold,
            history_windows=history,
            sources=sorted(details.sources),
            items=[AlertItem.model_validate(dump) for _, _, dump in details.items],
        )

    def _prune(self) -> None:
        # Oldest window that can still take items, and the oldest its baseline (or cool-down) can reach.
        assert self._newest is not None
        oldest_open = self._newest - self._late_windows
        oldest_baseline = oldest_open - self.baseline_windows
        self._counts = {i: c for i, c in self._counts.items() if i >= oldest_baseline}
        self._open = {i: d for i, d in self._open.items() if i >= oldest_open}
        self._fired = [f for f in self._fired if (oldest_open - f) * self.window < self.cooldown or f >= oldest_open]

    # -- state --

    def to_state(self) -> dict[str, Any]:
        """JSON-able, bounded state (counts, open windows, fired windows, counters)."""
        return {
            "v": STATE_VERSION,
            "window_us": self._w,
            "newest": self._newest,
            "first": self._first,
            "counts": [[i, c] for i, c in sorted(self._counts.items())],
            "open": [
                {
                    "w": i,
                    "ids": sorted(d.ids),
                    "src": sorted(d.sources),
                    "items": [{"t": t, **dump} for t, _, dump in d.items],
                }
                for i, d in sorted(self._open.items())
            ],
            "fired": list(self._fired),
            "late_dropped": self.late_dropped,
            "duplicates": self.duplicates,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, **config: Any) -> BurstDetector:
        """Rebuild from ``to_state()`` (None or {} → empty); ``config`` as for the constructor.

        Raises ValueError if the state was written with another window width: its window indices
        would count different hours.
        """
        detector = cls(**config)
        if not state:
            return detector
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported burst state version {state.get('v')!r} (expected {STATE_VERSION})")
        if state["window_us"] != detector._w:
            raise ValueError(f"burst state has {state['window_us']} µs windows, detector {detector._w} µs")
        detector._newest = state["newest"]
        detector._first = state["first"]
        detector._counts = {int(i): int(c) for i, c in state["counts"]}
        for data in state["open"]:
            items = []
            for raw in data["items"]:
                dump = {key: value for key, value in raw.items() if key != "t"}
                items.append((raw["t"], dump["id"], dump))
            detector._open[int(data["w"])] = _Open(ids=set(data["ids"]), sources=set(data["src"]), items=items)
        detector._fired = sorted(int(f) for f in state["fired"])
        detector.late_dropped = int(state["late_dropped"])
        detector.duplicates = int(state["duplicates"])
        if detector._newest is not None:
            detector._prune()  # a shorter lateness or baseline now applies at once
        return detector


def _utc(value: datetime) -> datetime:
    out = to_utc(value)
    assert out is not None
    return out


def burst_alert(topic: str, event: BurstEvent, subscription_id: str) -> Alert:
    """The ``alert.burst`` for one subscription: one id per subscription, topic and window."""
    start = event.window_start.isoformat()
    outlets = len(event.sources)
    reason = (
        f"burst: {event.count} items on {topic} in {start} – {event.window_end.isoformat()}"
        f" from {outlets} outlet{'s' if outlets != 1 else ''}"
        f" (baseline {event.baseline_mean:.1f} ± {event.baseline_std:.1f} over {event.history_windows} windows,"
        f" threshold {event.threshold:.1f})"
    )
    return Alert(
        id=alert_id(subscription_id, "alert.burst", f"{topic}/{start}"),
        kind="alert.burst",
        subscription=subscription_id,
        topics=[topic],
        items=list(event.items),
        reason=reason,
        timestamp=event.triggered_at,
        details={
            "window_start": start,
            "window_end": event.window_end.isoformat(),
            "count": event.count,
            "baseline_mean": event.baseline_mean,
            "baseline_std": event.baseline_std,
            "threshold": event.threshold,
            "history_windows": event.history_windows,
            "outlets": list(event.sources),
            "outlet_count": outlets,
        },
    )
