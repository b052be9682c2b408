"""The metrics facade: every transform records through here, never through a metrics library.

Each call records a Beam metric in the ``newsmon`` namespace (these become job custom metrics on
Dataflow; Beam has no labels, so they are folded into the name as ``name{key=value}``) and, in local
runs where Prometheus export is switched on, the matching prometheus-client collector.

Prometheus export is switched on through the environment (``NEWSMON_PROMETHEUS=1``), not a global
set in the CLI, because with ``--direct_running_mode=multi_processing`` the DoFns run in worker
processes that inherit the environment but not the parent's Python state; those workers write to
prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) so all figures add up.

Names follow Prometheus conventions: one ``newsmon_`` prefix, base units, ``_total`` counters,
``_seconds`` histograms, and bounded labels only (topic, source kind, feed id, stage, outcome).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from apache_beam.metrics import Metrics

__all__ = [
    "METRICS",
    "NAMESPACE",
    "MetricDef",
    "beam_metrics_enabled",
    "disable_beam_metrics",
    "enable_prometheus",
    "inc",
    "metric_name",
    "observe",
    "prometheus_enabled",
    "registry",
    "render",
    "set_gauge",
]

NAMESPACE = "newsmon"
ENV_ENABLE = "NEWSMON_PROMETHEUS"
ENV_BEAM = "NEWSMON_BEAM_METRICS"
# Per-feed labels stay in Prometheus only: as Beam metric names they would multiply custom metrics
# on Dataflow by the number of feeds.
_BEAM_DROPPED_LABELS = frozenset({"feed"})
ENV_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600, 7 * 86400)


@dataclass(frozen=True)
class MetricDef:
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = _SECONDS_BUCKETS
    gauge_mode: str = "livesum"  # how multiprocess gauges combine


# The whole metric set: a name used anywhere must be declared here (a typo fails in tests).
METRICS: dict[str, MetricDef] = {
    "items_ingested": MetricDef("counter", "Items read from sources.", ("source_kind",)),
    "items_classified": MetricDef("counter", "Items classified."),
    "items_by_topic": MetricDef("counter", "Classified items per matched topic.", ("topic",)),
    "items_duplicate": MetricDef("counter", "Items dropped as duplicates of an item already seen."),
    "dead_letters": MetricDef("counter", "Inputs or deliveries turned into dead-letter records.", ("stage",)),
    "replay_files": MetricDef("counter", "Replay files read."),
    "replay_decode_replaced": MetricDef("counter", "Replay files whose invalid UTF-8 was replaced."),
    "classify_seconds": MetricDef("histogram", "Time to classify one item."),
    "event_lag_seconds": MetricDef(
        "histogram", "Processing time minus published time of live items.", ("source_kind",), _LAG_BUCKETS
    ),
    "feed_polls": MetricDef("counter", "Feed polls by outcome.", ("feed", "outcome")),
    "feed_entries": MetricDef("counter", "Feed entries seen, new or duplicate.", ("feed", "status")),
    "feed_consecutive_failures": MetricDef("gauge", "Consecutive failed polls of a feed.", ("feed",), gauge_mode="max"),
    "feed_last_success_timestamp_seconds": MetricDef(
        "gauge", "Unix time of a feed's last successful poll.", ("feed",), gauge_mode="max"
    ),
    "feed_fetch_seconds": MetricDef("histogram", "Time to fetch one feed.", ("feed",)),
    "alerts": MetricDef("counter", "Alerts decided, by kind and topic.", ("kind", "topic")),
    "webhook_deliveries": MetricDef("counter", "Webhook deliveries by final outcome.", ("outcome",)),
    "webhook_attempts": MetricDef("counter", "Webhook HTTP attempts (retries included)."),
    "webhook_delivery_seconds": MetricDef("histogram", "Time from first attempt to final outcome of a delivery."),
    "alert_deliveries": MetricDef("counter", "Alerts handed to a sink, by sink and outcome.", ("sink", "outcome")),
}


def metric_name(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{name}{{{inner}}}"


def _definition(name: str, labels: dict[str, Any]) -> MetricDef:
    definition = METRICS.get(name)
    if definition is None:
        raise KeyError(f"undeclared metric {name!r}: add it to pipelines.metrics.METRICS")
    if set(labels) != set(definition.labels):
        raise KeyError(f"metric {name!r} takes labels {definition.labels}, got {tuple(sorted(labels))}")
    return definition


# --- Beam -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _beam_counter(full: str):
    return Metrics.counter(NAMESPACE, full)


@lru_cache(maxsize=1024)
def _beam_distribution(full: str):
    return Metrics.distribution(NAMESPACE, full)


@lru_cache(maxsize=1024)
def _beam_gauge(full: str):
    return Metrics.gauge(NAMESPACE, full)


# --- Prometheus (local runs) ----------------------------------------------------------------------


def prometheus_enabled() -> bool:
    return os.environ.get(ENV_ENABLE) == "1"


def disable_beam_metrics() -> None:
    """For local unbounded runs: record Prometheus only (see :func:`beam_metrics_enabled`)."""
    os.environ[ENV_BEAM] = "0"
    _resolved.clear()


def enable_prometheus(multiprocess_dir: str | None = None) -> None:
    """Switch on Prometheus export for this process and the worker processes it starts."""
    os.environ[ENV_ENABLE] = "1"
    if multiprocess_dir:
        os.makedirs(multiprocess_dir, exist_ok=True)
        os.environ[ENV_MULTIPROC] = multiprocess_dir
    _collectors.cache_clear()
    registry.cache_clear()
    _resolved.clear()


@lru_cache(maxsize=1)
def registry():
    """The registry this process exposes (multiprocess-aware), with every declared metric."""
    import prometheus_client
    from prometheus_client import CollectorRegistry

    _collectors()  # make sure this process's collectors exist
    if os.environ.get(ENV_MULTIPROC):
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    return prometheus_client.REGISTRY


@lru_cache(maxsize=1)
def _collectors() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    from pipelines import __version__

    out: dict[str, Any] = {}
    for name, d in METRICS.items():
        full = "newsmon_" + (name.removesuffix("_total"))
        if d.kind == "counter":
            out[name] = Counter(full, d.help, d.labels)
        elif d.kind == "gauge":
            out[name] = Gauge(full, d.help, d.labels, multiprocess_mode=d.gauge_mode)
        else:
            out[name] = Histogram(full, d.help, d.labels, buckets=d.buckets)
    info = Gauge("newsmon_build_info", "newsmon build information (value is always 1).", ("version",),
                 multiprocess_mode="max")  # fmt: skip
    info.labels(version=__version__).set(1)
    return out


def _prom(name: str, labels: dict[str, Any]):
    collector = _collectors()[name]
    return collector.labels(**{k: str(v) for k, v in labels.items()}) if labels else collector


# --- the facade -----------------------------------------------------------------------------------


_resolved: dict[tuple, tuple[Any, Any]] = {}


class _NoBeam:
    """Stands in for Beam metrics in local live runs (see :func:`beam_metrics_enabled`)."""

    def inc(self, n: int = 1) -> None: ...
    def update(self, value: int) -> None: ...
    def set(self, value: int) -> None: ...


def beam_metrics_enabled() -> bool:
    """Off only where the environment says so: ``watch``/``stream`` on the local runner.

    Beam 2.77's FnApiRunner keeps every bundle's monitoring infos in a chain of lazy generators that
    is only consumed when the pipeline ends (the RecursionError after ~1000 bundles comes from it), so
    an unbounded local run that records Beam metrics grows without bound (measured: 0.6 → 4.7 GB in
    10 minutes with 1,000 feeds). Local runs have Prometheus; Dataflow keeps Beam metrics.
    """
    return os.environ.get(ENV_BEAM, "1") != "0"


def _resolve(kind: str, name: str, labels: dict[str, Any]) -> tuple[Any, Any]:
    """(Beam metric, Prometheus child or None) for one name+labels, checked and built once."""
    key = (kind, name, *labels.items())
    found = _resolved.get(key)
    if found is None:
        _definition(name, labels)
        beam_labels = {k: v for k, v in labels.items() if k not in _BEAM_DROPPED_LABELS}
        if not beam_metrics_enabled():
            beam_metric: Any = _NoBeam()
        elif kind == "counter":
            beam_metric = _beam_counter(metric_name(name, beam_labels))
        elif kind == "histogram":
            beam_metric = _beam_distribution(metric_name(name.removesuffix("_seconds") + "_microseconds", beam_labels))
        else:
            beam_metric = _beam_gauge(metric_name(name, beam_labels))
        found = _resolved[key] = (beam_metric, _prom(name, labels) if prometheus_enabled() else None)
    return found


def inc(name: str, n: int = 1, **labels: str) -> None:
    """Add ``n`` to a counter."""
    beam_metric, prom = _resolve("counter", name, labels)
    beam_metric.inc(n)
    if prom is not None:
        prom.inc(n)


def observe(name: str, seconds: float, **labels: str) -> None:
    """Record one observation of a ``_seconds`` histogram (Beam: a distribution in microseconds)."""
    beam_metric, prom = _resolve("histogram", name, labels)
    beam_metric.update(int(seconds * 1_000_000))
    if prom is not None:
        prom.observe(seconds)


def set_gauge(name: str, value: float, **labels: str) -> None:
    beam_metric, prom = _resolve("gauge", name, labels)
    beam_metric.set(int(value))
    if prom is not None:
        prom.set(value)


def render() -> bytes:
    """The Prometheus text exposition of everything recorded (all worker processes included)."""
    from prometheus_client import generate_latest

    return generate_latest(registry())
