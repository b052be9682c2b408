"""FeedPoller: the plain-Python engine behind the feed source (a Beam splittable DoFn drives it).

A poller owns one shard of feeds: their schedules and validators (`FeedState`) and a bounded memory
of entry ids per feed, so each entry is emitted once. `poll_due` fetches every due feed of the shard
concurrently, but never more than ``per_host`` requests at a time to one site. The state round-trips
through JSON (`to_state` / `from_state`) so a restarted worker resumes validators and schedules
instead of re-downloading and re-emitting everything.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines import metrics
from pipelines.model import NewsItem
from pipelines.sources.feeds import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_BACKOFF,
    FeedConfig,
    FeedError,
    FeedFetcher,
    FeedHealth,
    FeedState,
    FetchResult,
    Outcome,
    ParsedFeed,
    cache_max_age,
    host_key,
    next_poll,
    parse_feed,
)

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_PER_HOST",
    "DEFAULT_SEEN_LIMIT",
    "STATE_VERSION",
    "FeedPoller",
    "PollOutcome",
    "PollerStateError",
    "SeenIds",
]

DEFAULT_MAX_WORKERS = 16
DEFAULT_PER_HOST = 2
DEFAULT_SEEN_LIMIT = 10_000
STATE_VERSION = 1
# A fresh feed is due at once; a fixed instant (not "now") keeps the initial state deterministic.
_DUE_AT_ONCE = datetime(1970, 1, 1, tzinfo=UTC)


class PollerStateError(FeedError, ValueError):
    """Saved poller state that cannot be restored."""


class PollOutcome(BaseModel):
    """One poll of one feed: what the fetch came to (without the body), the new items, the health record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feed: FeedConfig
    fetch: FetchResult
    items: list[NewsItem] = Field(default_factory=list, description="entries not seen before, in feed order")
    health: FeedHealth
    state: FeedState = Field(description="the feed's state after this poll")


