"""build_pipeline: the one place that knows every room. Wires composites; never runs anything."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from alerts.subscriptions import SubscriptionsFile
from alerts.transforms import DELIVERED, ApplyPolicy, DeliverAlerts
from pipelines.classify.rules import TopicsFile
from pipelines.classify.transform import Classify
from pipelines.dedupe import DedupeItems
from pipelines.model import DeadLetter
from pipelines.outputs import WriteJsonl, alert_record, dead_letter_record, item_record

__all__ = ["LEAD_CHARS", "PipelineOutputs", "build_pipeline"]

# What alerting needs of a body downstream of classification (story similarity uses the lead).
LEAD_CHARS = 600


@dataclass(frozen=True)
class PipelineOutputs:
    items: beam.PCollection  # ClassifiedItem
    alerts: beam.PCollection  # Alert (delivered)
    dead_letters: beam.PCollection  # DeadLetter


def build_pipeline(
    p: beam.Pipeline,
    source: beam.PTransform,
    topics: TopicsFile,
    subscriptions: SubscriptionsFile,
    out_dir: str | None = None,
) -> PipelineOutputs:
    """Source → Classify → Dedupe → Alerts → Deliver, plus JSONL writers when ``out_dir`` is given.

    ``source`` is any PTransform from PBegin to timestamped NewsItems, or to a dict with "items"
    and "dead_letters" (replay, RSS, Pub/Sub and test sources are interchangeable here).
    """
    produced = p | "Source" >> source
    if isinstance(produced, dict):
        items, source_dead = produced["items"], produced.get("dead_letters")
    else:
        items, source_dead = produced, None
    # Classify before the dedupe's GroupByKey and carry only the lead of each body past it: the local
    # runner materialises everything a GroupByKey receives, and bodies are most of an item's bytes.
    classified = (
        items
        | "Classify" >> Classify(topics, keep_body_chars=LEAD_CHARS, queries=subscriptions.queries)
        | "Dedupe" >> DedupeItems()
    )
    alerts = classified | "Alerts" >> ApplyPolicy(subscriptions)
    delivery = alerts | "Deliver" >> DeliverAlerts(subscriptions)
    dead_parts = [delivery["dead_letters"]] + ([source_dead] if source_dead is not None else [])
    dead = tuple(dead_parts) | "AllDeadLetters" >> beam.Flatten().with_output_types(DeadLetter)
    outputs = PipelineOutputs(items=classified, alerts=delivery[DELIVERED], dead_letters=dead)
    if out_dir is not None:
        outputs.items | "WriteItems" >> WriteJsonl(out_dir, "items", item_record)
        outputs.alerts | "WriteAlerts" >> WriteJsonl(out_dir, "alerts", alert_record)
        outputs.dead_letters | "WriteDeadLetters" >> WriteJsonl(out_dir, "dead_letters", dead_letter_record)
    return outputs
