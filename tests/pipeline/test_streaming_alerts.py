"""The unbounded alert shape (stateful DoFns) on TestStream: bursts by event time, late data, stories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from alerts.subscriptions import Subscription, SubscriptionsFile
from alerts.transforms import Alerts
from pipelines.model import ClassifiedItem, NewsItem, TopicMatch

T0 = datetime(2025, 3, 4, tzinfo=UTC)  # an hour boundary: burst windows are epoch-aligned hours
SUBS = SubscriptionsFile(subscriptions=[Subscription(id="desk", topics=["spying"])])


def spy_item(n: int, at: datetime, outlet: str = "wire", title: str | None = None, body: str = "") -> ClassifiedItem:
    item = NewsItem(
        id=f"i{n}", source=f"https://{outlet}.example/rss", source_kind="test", url=f"https://{outlet}.example/{n}",
        title=title or f"Unrelated spy story number {n} about agency {n * 7919 % 1000}", body=body or f"Body {n}.",
        published=at, ingested=at,
    )  # fmt: skip
    return ClassifiedItem(item=item, matches=[TopicMatch(topic="spying", score=0.7)])


def streaming_pipeline() -> TestPipeline:
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(runner=BundleBasedDirectRunner(), options=options)


def timestamped(items: list[ClassifiedItem]) -> list[TimestampedValue]:
    return [TimestampedValue(c, c.item.ingested.timestamp()) for c in items]


def test_burst_fires_once_in_the_surging_window_and_late_data_is_dropped():
    baseline = [spy_item(h, T0 + timedelta(hours=h, minutes=10)) for h in range(6)]  # one item an hour
    surge_at = T0 + timedelta(hours=6)
    surge = [spy_item(100 + k, surge_at + timedelta(minutes=k), outlet=f"o{k % 3}") for k in range(8)]
    too_late = [spy_item(200 + k, T0 + timedelta(hours=1, minutes=k)) for k in range(8)]  # > 2 h behind
    stream = (
        TestStream()
        .add_elements(timestamped(baseline))
        .advance_watermark_to(surge_at.timestamp())
        .add_elements(timestamped(surge))
        .advance_watermark_to((surge_at + timedelta(hours=3)).timestamp())
        .add_elements(timestamped(too_late))  # late: its window is long closed, it must not fire
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        decided = p | stream | Alerts(SUBS, streaming=True)
        bursts = decided["bursts"] | beam.Map(lambda a: (a.kind, a.subscription, a.details["window_start"]))
        assert_that(bursts, equal_to([("alert.burst", "desk", surge_at.isoformat())]), label="OneBurst")


def test_one_story_across_outlets_is_one_item_alert_then_updates():
    lead = (
        "Prosecutors said the two men, a former parliamentary researcher and a teacher, passed information "
        "to Chinese intelligence between 2021 and 2023 and will appear before Westminster magistrates."
    )
    first = spy_item(1, T0, outlet="wire", title="Two men charged with spying for China", body=lead)
    rewrite = spy_item(
        2, T0 + timedelta(hours=1), outlet="paper", title="Pair charged with spying for Beijing", body=lead
    )
    other = spy_item(3, T0 + timedelta(hours=2), outlet="tv", title="Embassy expels diplomats in unrelated row")
    stream = TestStream().add_elements(timestamped([first])).add_elements(timestamped([rewrite, other]))
    stream = stream.advance_watermark_to_infinity()
    with streaming_pipeline() as p:
        decided = p | stream | Alerts(SUBS, streaming=True)
        kinds = decided["items"] | beam.Map(lambda a: (a.kind, a.items[0].id))
        assert_that(
            kinds, equal_to([("alert.item", "i1"), ("alert.updated", "i2"), ("alert.item", "i3")]), label="Story"
        )
