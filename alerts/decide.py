"""Pure alert decisions over event-time-ordered items: what the batch (replay) shape runs per key.

The streaming shape feeds the same cores one item at a time from state; both produce the same alerts
for the same order of items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from alerts.bursts import BurstDetector, burst_alert
from alerts.policy import item_alerts
from alerts.stories import StoryIndex, story_alerts
from alerts.subscriptions import Subscription
from pipelines.model import Alert, AlertItem, ClassifiedItem

__all__ = ["BurstAlerter", "StoryAlerter", "burst_alerts_in_order", "event_order", "story_alerts_in_order"]


def event_order(c: ClassifiedItem) -> tuple:
    return (c.item.ingested, c.item.id)


class StoryAlerter:
    """Per item: the policy's alerts, made story-aware (one alert.item per story, then updates)."""

    def __init__(self, subs: list[Subscription]) -> None:
        self.subs = subs
        self.updates_wanted = {s.id for s in subs if s.wants_kind("alert.updated")}

    def alerts(self, index: StoryIndex, classified: ClassifiedItem) -> list[Alert]:
        decision = index.assign(classified.item)
        made = story_alerts(decision, classified, item_alerts(classified, self.subs))
        return [a for a in made if a.kind != "alert.updated" or a.subscription in self.updates_wanted]


class BurstAlerter:
    """Per item of one topic: a burst alert for each subscription that wants the topic's bursts."""

    def __init__(self, subs: list[Subscription]) -> None:
        self.subs = [s for s in subs if s.enabled and s.wants_kind("alert.burst")]

    def alerts(self, detector: BurstDetector, topic: str, classified: ClassifiedItem) -> list[Alert]:
        item = classified.item
        ref = AlertItem(id=item.id, title=item.title, url=item.url, source=item.source, published=item.published)
        return self.observe(detector, topic, item.ingested, ref)

    def observe(self, detector: BurstDetector, topic: str, when: datetime, ref: AlertItem) -> list[Alert]:
        event = detector.observe(when, ref)
        if event is None:
            return []
        return [burst_alert(topic, event, s.id) for s in self.subs if not s.topics or topic in s.topics]


def story_alerts_in_order(items: Iterable[ClassifiedItem], subs: list[Subscription]) -> Iterator[Alert]:
    alerter, index = StoryAlerter(subs), StoryIndex()
    for classified in sorted(items, key=event_order):
        yield from alerter.alerts(index, classified)


def burst_alerts_in_order(topic: str, items: Iterable[ClassifiedItem], subs: list[Subscription]) -> Iterator[Alert]:
    alerter, detector = BurstAlerter(subs), BurstDetector()
    for classified in sorted(items, key=event_order):
        yield from alerter.alerts(detector, topic, classified)
