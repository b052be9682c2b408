"""Beam adapters for alerting. The decisions live in policy/stories/bursts/health; these only move data.

Two shapes of the same decisions:

* bounded input (replay): items are grouped (one key for stories, one per topic for bursts) and
  fed to the pure cores in event-time order, so a rerun gives the same story ids and alerts;
* unbounded input (watch, Pub/Sub): stateful DoFns keep the cores' state per key, because windowed
  GroupByKey and event-time timers were measured not to fire live on the local runner.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder, StrUtf8Coder
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec

from alerts.bursts import BurstDetector
from alerts.decide import BurstAlerter, StoryAlerter
from alerts.health import FeedHealthTracker
from alerts.stories import StoryIndex
from alerts.subscriptions import Subscription, SubscriptionsFile
from pipelines import metrics
from pipelines.model import Alert, AlertItem, ClassifiedItem, NewsItem
from pipelines.wire import from_wire, to_wire

__all__ = ["Alerts", "FeedHealthAlerts"]

STORIES_KEY = "stories"


def _count(alerts: Iterable[Alert]) -> Iterator[Alert]:
    for alert in alerts:
        for topic in alert.topics or ["-"]:
            metrics.inc("alerts", kind=alert.kind, topic=topic)
        yield alert


# --- item alerts, story-aware ---------------------------------------------------------------------


class _StoriesBatch(beam.DoFn):
    """All items under one key, as (event time, id, wire text): sorted, then decoded one at a time."""

    def __init__(self, subs: list[Subscription]) -> None:
        self._subs = subs

    def process(self, keyed: tuple[str, Iterable[tuple[str, str, str]]]) -> Iterator[Alert]:
        alerter, index = StoryAlerter(self._subs), StoryIndex()
        for _, _, text in sorted(keyed[1]):
            yield from _count(alerter.alerts(index, from_wire(text)))


def _member(item: NewsItem) -> NewsItem:
    # What a story needs to be rebuilt: no evidence, body cut to the lead the similarity reads.
    return item.model_copy(update={"body": item.body[:400]})


class _StoriesStateful(beam.DoFn):
    """One key for all items; the index lives in memory and is made durable in two parts.

    A snapshot of the index (``StoryIndex.to_state()``, bounded by ``max_stories``) is written every
    ``SNAPSHOT_EVERY`` items, and the members since the last snapshot are appended to a bag. A new
    worker restores the snapshot and replays the bag, reaching the same index. Both parts stay
    bounded: rewriting a large index per item would be slow, and keeping every member of the 48 h
    window would grow with the news rate (measured before this design).
    """

    SNAPSHOT = ReadModifyWriteStateSpec("snapshot", StrUtf8Coder())
    SINCE = BagStateSpec("since_snapshot", PickleCoder())
    COUNT = ReadModifyWriteStateSpec("count", PickleCoder())
    SNAPSHOT_EVERY = 200

    def __init__(self, subs: list[Subscription]) -> None:
        self._subs = subs
        self._index: StoryIndex | None = None

    def setup(self) -> None:
        self._stories = StoryAlerter(self._subs)

    def process(
        self,
        keyed: tuple[str, ClassifiedItem],
        snapshot=beam.DoFn.StateParam(SNAPSHOT),
        since=beam.DoFn.StateParam(SINCE),
        count=beam.DoFn.StateParam(COUNT),
    ) -> Iterator[Alert]:
        classified = keyed[1]
        if self._index is None:
            saved = snapshot.read()
            self._index = StoryIndex.from_state(json.loads(saved)) if saved else StoryIndex()
            for item in since.read():  # in arrival order, as they were first assigned
                self._index.assign(item)
        yield from _count(self._stories.alerts(self._index, classified))
        pending = (count.read() or 0) + 1
        if pending >= self.SNAPSHOT_EVERY:
            snapshot.write(json.dumps(self._index.to_state(), separators=(",", ":")))
            since.clear()
            pending = 0
        else:
            since.add(_member(classified.item))
        count.write(pending)


# --- bursts ---------------------------------------------------------------------------------------


class _BurstsBatch(beam.DoFn):
    """One topic's items as slim (event time, id, title, url, source, published) tuples, in order."""

    def __init__(self, subs: list[Subscription]) -> None:
        self._subs = subs

    def process(self, keyed: tuple[str, Iterable[tuple]]) -> Iterator[Alert]:
        topic, rows = keyed
        alerter, detector = BurstAlerter(self._subs), BurstDetector()
        for when, item_id, title, url, source, published in sorted(rows):
            ref = AlertItem(id=item_id, title=title, url=url or None, source=source,
                            published=datetime.fromisoformat(published) if published else None)  # fmt: skip
            yield from _count(alerter.observe(detector, topic, datetime.fromisoformat(when), ref))


