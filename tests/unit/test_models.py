"""Models: JSON round trips and stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pipelines.model import Alert, AlertItem, ClassifiedItem, DeadLetter, Evidence, NewsItem, TopicMatch, item_id

WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def news_item() -> NewsItem:
    return NewsItem(
        id=item_id("feed", "https://example.test/a", "T", None),
        source="feed",
        source_kind="rss",
        url="https://example.test/a",
        title="T",
        body="B",
        published=WHEN,
        ingested=WHEN,
    )


def match() -> TopicMatch:
    ev = Evidence(term="spy*", text="spies", field="body", start=0, end=5, rule="term", weight=2.0)
    return TopicMatch(topic="spying", score=0.6, evidence=[ev])


def test_round_trip_every_model():
    item = news_item()
    classified = ClassifiedItem(item=item, matches=[match()])
    alert = Alert(
        id="alrt_x",
        kind="alert.item",
        subscription="s",
        topics=["spying"],
        scores={"spying": 0.6},
        items=[AlertItem(id=item.id, title="T", url=item.url, source="feed", published=WHEN)],
        reason="matched",
        timestamp=WHEN,
    )
    dead = DeadLetter(stage="replay", source="x.txt", reason="empty_file")
    for model in (item, match(), classified, alert, dead):
        assert type(model).model_validate_json(model.model_dump_json()) == model


def test_datetimes_are_normalised_to_utc():
    local = datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    naive = datetime(2025, 3, 1, 12, 0)
    item = news_item().model_copy(update={})
    item = NewsItem(**{**item.model_dump(), "published": local, "ingested": naive})
    assert item.published == WHEN and item.published.tzinfo == UTC
    assert item.ingested == WHEN


def test_item_id_is_stable_and_uses_url_or_title_and_date():
    assert item_id("s", "https://x.test/1", "A", None) == item_id("s", "https://x.test/1", "B", WHEN)
    assert item_id("s", None, "A", WHEN) != item_id("s", None, "A", None)
    assert item_id("s", None, "A", WHEN) == item_id("s", None, "A", WHEN.astimezone(timezone(timedelta(hours=5))))
    assert len(item_id("s", None, "A", None)) == 16
