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
from pipelines.outputs import WriteJsonl, alert_record, dead_letter_record, item_record, live_writer
from pipelines.sources.pubsub import PublishAlerts

__all__ = ["LEAD_CHARS", "PipelineOutputs", "build_pipeline"]

# What alerting needs of a body downstream of classification (story similarity uses the lead).
LEAD_CHARS = 600


@dataclass(frozen=True)
class PipelineOutputs:
    """What build_pipeline made. Bounded runs: one PCollection each. Unbounded runs: ``alerts`` and
    ``dead_letters`` are tuples of per-branch PCollections (see build_pipeline)."""

    items: beam.PCollection  # ClassifiedItem
    alerts: beam.PCollection | tuple[beam.PCollection, ...]  # Alert (delivered)
    dead_letters: beam.PCollection | tuple[beam.PCollection, ...]  # DeadLetter
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
    alerts_topic: str | None = None,
) -> PipelineOutputs:
    """Source → Classify → Dedupe → Alerts → Deliver, plus JSONL writers when ``out_dir`` is given.

    ``source`` is any PTransform from PBegin to timestamped NewsItems, or to a dict with "items" and
    optionally "dead_letters" and "health" (replay, RSS, Pub/Sub and test sources plug in here).
    ``streaming`` selects the stateful (unbounded) shapes of dedupe and alerting, and appending
    writers instead of sorted files. ``alerts_topic`` also publishes delivered alerts to Pub/Sub
    (unbounded runs only).
    """
    if alerts_topic and not streaming:
        raise ValueError("alerts can be published to Pub/Sub from streaming runs only")
    produced = p | "Source" >> source
    if not isinstance(produced, dict):
        produced = {"items": produced}
    # Classify before the batch dedupe's GroupByKey and carry only the lead of each body past it: the
    # local runner materialises everything a GroupByKey receives, and bodies are most of the bytes.
    classified = produced["items"] | "Classify" >> Classify(
        topics, keep_body_chars=LEAD_CHARS, queries=subscriptions.queries
    )
    unique = classified | "Dedupe" >> (DedupeStreaming() if streaming else DedupeItems())
    decided = unique | "Alerts" >> Alerts(subscriptions, streaming=streaming)
    branches = {"Item": decided["items"], "Burst": decided["bursts"]}
    health = produced.get("health")
    if health is not None:
        branches["Health"] = health | "FeedHealth" >> FeedHealthAlerts(subscriptions)
    source_dead = produced.get("dead_letters")
    if streaming:
        # Deliver and write each branch where it is made: on the local runner a Flatten boundary
        # holds data until the (unbounded) source ends, while fused steps run live.
        delivered, dead = [], [] if source_dead is None else [source_dead]
        write = live_writer(out_dir or "")
        for name, alerts in branches.items():
            sent = alerts | f"Deliver{name}Alerts" >> DeliverAlerts(subscriptions, deliverer_options)
            delivered.append(sent[DELIVERED])
            dead.append(sent[DEAD_LETTERS])
            if alerts_topic:
                sent[DELIVERED] | f"Publish{name}Alerts" >> PublishAlerts(alerts_topic)
            if out_dir is not None:
                sent[DELIVERED] | f"Write{name}Alerts" >> write(out_dir, "alerts", alert_record)
                sent[DEAD_LETTERS] | f"Write{name}DeadLetters" >> write(out_dir, "dead_letters", dead_letter_record)
        if out_dir is not None:
            unique | "WriteItems" >> write(out_dir, "items", item_record)
            if source_dead is not None:
                source_dead | "WriteSourceDeadLetters" >> write(out_dir, "dead_letters", dead_letter_record)
            if health is not None:
                health | "WriteFeedHealth" >> write(out_dir, "feeds", lambda h: h.model_dump(mode="json"))
        # Per-branch collections, not flattened: a Flatten's input would be held in memory until the
        # (never-ending) source ends on the local runner.
        return PipelineOutputs(items=unique, alerts=tuple(delivered), dead_letters=tuple(dead), health=health)

    alerts = tuple(branches.values()) | "AllAlerts" >> beam.Flatten().with_output_types(Alert)
    delivery = alerts | "Deliver" >> DeliverAlerts(subscriptions, deliverer_options)
    dead_parts = [delivery[DEAD_LETTERS]] + ([source_dead] if source_dead is not None else [])
    dead = tuple(dead_parts) | "AllDeadLetters" >> beam.Flatten().with_output_types(DeadLetter)
    outputs = PipelineOutputs(items=unique, alerts=delivery[DELIVERED], dead_letters=dead, health=health)
    if out_dir is not None:
        outputs.items | "WriteItems" >> WriteJsonl(out_dir, "items", item_record)
        outputs.alerts | "WriteAlerts" >> WriteJsonl(out_dir, "alerts", alert_record)
        outputs.dead_letters | "WriteDeadLetters" >> WriteJsonl(out_dir, "dead_letters", dead_letter_record)
        if health is not None:
            health | "WriteFeedHealth" >> WriteJsonl(out_dir, "feeds", lambda h: h.model_dump(mode="json"))
    return outputs
