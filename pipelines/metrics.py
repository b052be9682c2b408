"""The metrics facade: every transform records through here, never through a metrics library.

Today it records Beam Metrics in the ``newsmon`` namespace (these become job custom metrics on
Dataflow). Labels are folded into the metric name as ``name{key=value}`` because Beam counters
have no labels; keep label values bounded (topic, source kind, stage, outcome — never URLs).
"""

from __future__ import annotations

from functools import lru_cache

from apache_beam.metrics import Metrics

__all__ = ["NAMESPACE", "inc", "metric_name", "observe"]

NAMESPACE = "newsmon"


def metric_name(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{name}{{{inner}}}"


@lru_cache(maxsize=4096)
def _counter(full: str):
    return Metrics.counter(NAMESPACE, full)


@lru_cache(maxsize=1024)
def _distribution(full: str):
    return Metrics.distribution(NAMESPACE, full)


def inc(name: str, n: int = 1, **labels: str) -> None:
    """Add ``n`` to a counter."""
    _counter(metric_name(name, labels)).inc(n)


def observe(name: str, value: int, **labels: str) -> None:
    """Record an integer observation (e.g. microseconds) in a distribution."""
    _distribution(metric_name(name, labels)).update(value)
