"""``newsmon watch``: the live pipeline on the local runner, with a status line and clean shutdown."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TextIO

from alerts.subscriptions import SubscriptionsFile
from pipelines import metrics
from pipelines.classify.rules import TopicsFile
from pipelines.pipeline import build_pipeline
from pipelines.runner import make_pipeline
from pipelines.settings import WatchSettings
from pipelines.sources.feeds import FeedConfig
from pipelines.sources.rss import PollFeeds, request_stop

__all__ = ["check_local_options", "run_watch", "status_line"]


def check_local_options(beam_args: list[str]) -> str | None:
    """Why these Beam options cannot run ``watch`` locally, or None.

    More than one direct worker silently drops the deferred residuals of the feed source (each
    feed would be polled once), measured on Beam 2.77.
    """
    joined = " ".join(beam_args)
    if "multi_processing" in joined:
        return "watch cannot use --direct_running_mode=multi_processing (the feed source would poll once)"
    for i, arg in enumerate(beam_args):
        value = arg.split("=", 1)[1] if arg.startswith("--direct_num_workers=") else None
        if arg == "--direct_num_workers" and i + 1 < len(beam_args):
            value = beam_args[i + 1]
        if value is not None and value.strip() not in ("1", "0"):
            return "watch needs --direct_num_workers=1 (more workers drop the feed source's deferred polls)"
    return None


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    total = 0.0
    for family in metrics.registry().collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                total += s.value
    return total


def status_line() -> str:
    failing = 0
    polled = set()
    for family in metrics.registry().collect():
        for s in family.samples:
            if s.name == "newsmon_feed_consecutive_failures":
                polled.add(s.labels.get("feed"))
                failing += 1 if s.value > 0 else 0
    items = _sample("newsmon_items_ingested_total", {"source_kind": "rss"})
    alerts = _sample("newsmon_alerts_total")
    dead = _sample("newsmon_dead_letters_total")
    return (
        f"feeds ok {len(polled) - failing}, failing {failing} | new items {items:.0f} | "
        f"alerts {alerts:.0f} | dead letters {dead:.0f}"
    )


def run_watch(
    settings: WatchSettings,
    feeds: list[FeedConfig],
    topics: TopicsFile,
    subscriptions: SubscriptionsFile,
    beam_args: list[str],
    out: TextIO,
    status_every: float = 10.0,
    serve_metrics: Callable[[int], None] | None = None,
) -> None:
    metrics.enable_prometheus(None)
    if settings.metrics_port and serve_metrics is not None:
        serve_metrics(settings.metrics_port)
    pipeline = make_pipeline(beam_args)
    build_pipeline(
        pipeline,
        PollFeeds(
            feeds,
            interval=settings.interval,
            shards=settings.shards,
            duration=settings.duration,
            poller_options={"max_workers": settings.fetch_workers, "per_host": settings.per_host},
        ),
        topics,
        subscriptions,
        out_dir=settings.out_dir,
        streaming=True,
    )
    done = threading.Event()

    def report() -> None:
        while not done.wait(status_every):
            out.write(f"[{time.strftime('%H:%M:%S')}] {status_line()}\n")
            out.flush()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum, frame) -> None:
        out.write("newsmon watch: stopping after the current poll round…\n")
        out.flush()
        request_stop()

    for sig in previous:
        signal.signal(sig, stop)
    reporter = threading.Thread(target=report, daemon=True, name="newsmon-status")
    reporter.start()
    try:
        pipeline.run().wait_until_finish()
    finally:
        done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write(f"newsmon watch: stopped. {status_line()}\n")
