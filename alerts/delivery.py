"""DeliverAlerts: the sink seam. Alerts in; delivered alerts out, and dead letters on a tagged output.

Sinks: ``file`` (the output folder's alerts.jsonl, written downstream, so delivery is the hand-over),
``stdout`` (one JSON line per alert, for piping) and ``webhook`` (Standard Webhooks, concurrent,
with retries; see alerts/webhooks.py). The webhook DoFn submits every alert of a bundle without
waiting and collects the outcomes in ``finish_bundle``: on the local runner a DoFn sees one element
at a time on one thread, so waiting per alert would hold up everything behind a slow endpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from alerts.subscriptions import Subscription, SubscriptionsFile
from alerts.webhooks import WebhookDeliverer, WebhookTarget, to_dead_letter
from pipelines import metrics
from pipelines.model import Alert

__all__ = ["DEAD_LETTERS", "DELIVERED", "DeliverAlerts", "webhook_targets"]

DELIVERED = "delivered"
DEAD_LETTERS = "dead_letters"


def webhook_targets(subs: list[Subscription]) -> dict[str, WebhookTarget]:
    """Targets for the enabled webhook subscriptions, secrets resolved (call on the worker)."""
    return {
        s.id: WebhookTarget(
            subscription=s.id,
            url=s.url or "",
            secret=s.resolved_secret(),
            allow_private_targets=s.allow_private_targets,
            max_attempts=s.max_attempts,
        )
        for s in subs
        if s.enabled and s.sink == "webhook"
    }


class _Deliver(beam.DoFn):
    """One DoFn for every sink, so a live pipeline needs no Flatten (on the local runner a Flatten
    or GroupByKey boundary holds data until the source finishes; fused steps run live)."""

    def __init__(self, subs: list[Subscription], deliverer_options: dict | None = None) -> None:
        self._subs = subs
        self._sinks = {s.id: s.sink for s in subs}
        self._options = deliverer_options or {}
        self._deliverer: WebhookDeliverer | None = None

    def setup(self) -> None:
        targets = webhook_targets(self._subs)
        if targets:
            self._deliverer = WebhookDeliverer(targets, **self._options)

    def start_bundle(self) -> None:
        self._pending: dict[tuple[str, str], tuple[Alert, Timestamp]] = {}

    def process(self, alert: Alert, timestamp=beam.DoFn.TimestampParam) -> Iterator[Alert]:
        sink = self._sinks.get(alert.subscription, "file")
        if sink == "webhook" and self._deliverer is not None:
            self._pending[(alert.subscription, alert.id)] = (alert, timestamp)
            # Updates of one story go after its item alert, per subscription.
            order = f"{alert.subscription}/{alert.story_id}" if alert.story_id else None
            self._deliverer.submit(alert, order_key=order)
            return
        if sink == "stdout":
            sys.stdout.write(alert.model_dump_json() + "\n")
            sys.stdout.flush()
        metrics.inc("alert_deliveries", sink=sink, outcome="delivered")
        yield alert

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._deliverer is None or not self._pending:
            return
        for result in self._deliverer.drain():
            alert, timestamp = self._pending.pop((result.subscription, result.alert_id))
            delivered = result.outcome == "delivered"
            metrics.inc("alert_deliveries", sink="webhook", outcome="delivered" if delivered else "dead_letter")
            if delivered:
                yield WindowedValue(alert, timestamp, [GlobalWindow()])
            else:  # the deliverer counted it in dead_letters{stage=delivery}
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS, WindowedValue(to_dead_letter(result), timestamp, [GlobalWindow()])
                )

    def teardown(self) -> None:
        if self._deliverer is not None:
            self._deliverer.close()
            self._deliverer = None


class DeliverAlerts(beam.PTransform):
    """Alerts → {"delivered": Alerts, "dead_letters": DeadLetters}."""

    def __init__(self, subscriptions: SubscriptionsFile, deliverer_options: dict | None = None) -> None:
        super().__init__()
        self._subs = list(subscriptions.subscriptions)
        self._options = deliverer_options

    def expand(self, alerts: beam.PCollection) -> dict[str, beam.PCollection]:
        sent = alerts | "SendToSinks" >> beam.ParDo(_Deliver(self._subs, self._options)).with_outputs(
            DEAD_LETTERS, main=DELIVERED
        )
        return {DELIVERED: sent[DELIVERED], DEAD_LETTERS: sent[DEAD_LETTERS]}
