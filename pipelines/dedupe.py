"""DedupeItems: one item per id (the same article seen twice, e.g. a file replayed twice)."""

from __future__ import annotations

import apache_beam as beam

from pipelines import metrics
from pipelines.model import NewsItem

__all__ = ["DedupeItems", "pick_first"]


def pick_first(items: list[NewsItem]) -> NewsItem:
    """Deterministic choice among copies: earliest event time, then lexicographically smallest."""
    return min(items, key=lambda it: (it.ingested, it.source, it.body))


class _Pick(beam.DoFn):
    def process(self, keyed: tuple[str, list[NewsItem]]):
        _, copies = keyed
        copies = list(copies)
        if len(copies) > 1:
            metrics.inc("items_duplicate", n=len(copies) - 1)
        yield pick_first(copies)


class DedupeItems(beam.PTransform):
    """Batch dedupe by item id (keys are plain strings). Streaming sources dedupe with state."""

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return (
            items
            | "KeyById" >> beam.Map(lambda it: (it.id, it))
            | "GroupById" >> beam.GroupByKey()
            | "PickFirst" >> beam.ParDo(_Pick())
            | "RestoreEventTime" >> beam.Map(lambda it: beam.window.TimestampedValue(it, it.ingested.timestamp()))
        )
