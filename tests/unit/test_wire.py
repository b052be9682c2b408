"""The batch wire encoding round-trips classified items exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pipelines.classify.engine import Engine
from pipelines.classify.rules import load_topics
from pipelines.model import ClassifiedItem, NewsItem
from pipelines.wire import from_wire, to_wire


def test_round_trip_equals_validated_decoding():
    engine = Engine(load_topics())
    when = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    items = [
        NewsItem(id="a", source="s", source_kind="rss", url="https://x.test/a", title="Two men charged with spying",
                 body="Espionage case: “state secrets” passed to Beijing’s MI6 rivals.", published=when,
                 ingested=when + timedelta(minutes=5), guid="g1", also_sources=["t"]),
        NewsItem(id="b", source="s", source_kind="replay", title="Recipe", body="", ingested=when.astimezone(
            timezone(timedelta(hours=2)))),
    ]  # fmt: skip
    for item in items:
        classified = ClassifiedItem(item=item, matches=engine.classify(item.title, item.body), queries=["q"])
        decoded = from_wire(to_wire(classified))
        assert decoded == ClassifiedItem.model_validate_json(classified.model_dump_json())
        assert decoded.model_dump() == classified.model_dump()
        assert to_wire(decoded) == to_wire(classified)
