"""DedupeItems: one classified item per id (the same article seen twice, e.g. a file replayed twice)."""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from pipelines import metrics
from pipelines.model import ClassifiedItem, NewsItem
from pipelines.wire import from_wire, to_wire

__all__ = ["DedupeItems", "DedupeStreaming", "dedupe_key", "pick_first"]


def pick_first(items: list[NewsItem]) -> NewsItem:
    """Deterministic choice among copies: earliest event time, then lexicographically smallest."""
    return min(items, key=lambda it: (it.ingested, it.source, it.body))


class _Pick(beam.DoFn):
    def process(self, keyed: tuple[str, Iterable[tuple[str, str, str]]]):
        copies = list(keyed[1])
        if len(copies) > 1:
            metrics.inc("items_duplicate", n=len(copies) - 1)
        # min over (event time, source, encoded item): deterministic, like pick_first, without decoding
        classified = from_wire(min(copies)[2])
        yield beam.window.TimestampedValue(classified, classified.item.ingested.timestamp())


def _to_wire(c: ClassifiedItem) -> tuple[str, tuple[str, str, bytes]]:
    return c.item.id, (c.item.ingested.isoformat(), c.item.source, to_wire(c))


class DedupeItems(beam.PTransform):
    """Batch dedupe of ClassifiedItems by item id (keys are plain strings). Streaming dedupes with state.

    Items cross the GroupByKey as JSON text next to their sort keys (pipelines/wire.py), not pickled.
    """

    def expand(self, classified: beam.PCollection) -> beam.PCollection:
        return (
            classified
            | "KeyById" >> beam.Map(_to_wire).with_output_types(tuple[str, tuple[str, str, bytes]])
            | "GroupById" >> beam.GroupByKey()
            | "PickFirst" >> beam.ParDo(_Pick())
        )


def dedupe_key(item: NewsItem) -> str:
    """The same link from two feeds is one item; without a link, the item id."""
    return "url:" + item.url if item.url else "id:" + item.id


class _FirstSeen(beam.DoFn):
    """Emit the first classified item per key; state is cleared a retention period after it."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, retention_seconds: float) -> None:
        self._retention = retention_seconds

    def process(
        self,
        keyed: tuple[str, ClassifiedItem],
        seen=beam.DoFn.StateParam(SEEN),
        expiry=beam.DoFn.TimerParam(EXPIRY),
        timestamp=beam.DoFn.TimestampParam,
    ):
        if seen.read():
            metrics.inc("items_duplicate")
            return
        seen.write(True)
        expiry.set(timestamp + Duration.of(self._retention))
        yield keyed[1]

    @on_timer(EXPIRY)
    def _expire(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class DedupeStreaming(beam.PTransform):
    """Unbounded dedupe: a stateful DoFn keyed by link (or id), forgetting keys after ``retention``."""

    def __init__(self, retention_seconds: float = 14 * 86400) -> None:
        super().__init__()
        self._retention = retention_seconds

    def expand(self, classified: beam.PCollection) -> beam.PCollection:
        return (
            classified
            | "KeyByLink" >> beam.Map(lambda c: (dedupe_key(c.item), c)).with_output_types(tuple[str, ClassifiedItem])
            | "FirstSeen" >> beam.ParDo(_FirstSeen(self._retention))
        )
