"""build_pipeline: the one place that knows every room. Wires composites; never runs anything."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from alerts.delivery import DEAD_LETTERS, DELIVERED, DeliverAlerts
from alerts.subscriptions import SubscriptionsFile
from alerts.transforms import Alerts, FeedHealthAlerts
from pipelines.classify.rules import TopicsFile
from pipelines.classify.transform import Classify
from pipelines.dedupe import DedupeItems, DedupeStreaming
from pipelines.model import Alert, DeadLetter
from pipelines.outputs import AppendJsonl, WriteJsonl, alert_record, dead_letter_record, item_record

__all__ = ["LEAD_CHARS", "PipelineOutputs", "build_pipeline"]

# What alerting needs of a body downstream of classification (story similarity uses the lead).
LEAD_CHARS = 600


@dataclass(frozen=True)
class PipelineOutputs:
    items: beam.PCollection  # ClassifiedItem
    alerts: beam.PCollection  # Alert (delivered)
    dead_letters: beam.PCollection  # DeadLetter
    health: beam.PCollection | None = None  # FeedHealth (live sources)


def build_pipeline(
    p: beam.Pipeline,
    source: beam.PTransform,
    topics: TopicsFile,
    subscriptions: SubscriptionsFile,
    out_dir: str | None = None,
    *,
    streaming: bool = False,
    deliverer_options: dict | None = None,
) -> PipelineOutputs:
    """Source → Classify → Dedupe → Alerts → Deliver, plus JSONL writers when ``out_dir`` is given.

    ``source`` is any PTransform from PBegin to timestamped NewsItems, or to a dict with "items" and
    optionally "dead_letters" and "health" (replay, RSS, Pub/Sub and test sources plug in here).
    ``streaming`` selects the stateful (unbounded) shapes of dedupe and alerting, and appending
    writers instead of sorted files.
    """
    produced = p | "Source" >> source
    if not isinstance(produced, dict):
        produced = {"items": produced}
    # Classify before the batch dedupe's GroupByKey and carry only the lead of each body past it: the
    # local runner materialises everything a GroupByKey receives, and bodies are most of the bytes.
    classified = produced["items"] | "Classify" >> Classify(
        topics, keep_body_chars=LEAD_CHARS, queries=subscriptions.queries
    )
    unique = classified | "Dedupe" >> (DedupeStreaming() if streaming else DedupeItems())
    alerts = unique | "Alerts" >> Alerts(subscriptions, streaming=streaming)
    health = produced.get("health")
    if health is not None:
        health_alerts = health | "FeedHealth" >> FeedHealthAlerts(subscriptions)
        alerts = (alerts, health_alerts) | "WithHealthAlerts" >> beam.Flatten().with_output_types(Alert)
    delivery = alerts | "Deliver" >> DeliverAlerts(subscriptions, deliverer_options)
    dead_parts = [delivery[DEAD_LETTERS]]
    if produced.get("dead_letters") is not None:
        dead_parts.append(produced["dead_letters"])
    dead = tuple(dead_parts) | "AllDeadLetters" >> beam.Flatten().with_output_types(DeadLetter)
    outputs = PipelineOutputs(items=unique, alerts=delivery[DELIVERED], dead_letters=dead, health=health)
    if out_dir is not None:
        write = AppendJsonl if streaming else WriteJsonl
        outputs.items | "WriteItems" >> write(out_dir, "items", item_record)
        outputs.alerts | "WriteAlerts" >> write(out_dir, "alerts", alert_record)
        outputs.dead_letters | "WriteDeadLetters" >> write(out_dir, "dead_letters", dead_letter_record)
        if health is not None:
            health | "WriteFeedHealth" >> write(out_dir, "feeds", lambda h: h.model_dump(mode="json"))
    return outputs
