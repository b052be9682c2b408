"""Classify: NewsItem → ClassifiedItem. A thin adapter; the engine is built once per worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import apache_beam as beam

from alerts.subscriptions import Query
from pipelines import metrics
from pipelines.classify.engine import Engine
from pipelines.classify.rules import TopicsFile
from pipelines.model import ClassifiedItem, NewsItem

__all__ = ["Classify", "ClassifyFn"]


class ClassifyFn(beam.DoFn):
    def __init__(
        self, topics: TopicsFile, keep_body_chars: int | None = None, queries: dict[str, str] | None = None
    ) -> None:
        self._topics = topics
        self._keep = keep_body_chars
        self._query_texts = dict(queries or {})
        self._engine: Engine | None = None
        self._queries: dict[str, Query] = {}

    def setup(self) -> None:
        self._engine = Engine(self._topics)
        self._queries = {sid: Query(text) for sid, text in self._query_texts.items()}

    def process(self, item: NewsItem) -> Iterator[ClassifiedItem]:
        assert self._engine is not None
        started = time.perf_counter()
        matches = self._engine.classify(item.title, item.body)
        metrics.observe("classify_seconds", time.perf_counter() - started)
        metrics.inc("items_classified")
        if item.published is not None and not item.date_estimated and item.source_kind != "replay":
            # Freshness of live items: processing time minus publication (a metric, not a decision;
            # replayed archives would only measure their age).
            lag = time.time() - item.published.timestamp()
            metrics.observe("event_lag_seconds", max(lag, 0.0), source_kind=item.source_kind)
        for match in matches:
            metrics.inc("items_by_topic", topic=match.topic)
        # Subscription queries need the full text, which is cut to its lead below.
        full_text = item.title + "\n" + item.body if self._queries else ""
        satisfied = [sid for sid, query in self._queries.items() if query.matches(full_text)]
        if self._keep is not None and len(item.body) > self._keep:
            # Evidence spans may point past the kept lead; they refer to the original body.
            item = item.model_copy(update={"body": item.body[: self._keep]})
        yield ClassifiedItem(item=item, matches=matches, queries=satisfied)


class Classify(beam.PTransform):
    """NewsItems → ClassifiedItems.

    ``keep_body_chars`` trims bodies to their lead after classifying; ``queries`` (subscription id →
    query) are evaluated on the full text and recorded on the classified item.
    """

    def __init__(
        self, topics: TopicsFile, keep_body_chars: int | None = None, queries: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self._topics = topics
        self._keep = keep_body_chars
        self._queries = queries

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return items | "ClassifyItems" >> beam.ParDo(ClassifyFn(self._topics, self._keep, self._queries))
