"""DedupeItems: one classified item per id (the same article seen twice, e.g. a file replayed twice)."""

from __future__ import annotations

import apache_beam as beam

from pipelines import metrics
from pipelines.model import ClassifiedItem, NewsItem

__all__ = ["DedupeItems", "pick_first"]


def pick_first(items: list[NewsItem]) -> NewsItem:
    """Deterministic choice among copies: earliest event time, then lexicographically smallest."""
    return min(items, key=lambda it: (it.ingested, it.source, it.body))


class _Pick(beam.DoFn):
    def process(self, keyed: tuple[str, list[ClassifiedItem]]):
        _, copies = keyed
        copies = list(copies)
        if len(copies) > 1:
            metrics.inc("items_duplicate", n=len(copies) - 1)
        by_item = {id(c.item): c for c in copies}
        yield by_item[id(pick_first([c.item for c in copies]))]


class DedupeItems(beam.PTransform):
    """Batch dedupe of ClassifiedItems by item id (keys are plain strings). Streaming dedupes with state."""

    def expand(self, classified: beam.PCollection) -> beam.PCollection:
        return (
            classified
            | "KeyById" >> beam.Map(lambda c: (c.item.id, c))
            | "GroupById" >> beam.GroupByKey()
            | "PickFirst" >> beam.ParDo(_Pick())
            | "RestoreEventTime" >> beam.Map(lambda c: beam.window.TimestampedValue(c, c.item.ingested.timestamp()))
        )
