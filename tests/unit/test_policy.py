"""Alert policy and subscriptions: pure decisions, deterministic ids, validated files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.policy import item_alerts
from alerts.subscriptions import Subscription, SubscriptionError, default_subscriptions, parse_subscriptions
from pipelines.model import ClassifiedItem, NewsItem, TopicMatch

WHEN = datetime(2025, 1, 2, tzinfo=UTC)


def classified(*scores: tuple[str, float]) -> ClassifiedItem:
    item = NewsItem(id="i1", source="s", source_kind="test", title="T", ingested=WHEN)
    return ClassifiedItem(item=item, matches=[TopicMatch(topic=t, score=s) for t, s in scores])


def test_default_subscription_alerts_on_every_topic():
    (alert,) = item_alerts(classified(("spying", 0.7), ("cyber", 0.55)), default_subscriptions().subscriptions)
    assert alert.topics == ["spying", "cyber"] and alert.kind == "alert.item"
    assert alert.items[0].id == "i1" and alert.timestamp == WHEN


def test_topics_and_min_score_filter_and_disabled_subscriptions_are_silent():
    subs = [
        Subscription(id="sec", topics=["spying", "embassy"], min_score=0.6),
        Subscription(id="trade", topics=["tariffs"]),
        Subscription(id="off", enabled=False),
    ]
    alerts = item_alerts(classified(("spying", 0.7), ("embassy", 0.55)), subs)
    assert [(a.subscription, a.topics) for a in alerts] == [("sec", ["spying"])]


def test_alert_ids_are_deterministic_and_distinct_per_subscription():
    subs = [Subscription(id="a"), Subscription(id="b")]
    first = item_alerts(classified(("spying", 0.7)), subs)
    again = item_alerts(classified(("spying", 0.7)), subs)
    assert [a.id for a in first] == [a.id for a in again]
    assert first[0].id != first[1].id


def test_no_match_no_alert():
    assert item_alerts(classified(), default_subscriptions().subscriptions) == []


def test_subscription_file_errors_name_the_subscription_and_field():
    text = '[[subscriptions]]\nid = "desk"\nmin_score = 3\n'
    with pytest.raises(SubscriptionError, match=r"subscription 'desk', field min_score"):
        parse_subscriptions(text, "subs.toml")
    with pytest.raises(SubscriptionError, match=r"unique"):
        parse_subscriptions('[[subscriptions]]\nid="a"\n[[subscriptions]]\nid="a"\n')
    subs = parse_subscriptions('[[subscriptions]]\nid="a"\ntopics=["spying", "spies"]\n')
    with pytest.raises(SubscriptionError, match=r"subscription 'a', field topics: unknown topic\(s\) spies"):
        subs.check_topics(["spying"])


def test_all_topics_query_and_kinds_narrow_a_subscription():
    from alerts.subscriptions import Query

    item = classified(("spying", 0.7), ("cyber", 0.6))
    both = Subscription(id="both", all_topics=["spying", "cyber"])
    needs_taiwan = Subscription(id="tw", all_topics=["spying", "taiwan"])
    queried = Subscription(id="q", query="China OR Beijing")
    no_items = Subscription(id="bursts-only", kinds=["burst"])
    assert [a.subscription for a in item_alerts(item, [both, needs_taiwan, queried, no_items])] == ["both"]
    with_query = item.model_copy(update={"queries": ["q"]})
    assert [a.subscription for a in item_alerts(with_query, [queried])] == ["q"]
    assert Query('"state secrets" AND China OR Beijing').matches("Beijing says no")
    assert Query('"state secrets" AND China OR Beijing').matches("China passed State  Secrets")
    assert not Query('"state secrets" AND China').matches("China secrets")
    assert not Query("China").matches("Indochina")


def test_webhook_subscriptions_need_a_valid_url_and_secret(monkeypatch):
    good = '[[subscriptions]]\nid = "desk"\nurl = "https://hooks.example.com/x"\nsecret = "DESK_SECRET"\n'
    subs = parse_subscriptions(good)
    assert subs.subscriptions[0].sink == "webhook"
    monkeypatch.delenv("DESK_SECRET", raising=False)
    with pytest.raises(SubscriptionError, match=r"subscription 'desk', field secret: environment variable DESK_SECRET"):
        subs.check_secrets()
    monkeypatch.setenv("DESK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    subs.check_secrets()
    assert subs.subscriptions[0].resolved_secret() == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert "MfKQ9r8" not in repr(subs) and "MfKQ9r8" not in str(subs.subscriptions[0])
    with pytest.raises(SubscriptionError, match=r"subscription 'desk', field url: .*http\(s\) URL"):
        parse_subscriptions(good.replace("https://hooks.example.com/x", "file:///etc/passwd"))
    with pytest.raises(SubscriptionError, match=r"subscription 'desk', field \(entry\): a webhook subscription needs"):
        parse_subscriptions('[[subscriptions]]\nid = "desk"\nurl = "https://hooks.example.com/x"\n')
    with pytest.raises(SubscriptionError, match=r"field query: .*every OR branch"):
        parse_subscriptions('[[subscriptions]]\nid = "desk"\nquery = "China OR"\n')


def test_generated_secrets_are_standard_webhooks_secrets():
    from standardwebhooks.webhooks import Webhook

    from alerts.subscriptions import generate_secret

    secret = generate_secret()
    assert secret.startswith("whsec_") and secret != generate_secret()
    Webhook(secret)  # the library accepts it
