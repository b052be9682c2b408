"""Pure alert decisions: a classified item × subscriptions → alerts with deterministic ids."""

from __future__ import annotations

from alerts.subscriptions import Subscription
from pipelines.model import Alert, AlertItem, ClassifiedItem, stable_id

__all__ = ["alert_id", "item_alerts"]


def alert_id(subscription: str, kind: str, subject: str) -> str:
    """Same subscription, kind and subject → same id, in every rerun (receivers dedupe on it)."""
    return "alrt_" + stable_id(subscription, kind, subject, length=24)


def item_alerts(classified: ClassifiedItem, subscriptions: list[Subscription]) -> list[Alert]:
    """One item alert per enabled subscription that wants at least one of the item's topics.

    A subscription also needs all of its ``all_topics`` matched (at any score) and, when it has a
    query, the item's full text to satisfy it (recorded on the classified item by Classify).
    """
    item = classified.item
    alerts = []
    for sub in subscriptions:
        if not sub.enabled or not sub.wants_kind("alert.item"):
            continue
        if sub.query and sub.id not in classified.queries:
            continue
        if sub.all_topics and not set(sub.all_topics) <= {m.topic for m in classified.matches}:
            continue
        wanted = [m for m in classified.matches if sub.wants(m.topic, m.score)]
        if not wanted:
            continue
        reason = "matched " + ", ".join(
            f"{m.topic} ({m.score:.2f}: {', '.join(sorted({e.text for e in m.evidence})[:4])})" for m in wanted
        )
        alerts.append(
            Alert(
                id=alert_id(sub.id, "alert.item", item.id),
                kind="alert.item",
                subscription=sub.id,
                topics=[m.topic for m in wanted],
                scores={m.topic: m.score for m in wanted},
                items=[
                    AlertItem(id=item.id, title=item.title, url=item.url, source=item.source, published=item.published)
                ],
                reason=reason,
                timestamp=item.ingested,
            )
        )
    return alerts