class SeenIds:
    """The last ``limit`` entry ids of one feed, least recently seen evicted first.

    "Seen" is refreshed on every sighting, so an entry that stays in the feed document stays
    remembered however many newer entries arrive (as long as the document is shorter than the limit).
    """

    def __init__(self, limit: int, ids: Iterable[str] = ()) -> None:
        if limit < 1:
            raise ValueError("the seen-id limit must be at least 1")
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        for entry_id in ids:
            self.add(entry_id)

    def add(self, entry_id: str) -> bool:
        """Remember ``entry_id``; True when it was not remembered before."""
        if entry_id in self._ids:
            self._ids.move_to_end(entry_id)
            return False
        self._ids[entry_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        """Oldest first (the order `add` needs to rebuild the same memory)."""
        return list(self._ids)


class FeedPoller:
    """Polls one shard of feeds. Not thread-safe: one caller drives it (its fetches run in a pool).

    Metrics are recorded from the calling thread only: Beam's metric containers are per thread, so
    counts made inside pool threads would be lost.
    """

    def __init__(
        self,
        feeds: Iterable[FeedConfig],
        *,
        fetcher: FeedFetcher | None = None,
        interval: float = DEFAULT_INTERVAL,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_workers: int = DEFAULT_MAX_WORKERS,
        per_host: int = DEFAULT_PER_HOST,
        seen_limit: int = DEFAULT_SEEN_LIMIT,
        rng: random.Random | None = None,
    ) -> None:
        self._feeds: dict[str, FeedConfig] = {}
        for feed in feeds:
            if feed.id in self._feeds:
                raise ValueError(f"feed id {feed.id!r} is used twice in one shard")
            self._feeds[feed.id] = feed
        if not self._feeds:
            raise ValueError("a FeedPoller needs at least one feed")
        if max_workers < 1 or per_host < 1:
            raise ValueError("max_workers and per_host must be at least 1")
        self._owns_fetcher = fetcher is None
        self._fetcher = fetcher or FeedFetcher(max_connections=max(max_workers, 2 * per_host))
        self._interval = interval
        self._max_backoff = max_backoff
        self._max_workers = max_workers
        self._per_host = per_host
        self._seen_limit = seen_limit
        self._rng = rng or random.Random()
        self._states: dict[str, FeedState] = {fid: FeedState.initial(f, _DUE_AT_ONCE) for fid, f in self._feeds.items()}
        self._seen: dict[str, SeenIds] = {fid: SeenIds(seen_limit) for fid in self._feeds}
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="newsmon-feeds")

    def __enter__(self) -> FeedPoller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._owns_fetcher:
            self._fetcher.close()

    # --- inspection -------------------------------------------------------------------------------

    @property
    def feeds(self) -> list[FeedConfig]:
        return list(self._feeds.values())

    def state(self, feed_id: str) -> FeedState:
        return self._states[feed_id]

    def seen_count(self, feed_id: str) -> int:
        return len(self._seen[feed_id])

    def next_due(self) -> datetime:
        """The earliest time any feed of the shard is due."""
        return min(state.next_due for state in self._states.values())

    # --- polling ----------------------------------------------------------------------------------

    def poll_due(self, now: datetime) -> list[PollOutcome]:
        """Fetch and parse every feed due at ``now`` (concurrently), update states, return outcomes."""
        return list(self.iter_due(now))

    def iter_due(self, now: datetime) -> Iterator[PollOutcome]:
        """As :meth:`poll_due`, yielding each feed's outcome as soon as its fetch completes, so a slow
        feed does not delay the items of the fast ones in the same round."""
        due = [self._feeds[fid] for fid, state in self._states.items() if state.next_due <= now]
        for feed, result in self._run(due):
            yield self._apply(feed, *result, now)

    def _run(self, due: list[FeedConfig]) -> Iterator[tuple[FeedConfig, tuple[FetchResult, ParsedFeed | None]]]:
        # Dispatch by hand rather than submitting everything: a task waiting for a busy host would
        # hold a pool thread that another site could use.
        queues: dict[str, deque[FeedConfig]] = {}
        for feed in due:
            queues.setdefault(host_key(feed.url), deque()).append(feed)
        active: Counter[str] = Counter()
        running: dict[Future[tuple[FetchResult, ParsedFeed | None]], tuple[str, FeedConfig]] = {}
        while queues or running:
            submitted = True
            while submitted and len(running) < self._max_workers:
                submitted = False
                for host in list(queues):  # one slot per host per pass: round-robin across sites
                    if len(running) >= self._max_workers:
                        break
                    if active[host] >= self._per_host:
                        continue
                    feed = queues[host].popleft()
                    if not queues[host]:
                        del queues[host]
                    state = self._states[feed.id]
                    future = self._executor.submit(self._fetch_and_parse, feed, state.etag, state.last_modified)
                    running[future] = (host, feed)
                    active[host] += 1
                    submitted = True
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                host, feed = running.pop(future)
                active[host] -= 1
                yield feed, future.result()

    def _fetch_and_parse(
        self, feed: FeedConfig, etag: str | None, last_modified: str | None
    ) -> tuple[FetchResult, ParsedFeed | None]:
        result = self._fetcher.fetch(feed.url, etag=etag, last_modified=last_modified)
        if result.outcome != "ok":
            return result, None
        try:
            parsed = parse_feed(result, feed)
        except Exception as exc:  # a parser bug on one feed must not stop the whole shard
            parsed = ParsedFeed(
                feed_id=feed.id, feed_url=feed.url, outcome="parse_error", error=f"{type(exc).__name__}: {exc}"
            )
        return result.summary(), parsed

    def _apply(self, feed: FeedConfig, result: FetchResult, parsed: ParsedFeed | None, now: datetime) -> PollOutcome:
        outcome: Outcome = parsed.outcome if parsed is not None else result.outcome
        error = (parsed.error if parsed is not None and parsed.error else "") or result.error
        new_items: list[NewsItem] = []
        duplicates = 0
        if parsed is not None and parsed.outcome == "ok":
            seen = self._seen[feed.id]
            # Feeds list newest first; remember oldest first so that eviction drops the oldest.
            for item in reversed(parsed.items):
                if seen.add(item.id):
                    new_items.append(item)
                else:
                    duplicates += 1
            new_items.reverse()
        if outcome == "ok":
            min_interval: float | None = parsed.min_interval_seconds if parsed is not None else None
        elif outcome == "not_modified":
            min_interval = cache_max_age(result.headers)
        else:
            min_interval = None
        # Schedule from when the answer arrived, so Retry-After counts from the response.
        when = max(now, result.fetched_at)
        state = next_poll(
            self._states[feed.id],
            outcome,
            when,
            self._interval,
            self._rng,
            retry_after=result.retry_after_seconds,
            min_interval=min_interval,
            max_backoff=self._max_backoff,
            http_status=result.http_status,
            etag=result.etag,
            last_modified=result.last_modified,
        )
        self._states[feed.id] = state
        health = FeedHealth(
            feed_id=feed.id,
            url=feed.url,
            checked_at=result.fetched_at,
            outcome=outcome,
            http_status=result.http_status,
            consecutive_failures=state.consecutive_failures,
            last_success=state.last_success,
            error=error,
            new_entries=len(new_items),
        )
        self._record(feed, result, health, duplicates)
        return PollOutcome(feed=feed, fetch=result.summary(), items=new_items, health=health, state=state)

    @staticmethod
    def _record(feed: FeedConfig, result: FetchResult, health: FeedHealth, duplicates: int) -> None:
        metrics.inc("feed_polls", feed=feed.id, outcome=health.outcome)
        metrics.observe("feed_fetch_seconds", result.elapsed_seconds, feed=feed.id)
        if health.new_entries:
            metrics.inc("feed_entries", health.new_entries, feed=feed.id, status="new")
        if duplicates:
            metrics.inc("feed_entries", duplicates, feed=feed.id, status="duplicate")
        metrics.set_gauge("feed_consecutive_failures", health.consecutive_failures, feed=feed.id)
        if health.last_success is not None:
            metrics.set_gauge("feed_last_success_timestamp_seconds", health.last_success.timestamp(), feed=feed.id)

    # --- state ------------------------------------------------------------------------------------

    def to_state(self, *, include_seen: bool = True) -> dict[str, Any]:
        """JSON-able snapshot: per feed, its schedule/validators and (optionally) the seen entry ids."""
        feeds: dict[str, Any] = {}
        for fid, state in self._states.items():
            entry: dict[str, Any] = {"state": state.model_dump(mode="json")}
            if include_seen:
                entry["seen"] = self._seen[fid].ids()
            feeds[fid] = entry
        return {"version": STATE_VERSION, "feeds": feeds}

    @classmethod
    def from_state(cls, data: Mapping[str, Any], feeds: Iterable[FeedConfig], **kwargs: Any) -> FeedPoller:
        """A poller for ``feeds`` that resumes what ``data`` (from `to_state`) knew about them.

        The feed list given now is the truth: saved feeds no longer listed are dropped, new feeds
        start fresh, and a feed whose id now names a different URL starts fresh too.
        """
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            found = data.get("version") if isinstance(data, Mapping) else type(data).__name__
            raise PollerStateError(f"poller state version {found!r} is not {STATE_VERSION}")
        poller = cls(feeds, **kwargs)
        saved = data.get("feeds") or {}
        for fid, feed in poller._feeds.items():
            entry = saved.get(fid)
            if not entry:
                continue
            try:
                state = FeedState.model_validate(entry["state"])
            except (KeyError, TypeError, ValidationError) as exc:
                poller.close()
                raise PollerStateError(f"saved state of feed {fid!r} is unusable: {exc}") from None
            if state.url != feed.url:
                continue
            poller._states[fid] = state
            poller._seen[fid] = SeenIds(poller._seen_limit, entry.get("seen") or [])
        return poller
