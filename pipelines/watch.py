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
from pipelines.runner import describe_result, is_local, make_pipeline
from pipelines.settings import WatchSettings
from pipelines.sources.feeds import FeedConfig
from pipelines.sources.rss import PollFeeds, request_stop

__all__ = ["check_local_options", "run_live", "run_watch", "status_line"]


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
    items = _sample("newsmon_items_ingested_total")
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
    alerts_topic: str | None = None,
) -> None:
    local = is_local(beam_args)
    source = PollFeeds(
        feeds,
        interval=settings.interval,
        shards=settings.shards,
        duration=settings.duration,
        sleep_locally=local,
        poller_options={"max_workers": settings.fetch_workers, "per_host": settings.per_host},
    )
    run_live(
        source, topics, subscriptions, beam_args, out,
        out_dir=settings.out_dir, metrics_port=settings.metrics_port, serve_metrics=serve_metrics,
        status_every=status_every, alerts_topic=alerts_topic,
    )  # fmt: skip


def run_live(
    source,
    topics: TopicsFile,
    subscriptions: SubscriptionsFile,
    beam_args: list[str],
    out: TextIO,
    *,
    out_dir: str | None,
    metrics_port: int = 0,
    serve_metrics: Callable[[int], None] | None = None,
    status_every: float = 10.0,
    alerts_topic: str | None = None,
    pubsub: bool = False,
    duration: float | None = None,
) -> None:
    """Build and run an unbounded pipeline. Locally: status line, /metrics, Ctrl-C/SIGTERM stop it
    cleanly (and ``duration`` for sources that do not end themselves). Remotely: submit and return."""
    local = is_local(beam_args)
    pipeline = make_pipeline(beam_args, streaming=True, pubsub=pubsub)
    build_pipeline(pipeline, source, topics, subscriptions, out_dir=out_dir, streaming=True, alerts_topic=alerts_topic)
    if not local:
        out.write(f"newsmon: submitted streaming pipeline ({describe_result(pipeline.run())})\n")
        return
    metrics.enable_prometheus(None)
    metrics.disable_beam_metrics()
    if metrics_port and serve_metrics is not None:
        serve_metrics(metrics_port)
    done = threading.Event()

    def report() -> None:
        while not done.wait(status_every):
            out.write(f"[{time.strftime('%H:%M:%S')}] {status_line()}\n")
            out.flush()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping = threading.Event()

    def stop(signum, frame) -> None:
        out.write("newsmon: stopping after the current round…\n")
        out.flush()
        request_stop()
        stopping.set()

    for sig in previous:
        signal.signal(sig, stop)
    reporter = threading.Thread(target=report, daemon=True, name="newsmon-status")
    reporter.start()
    try:
        result = pipeline.run()
        if pubsub:
            # The direct runner's Pub/Sub read never ends by itself: run for the duration or until a
            # signal, then cancel (stateful steps have written their outputs as they went).
            deadline = None if duration is None else time.monotonic() + duration
            while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                if str(result.state) in _ENDED:
                    break
                stopping.wait(0.5)
            if str(result.state) not in _ENDED:
                result.cancel()
        else:
            result.wait_until_finish()
    finally:
        done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write(f"newsmon: stopped. {status_line()}\n")


_ENDED = {"DONE", "FAILED", "CANCELLED", "UPDATED", "DRAINED", "PipelineState.DONE", "PipelineState.FAILED",
          "PipelineState.CANCELLED"}  # fmt: skip