def _burst_rows(c: ClassifiedItem) -> list[tuple[str, tuple]]:
    item = c.item
    row = (item.ingested.isoformat(), item.id, item.title, item.url or "", item.source,
           item.published.isoformat() if item.published else "")  # fmt: skip
    return [(m.topic, row) for m in c.matches]


class _BurstsStateful(beam.DoFn):
    """Keyed by topic; the detector's state is small (a day of window counts), stored as JSON."""

    STATE = ReadModifyWriteStateSpec("detector", StrUtf8Coder())

    def __init__(self, subs: list[Subscription]) -> None:
        self._subs = subs

    def setup(self) -> None:
        self._bursts = BurstAlerter(self._subs)

    def process(self, keyed: tuple[str, ClassifiedItem], state=beam.DoFn.StateParam(STATE)) -> Iterator[Alert]:
        topic, classified = keyed
        stored = state.read()
        detector = BurstDetector.from_state(json.loads(stored) if stored else None)
        yield from _count(self._bursts.alerts(detector, topic, classified))
        state.write(json.dumps(detector.to_state(), separators=(",", ":")))


class Alerts(beam.PTransform):
    """ClassifiedItems → {"items": item alerts (one per story) and story updates, "bursts": burst alerts}.

    Two outputs rather than one flattened: a live pipeline delivers each branch where it is made,
    because a Flatten boundary holds data until the source finishes on the local runner.
    """

    def __init__(self, subscriptions: SubscriptionsFile, *, streaming: bool = False) -> None:
        super().__init__()
        self._subs = list(subscriptions.subscriptions)
        self._streaming = streaming

    def expand(self, classified: beam.PCollection) -> dict[str, beam.PCollection]:
        if self._streaming:
            # str keys (typed) so stateful DoFns get a deterministic key coder.
            by_story = classified | "KeyForStories" >> beam.Map(lambda c: (STORIES_KEY, c)).with_output_types(
                tuple[str, ClassifiedItem]
            )
            by_topic = classified | "KeyByTopic" >> beam.FlatMap(
                lambda c: [(m.topic, c) for m in c.matches]
            ).with_output_types(tuple[str, ClassifiedItem])
            items = by_story | "StoryAlerts" >> beam.ParDo(_StoriesStateful(self._subs))
            bursts = by_topic | "BurstAlerts" >> beam.ParDo(_BurstsStateful(self._subs))
        else:
            # Plain strings across the GroupByKeys (pipelines/wire.py): pickled models cost a third of a replay.
            items = (
                classified
                | "WireForStories"
                >> beam.Map(
                    lambda c: (STORIES_KEY, (c.item.ingested.isoformat(), c.item.id, to_wire(c)))
                ).with_output_types(tuple[str, tuple[str, str, bytes]])
                | "GroupStories" >> beam.GroupByKey()
                | "StoryAlerts" >> beam.ParDo(_StoriesBatch(self._subs))
            )
            bursts = (
                classified
                | "RowsByTopic" >> beam.FlatMap(_burst_rows).with_output_types(tuple[str, tuple])
                | "GroupByTopic" >> beam.GroupByKey()
                | "BurstAlerts" >> beam.ParDo(_BurstsBatch(self._subs))
            )
        return {"items": items, "bursts": bursts}


# --- feed health ----------------------------------------------------------------------------------


class _FeedHealthFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec("health", StrUtf8Coder())

    def __init__(self, subs: list[Subscription], down_after: int) -> None:
        self._subs = subs
        self._down_after = down_after

    def process(self, keyed, state=beam.DoFn.StateParam(STATE)) -> Iterator[Alert]:
        _, health = keyed
        stored = state.read()
        tracker = FeedHealthTracker.from_state(json.loads(stored) if stored else None, down_after=self._down_after)
        yield from _count(tracker.observe(health, self._subs))
        state.write(json.dumps(tracker.to_state()))


class FeedHealthAlerts(beam.PTransform):
    """FeedHealth records → feed.down after N consecutive failures, feed.recovered when it is back."""

    def __init__(self, subscriptions: SubscriptionsFile, down_after: int = 5) -> None:
        super().__init__()
        self._subs = list(subscriptions.subscriptions)
        self._down_after = down_after

    def expand(self, health: beam.PCollection) -> beam.PCollection:
        return (
            health
            | "KeyByFeed" >> beam.Map(lambda h: (h.feed_id, h)).with_output_types(tuple[str, Any])
            | "HealthAlerts" >> beam.ParDo(_FeedHealthFn(self._subs, self._down_after))
        )
