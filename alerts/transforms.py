"""Beam adapters for alerting: ApplyPolicy (items → alerts) and DeliverAlerts (the sink seam)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from alerts.policy import item_alerts
from alerts.subscriptions import SubscriptionsFile
from pipelines import metrics
from pipelines.model import Alert, ClassifiedItem

__all__ = ["DELIVERED", "ApplyPolicy", "DeliverAlerts"]

DELIVERED = "delivered"
DEAD_LETTERS = "dead_letters"


class _ItemAlertsFn(beam.DoFn):
    def __init__(self, subscriptions: SubscriptionsFile) -> None:
        self._subs = list(subscriptions.subscriptions)

    def process(self, classified: ClassifiedItem) -> Iterator[Alert]:
        for alert in item_alerts(classified, self._subs):
            for topic in alert.topics:
                metrics.inc("alerts", kind=alert.kind, topic=topic)
            yield alert


class ApplyPolicy(beam.PTransform):
    """ClassifiedItems → Alerts according to the subscriptions."""

    def __init__(self, subscriptions: SubscriptionsFile) -> None:
        super().__init__()
        self._subs = subscriptions

    def expand(self, classified: beam.PCollection) -> beam.PCollection:
        return classified | "ItemAlerts" >> beam.ParDo(_ItemAlertsFn(self._subs))


class _DeliverFn(beam.DoFn):
    """Routes each alert to its subscription's sink.

    The ``file`` sink is the output folder's alerts.jsonl, written downstream, so delivery here is
    the hand-over. Sinks with side effects (webhooks, Pub/Sub) plug in here and report failures on
    the dead-letter output.
    """

    def __init__(self, subscriptions: SubscriptionsFile) -> None:
        self._sinks = {s.id: s.sink for s in subscriptions.subscriptions}

    def process(self, alert: Alert) -> Iterator[Alert]:
        sink = self._sinks.get(alert.subscription, "file")
        metrics.inc("alert_deliveries", sink=sink, outcome="delivered")
        yield alert


class DeliverAlerts(beam.PTransform):
    """Alerts → {"delivered": Alerts, "dead_letters": DeadLetters}."""

    def __init__(self, subscriptions: SubscriptionsFile) -> None:
        super().__init__()
        self._subs = subscriptions

    def expand(self, alerts: beam.PCollection) -> dict[str, beam.PCollection]:
        routed = alerts | "RouteToSinks" >> beam.ParDo(_DeliverFn(self._subs)).with_outputs(
            DEAD_LETTERS, main=DELIVERED
        )
        return {DELIVERED: routed[DELIVERED], DEAD_LETTERS: routed[DEAD_LETTERS]}
