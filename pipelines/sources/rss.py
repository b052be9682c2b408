"""PollFeeds: RSS/Atom feeds as an unbounded source — a splittable DoFn over shards of feeds.

Measured constraints of Beam 2.77's local FnApiRunner shaped this: SDF elements run one at a time
on one thread, so each element is a *shard* of feeds whose due feeds are fetched concurrently
(FeedPoller); ``PeriodicImpulse`` busy-loops and leaks, so the element sleeps until its next feed
is due and then defers its remainder (on Dataflow it defers *until* that time instead of sleeping);
``--direct_num_workers`` > 1 drops deferred residuals, so ``watch`` refuses it.

The restriction is a range of poll times in epoch milliseconds: each round claims "now", and a
``--duration`` deadline is the range's end, so the source finishes cleanly by failing to claim.
Poller state (validators, schedules, seen ids) lives with the worker, keyed by shard; a worker
restart repolls, and the downstream dedupe drops what was already emitted.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from pipelines import metrics
from pipelines.sources.feeds import FeedConfig
from pipelines.sources.poller import FeedPoller

__all__ = ["HEALTH", "PollFeeds", "request_stop", "shard_feeds", "stop_requested"]

HEALTH = "health"
_FOREVER_MS = 2**62
_LOCAL_NAP = 0.25  # seconds a shard sleeps at most before yielding to the other shards
_LONG_NAP = 3600.0  # a lone shard sleeps until its next feed is due (signals are still checked)
_STOP = threading.Event()
# Pollers outlive DoFn instances: the local runner may build a new instance for a residual.
_POLLERS: dict[tuple[int, str], FeedPoller] = {}
_POLLERS_LOCK = threading.Lock()


def request_stop() -> None:
    """Ask every running feed shard to finish after its current round (Ctrl-C / SIGTERM)."""
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def shard_feeds(feeds: list[FeedConfig], shards: int) -> dict[str, list[FeedConfig]]:
    """Feeds hashed into ``shards`` groups by id (stable across runs and processes)."""
    out: dict[str, list[FeedConfig]] = {}
    for feed in feeds:
        out.setdefault(f"shard-{zlib.crc32(feed.id.encode()) % shards:03d}", []).append(feed)
    return out


def utc_now() -> datetime:
    return datetime.now(UTC)


class _PollTimes(RestrictionProvider):
    def __init__(self, stop_ms: int) -> None:
        self._stop_ms = stop_ms

    def initial_restriction(self, element: str) -> OffsetRange:
        return OffsetRange(0, self._stop_ms)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: str, restriction: OffsetRange) -> int:
        return 1

    def truncate(self, element: str, restriction: OffsetRange) -> None:
        return None  # on drain, stop polling


_POLL_TIMES = _PollTimes(_FOREVER_MS)
_WATERMARKS = ManualWatermarkEstimator.default_provider()


class _PollShard(beam.DoFn):
    def __init__(
        self,
        shards: dict[str, list[FeedConfig]],
        *,
        interval: float,
        stop_ms: int,
        sleep_locally: bool,
        poller_options: dict,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._shards = shards
        self._interval = interval
        self._stop_ms = stop_ms
        self._sleep_locally = sleep_locally
        self._poller_options = poller_options
        self._clock = clock
        self._token = id(self)

    def _poller(self, shard: str) -> FeedPoller:
        key = (self._token, shard)
        with _POLLERS_LOCK:
            poller = _POLLERS.get(key)
            if poller is None:
                poller = _POLLERS[key] = FeedPoller(
                    self._shards[shard], interval=self._interval, **self._poller_options
                )
            return poller

    def process(
        self,
        shard: str,
        tracker=beam.DoFn.RestrictionParam(_POLL_TIMES),
        watermark=beam.DoFn.WatermarkEstimatorParam(_WATERMARKS),
    ) -> Iterator[object]:
        now = self._clock()
        position = max(int(now.timestamp() * 1000), tracker.current_restriction().start)
        if stop_requested() or position >= self._stop_ms:
            position = max(position, tracker.current_restriction().stop)
        if not tracker.try_claim(position):
            return
        poller = self._poller(shard)
        for outcome in poller.iter_due(now):
            for item in outcome.items:
                metrics.inc("items_ingested", source_kind="rss")
                yield TimestampedValue(item, item.ingested.timestamp())
            yield beam.pvalue.TaggedOutput(HEALTH, TimestampedValue(outcome.health, now.timestamp()))
        watermark.set_watermark(Timestamp.of(now.timestamp()))
        due = poller.next_due()
        if self._sleep_locally:
            # The local runner runs one shard element at a time: nap briefly rather than until this
            # shard's next feed, so a shard in long backoff does not hold up the others.
            # One shard (the default) sleeps until its next feed is due: every wake-up ends a bundle,
            # and the local runner keeps per-bundle bookkeeping until the pipeline ends.
            nap = _LOCAL_NAP if len(self._shards) > 1 else _LONG_NAP
            wake = min(due.timestamp(), self._stop_ms / 1000, self._clock().timestamp() + nap)
            self._sleep_until(wake)
            tracker.defer_remainder()
        else:
            tracker.defer_remainder(Timestamp.of(min(due.timestamp(), self._stop_ms / 1000)))

    def _sleep_until(self, when: float) -> None:
        # Short naps so Ctrl-C / SIGTERM and the deadline are noticed within a fraction of a second.
        while not stop_requested():
            left = when - self._clock().timestamp()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    def teardown(self) -> None:
        with _POLLERS_LOCK:
            for key in [k for k in _POLLERS if k[0] == self._token]:
                _POLLERS.pop(key).close()


class PollFeeds(beam.PTransform):
    """PBegin → {"items": timestamped NewsItems, "health": FeedHealth records}."""

    def __init__(
        self,
        feeds: list[FeedConfig],
        *,
        interval: float = 300.0,
        shards: int = 1,
        duration: float | None = None,
        sleep_locally: bool = True,
        poller_options: dict | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__()
        self._shards = shard_feeds(feeds, max(1, shards))
        self._interval = interval
        self._duration = duration
        self._sleep_locally = sleep_locally
        self._poller_options = poller_options or {}
        self._clock = clock

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        stop_ms = _FOREVER_MS
        if self._duration is not None:
            stop_ms = int((self._clock().timestamp() + self._duration) * 1000)
        fn = _PollShard(
            self._shards,
            interval=self._interval,
            stop_ms=stop_ms,
            sleep_locally=self._sleep_locally,
            poller_options=self._poller_options,
            clock=self._clock,
        )
        polled = (
            pbegin
            | "Shards" >> beam.Create(sorted(self._shards))
            | "PollShards" >> beam.ParDo(fn).with_outputs(HEALTH, main="items")
        )
        return {"items": polled.items, HEALTH: polled[HEALTH]}
