"""Pub/Sub in and out: items as JSON messages in (so other systems can feed newsmon), alerts out.

Input messages are JSON objects: ``title`` and one of ``body``/``summary``/``text``; optional ``id``,
``url``, ``source``, ``published`` (RFC 3339). The event time is ``published`` when given, else the
message's timestamp (publish time, or ``timestamp_attribute``). Malformed messages are dead letters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue
from pydantic import ValidationError

from pipelines import metrics
from pipelines.model import Alert, DeadLetter, NewsItem, item_id

__all__ = ["PublishAlerts", "ReadItems", "alert_message", "parse_item_message"]

DEAD_LETTERS = "dead_letters"
PUBSUB_SOURCE = "pubsub"


def parse_item_message(data: bytes, publish_time: datetime) -> NewsItem:
    """Pure: one message → NewsItem. Raises ValueError with a readable reason."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    title = obj.get("title")
    body = next((obj[k] for k in ("body", "summary", "text") if isinstance(obj.get(k), str)), "")
    if not isinstance(title, str) or not (title.strip() or body.strip()):
        raise ValueError("needs a string 'title' and/or one of 'body', 'summary', 'text'")
    source = obj.get("source") if isinstance(obj.get("source"), str) else PUBSUB_SOURCE
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    try:
        published = datetime.fromisoformat(obj["published"]) if obj.get("published") else None
    except (TypeError, ValueError):
        raise ValueError(f"published is not an RFC 3339 time: {obj.get('published')!r}") from None
    try:
        return NewsItem(
            id=str(obj.get("id") or item_id(source, url, title, published)),
            source=source,
            source_kind="pubsub",
            url=url,
            title=title,
            body=body,
            published=published,
            ingested=published or publish_time,
        )
    except ValidationError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


class _Parse(beam.DoFn):
    def process(self, data: bytes, timestamp=beam.DoFn.TimestampParam) -> Iterator[object]:
        try:
            item = parse_item_message(data, timestamp.to_utc_datetime().replace(tzinfo=UTC))
        except ValueError as exc:
            metrics.inc("dead_letters", stage="pubsub")
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter(
                    stage="pubsub",
                    source=PUBSUB_SOURCE,
                    reason="bad_message",
                    detail=f"{exc}: {data[:2000].decode('utf-8', 'replace')}",
                ),
            )
            return
        metrics.inc("items_ingested", source_kind="pubsub")
        yield TimestampedValue(item, item.ingested.timestamp())


class ReadItems(beam.PTransform):
    """PBegin → {"items": NewsItems, "dead_letters": malformed messages} from a subscription or topic."""

    def __init__(
        self,
        subscription: str | None = None,
        topic: str | None = None,
        id_label: str | None = None,
        timestamp_attribute: str | None = None,
    ) -> None:
        super().__init__()
        if bool(subscription) == bool(topic):
            raise ValueError("give exactly one of --input_subscription or --input_topic")
        self._subscription, self._topic = subscription, topic
        self._id_label, self._timestamp_attribute = id_label, timestamp_attribute

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        parsed = (
            pbegin
            | "ReadMessages"
            >> ReadFromPubSub(
                subscription=self._subscription,
                topic=self._topic,
                id_label=self._id_label,
                timestamp_attribute=self._timestamp_attribute,
            )
            | "ParseItems" >> beam.ParDo(_Parse()).with_outputs(DEAD_LETTERS, main="items")
        )
        return {"items": parsed.items, DEAD_LETTERS: parsed[DEAD_LETTERS]}


def alert_message(alert: Alert) -> bytes:
    """An alert as a Pub/Sub message body: the same JSON as a webhook payload's envelope."""
    envelope = {"type": alert.kind, "timestamp": alert.timestamp.isoformat(), "data": alert.model_dump(mode="json")}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class PublishAlerts(beam.PTransform):
    """Alerts → a Pub/Sub topic (for downstream consumers)."""

    def __init__(self, topic: str) -> None:
        super().__init__()
        self._topic = topic

    def expand(self, alerts: beam.PCollection) -> beam.pvalue.PDone:
        from apache_beam.io.gcp.pubsub import WriteToPubSub

        return (
            alerts
            | "ToMessages" >> beam.Map(alert_message).with_output_types(bytes)
            | "Publish" >> WriteToPubSub(self._topic)
        )
