"""The composite pipeline on small inputs: TestPipeline + assert_that, no CLI."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from alerts.subscriptions import Subscription, SubscriptionsFile, default_subscriptions
from pipelines.classify.rules import load_topics
from pipelines.model import NewsItem
from pipelines.pipeline import build_pipeline
from pipelines.sources.replay import ReplayArticles, expand_inputs
from tests.conftest import local_test_pipeline

WHEN = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)


def item(n: int, title: str, body: str = "") -> NewsItem:
    return NewsItem(id=f"i{n}", source="mem", source_kind="test", title=title, body=body, ingested=WHEN)


IN_MEMORY = [
    item(1, "Two men charged with spying for China", "Prosecutors say the pair passed secrets to Beijing."),
    item(2, "China doubles import tariffs on Scotch whisky", "The customs duties hit exporters."),
    item(3, "Local bakery wins award", "A sourdough triumph."),
    item(1, "Two men charged with spying for China", "Prosecutors say the pair passed secrets to Beijing."),
]


def test_in_memory_source_is_deduped_classified_and_alerted():
    subs = SubscriptionsFile(subscriptions=[Subscription(id="security", topics=["spying"])])
    with local_test_pipeline() as p:
        out = build_pipeline(p, beam.Create(IN_MEMORY), load_topics(), subs)
        topics = out.items | beam.Map(lambda c: (c.item.id, tuple(c.topics)))
        assert_that(
            topics | beam.Map(lambda t: (t[0], "spying" in t[1], "tariffs" in t[1], len(t[1]) == 0)),
            equal_to([("i1", True, False, False), ("i2", False, True, False), ("i3", False, False, True)]),
            label="Topics",
        )
        assert_that(
            out.alerts | beam.Map(lambda a: (a.subscription, a.items[0].id, tuple(a.topics))),
            equal_to([("security", "i1", ("spying",))]),
            label="Alerts",
        )


def test_replay_source_reads_files_and_dead_letters_bad_ones(tmp_path):
    (tmp_path / "good.txt").write_text(
        "Spy case collapses\n\nProsecutors dropped the espionage case against two men accused of spying.\n",
        encoding="utf-8",
    )
    (tmp_path / "latin1.txt").write_bytes(
        "Tariff row\n\nCaf\xe9 owners fear new tariffs on imports.\n".encode("latin-1")
    )
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "big.txt").write_text("x" * 5000, encoding="utf-8")
    (tmp_path / ".hidden").write_text("ignored", encoding="utf-8")
    specs = expand_inputs([str(tmp_path)])
    root = tmp_path.name
    with local_test_pipeline() as p:
        out = build_pipeline(p, ReplayArticles(specs, max_file_bytes=4096), load_topics(), default_subscriptions())
        assert_that(
            out.items | beam.Map(lambda c: (c.item.source, c.item.title)),
            equal_to([(f"{root}/good.txt", "Spy case collapses"), (f"{root}/latin1.txt", "Tariff row")]),
            label="Items",
        )
        assert_that(
            out.dead_letters | beam.Map(lambda d: (d.source, d.reason)),
            equal_to(
                [
                    (f"{root}/empty.txt", "empty_file"),
                    (f"{root}/image.txt", "binary_file"),
                    (f"{root}/big.txt", "file_too_large"),
                ]
            ),
            label="DeadLetters",
        )


SLEPT: list[float] = []


def _record_sleep(seconds: float) -> None:
    SLEPT.append(seconds)


def test_speed_paces_items_in_event_time_order(tmp_path):
    for name, day in (
        ("b.txt", "3 March 2025 12:00"),
        ("a.txt", "3 March 2025 10:00"),
        ("c.txt", "3 March 2025 13:00"),
    ):
        (tmp_path / name).write_text(f"Headline {name}\n\n{day}\n\nBody of {name}.\n", encoding="utf-8")
    SLEPT.clear()
    with local_test_pipeline() as p:
        items = (p | ReplayArticles(expand_inputs([str(tmp_path)]), speed=3600, sleep=_record_sleep))["items"]
        assert_that(
            items | beam.Map(lambda i: i.title), equal_to(["Headline a.txt", "Headline b.txt", "Headline c.txt"])
        )
    # 2 h then 1 h of event time at 3600 event-seconds per second
    assert SLEPT == [2.0, 1.0]
