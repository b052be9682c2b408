"""The metrics facade: one declared metric set, bounded labels, typos fail loudly."""

from __future__ import annotations

import pytest

from pipelines import metrics


def test_undeclared_metric_names_fail():
    with pytest.raises(KeyError, match="undeclared metric 'items_ingestd'"):
        metrics.inc("items_ingestd", source_kind="replay")


def test_labels_must_match_the_declaration():
    with pytest.raises(KeyError, match="takes labels"):
        metrics.inc("items_ingested")
    with pytest.raises(KeyError, match="takes labels"):
        metrics.inc("alerts", kind="alert.item", topic="spying", url="https://x.test")


def test_metric_set_follows_prometheus_conventions():
    for name, definition in metrics.METRICS.items():
        assert not name.startswith("newsmon_") and not name.endswith("_total"), name
        if definition.kind == "histogram":
            assert name.endswith("_seconds"), name
        for label in definition.labels:
            assert label in {"topic", "source_kind", "feed", "stage", "outcome", "kind", "status", "sink"}, label


def test_beam_name_folds_labels_in_sorted_order():
    assert metrics.metric_name("alerts", {"topic": "spying", "kind": "alert.item"}) == (
        "alerts{kind=alert.item,topic=spying}"
    )


def test_beam_metric_names_drop_the_feed_label_and_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(metrics.ENV_BEAM, "1")
    metrics._resolved.clear()
    beam_counter, _ = metrics._resolve("counter", "feed_polls", {"feed": "bbc", "outcome": "ok"})
    assert beam_counter.metric_name.name == "feed_polls{outcome=ok}"
    monkeypatch.setenv(metrics.ENV_BEAM, "0")
    metrics._resolved.clear()
    beam_counter, _ = metrics._resolve("counter", "feed_polls", {"feed": "bbc", "outcome": "ok"})
    assert isinstance(beam_counter, metrics._NoBeam)
    metrics._resolved.clear()


def test_local_runner_consolidates_monitoring_infos_eagerly():
    """Long local runs must not keep one lazy generator per bundle (memory and RecursionError)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from pipelines.runner import local_runner

    local_runner(PipelineOptions([]))
    merged = []
    for _ in range(3000):  # deeper than the recursion limit if it were still a chain of generators
        merged = fn_runner.consolidate_monitoring_infos(merged)
    assert isinstance(merged, list) and merged == []
