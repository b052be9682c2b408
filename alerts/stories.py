"""One story, one alert: near-duplicate items within an event-time window belong to one story.

The same story arrives many times: from several outlets (wire copy with a rewritten headline), or
from one outlet that edits its headline. Subscribers want one ``alert.item`` per story and, at most,
an ``alert.updated`` when another outlet picks it up.

Similarity is MinHash over word shingles of the normalised title + lead, so it is cheap, needs no
model and is identical in every process:

* normalise: Unicode NFKC, lower case, typographic quotes and dashes folded, possessive "'s"
  dropped, punctuation removed, a small stop-word list removed;
* shingles: 2-word shingles of the title and of the lead (the first ~300 characters of the body),
  plus the single title words when the title is very short (a 3-word title has only 2 bigrams);
* signature: 128 MinHash values, each a 32-bit lane of SHAKE-128 keyed with a fixed seed (never
  Python's per-process salted ``hash()``), so signatures agree across workers and reruns;
* LSH: 42 bands of 3 rows, so a lookup only compares stories that share a band with the item.
  The chance to become a candidate is 1 - (1 - J³)⁴²: 94 % at J = 0.4, 99.6 % at J = 0.5, but only
  11 % at J = 0.14 and 0.5 % at J = 0.05 (same-topic, different-story items).

``THRESHOLD`` (estimated Jaccard) is 0.4, not 0.5, measured on the pairs in
tests/unit/test_stories.py (exact / 128-lane estimate):

* same story, other outlet (wire copy, rewritten headline)   0.52 / 0.52 and 0.57 / 0.56
* edited headline (one or two words)                        0.94 / 0.91 and 0.91 / 0.89
* title-only edit ("cuts" → "halves")                       0.60 / 0.57
* different spy cases, same topic                           0.12 / 0.14, 0.06 / 0.04
* follow-up of the same case (appeal)                       0.21 / 0.18
* different title-only visa stories                         0.23 / 0.28

Rewrites by other outlets sit just above 0.5, and with 128 lanes the estimate's standard error
there is ~0.044: over 200 seeds the 0.52 pair fell below 0.5 in 27 % of them, and never below 0.4.
0.4 is midway between the highest different-story value (0.28) and the lowest same-story one (0.52).

All of it is pure: ``StoryIndex`` is the decision core of a stateful Beam DoFn, which keeps
``to_state()`` in a state cell and rebuilds the index with ``StoryIndex.from_state``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import operator
import re
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alerts.policy import alert_id
from pipelines.model import Alert, ClassifiedItem, NewsItem, stable_id, to_utc

__all__ = [
    "BAND_ROWS",
    "DEFAULT_MAX_STORIES",
    "DEFAULT_WINDOW",
    "LEAD_CHARS",
    "NUM_BANDS",
    "NUM_PERM",
    "THRESHOLD",
    "Signature",
    "StoryDecision",
    "StoryIndex",
    "estimated_similarity",
    "item_shingles",
    "item_signature",
    "jaccard",
    "normalize",
    "shingles",
    "signature",
    "story_alerts",
    "story_id_for",
]

Signature = tuple[int, ...]

NUM_PERM = 128
BAND_ROWS = 3
# 42 bands use rows 0..125; the last two rows only take part in the similarity estimate.
NUM_BANDS = NUM_PERM // BAND_ROWS
LEAD_CHARS = 300
# Titles with fewer words than this also contribute single words, or an edit of one word in a
# three-word title would leave no shingle in common at all.
SHORT_TITLE_WORDS = 4
THRESHOLD = 0.4
DEFAULT_WINDOW = timedelta(hours=48)
DEFAULT_MAX_STORIES = 2000

# Per-story caps keep the state bounded (JSON: ~0.9 KB for a one-item story, ~3.5 KB at the caps, so
# the default 2000 stories stay within a few MB): ids beyond the cap only weaken
# idempotence for very large stories (a redelivered old member then joins again, silently,
# since its source is already known), and 32 outlets is more than any feed list carries.
MAX_MEMBER_IDS = 32
MAX_SOURCES = 32
# First member + most recent distinct one: edits can drift a headline away from the original.
MAX_SIGNATURES = 2

STATE_VERSION = 1
# Part of the hash: changing it (or NUM_PERM) makes old signatures meaningless, so bump STATE_VERSION.
_SEED = b"newsmon/stories/minhash/v1\x00"
_LANES = struct.Struct(f"<{NUM_PERM}I")

_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
    }
)
_POSSESSIVE = re.compile(r"'s\b")
_WORD = re.compile(r"[^\W_]+")

# Function words that outlets add or drop freely when they rewrite a headline; content words stay.
STOP_WORDS = frozenset(
    {
        *("a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with", "from"),
        *("as", "into", "over", "after", "about", "than", "is", "are", "was", "were", "be", "been", "being"),
        *("has", "have", "had", "will", "would", "can", "could", "its", "it", "this", "that", "these", "those"),
        *("he", "she", "they", "his", "her", "their", "him", "them", "who", "which", "says", "said"),
    }
)


# --- similarity ---------------------------------------------------------------------------------


def normalize(text: str) -> list[str]:
    """Text → content words: NFKC, lower case, quotes/dashes folded, punctuation and stop words gone."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_FOLD)
    # "Taiwan's" and "Taiwan" are the same word to a reader; "don't" stays one token ("dont").
    text = _POSSESSIVE.sub("", text).replace("'", "")
    return [w for w in _WORD.findall(text) if w not in STOP_WORDS]


def _lead(body: str) -> str:
    # Whitespace is collapsed first so feeds that wrap lines differently cut at the same word; a
    # word cut in half at the limit is dropped rather than becoming a token no other copy has.
    text = " ".join(body.split())
    if len(text) <= LEAD_CHARS:
        return text
    cut = text[:LEAD_CHARS]
    if text[LEAD_CHARS] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut


def _bigrams(words: Sequence[str]) -> set[str]:
    return {f"{a} {b}" for a, b in itertools.pairwise(words)}


def shingles(title: str, body: str = "") -> set[str]:
    """Word 2-shingles of the title and of the lead (not across them), plus title words if it is short."""
    title_words = normalize(title)
    out = _bigrams(title_words) | _bigrams(normalize(_lead(body)))
    if len(title_words) < SHORT_TITLE_WORDS:
        out.update(title_words)
    return out


def item_shingles(item: NewsItem) -> set[str]:
    return shingles(item.title, item.body)


def signature(shingle_set: Iterable[str]) -> Signature | None:
    """MinHash signature of a shingle set (None when empty: an empty text is similar to nothing)."""
    # The minimum per lane does not depend on iteration order, so a set's (salted) order is fine here.
    digests = [hashlib.shake_128(_SEED + s.encode("utf-8")).digest(_LANES.size) for s in shingle_set]
    if not digests:
        return None
    # The same values as min() per lane over unpacked digests, computed in one vectorised pass.
    lanes = np.frombuffer(b"".join(digests), dtype="<u4").reshape(len(digests), NUM_PERM)
    return tuple(lanes.min(axis=0).tolist())


def item_signature(item: NewsItem) -> Signature | None:
    return signature(item_shingles(item))


def estimated_similarity(a: Signature, b: Signature) -> float:
    """Fraction of equal MinHash lanes: an unbiased estimate of the Jaccard similarity of the sets."""
    if len(a) != len(b):
        raise ValueError("signatures of different lengths")
    return sum(map(operator.eq, a, b)) / NUM_PERM  # map(eq) counts in C: this runs per LSH candidate


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity (for tests and calibration; the index only has signatures)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def _band_keys(sig: Signature) -> list[tuple[int, Signature]]:
    return [(band, sig[band * BAND_ROWS : (band + 1) * BAND_ROWS]) for band in range(NUM_BANDS)]


def _encode_signature(sig: Signature) -> str:
    return base64.b64encode(_LANES.pack(*sig)).decode("ascii")


def _decode_signature(text: str) -> Signature:
    return _LANES.unpack(base64.b64decode(text))


def story_id_for(first_item_id: str) -> str:
    """A story is named after its first item, so the same first item always gives the same story id."""
    return "story_" + stable_id(first_item_id)


# --- decisions ----------------------------------------------------------------------------------


class StoryDecision(BaseModel):
    """Where one item went: a new story, an existing one, or nowhere (a repeat of a known item)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    story_id: str
    is_new: bool = Field(description="this item started the story")
    duplicate: bool = Field(default=False, description="the item id was already a member: nothing changed")
    late: bool = Field(
        default=False,
        description="older than the window relative to the newest event time: it could only join a live story, "
        "and a story it starts is not kept",
    )
    member_count: int = Field(ge=1)
    new_source: bool = Field(description="this item brought an outlet the story did not have yet")
    new_sources: list[str] = Field(default_factory=list, description="the outlets this item added")
    sources: list[str] = Field(description="the story's outlets, in the order they joined")
    similarity: float | None = Field(default=None, description="estimated Jaccard with the story it joined")


@dataclass
class _Story:
    story_id: str
    first_seen: datetime
    last_seen: datetime
    member_count: int
    sources: list[str]
    member_ids: list[str]
    signatures: list[Signature]

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.story_id,
            "t0": self.first_seen.isoformat(),
            "t1": self.last_seen.isoformat(),
            "n": self.member_count,
            "src": list(self.sources),
            "ids": list(self.member_ids),
            "sigs": [_encode_signature(s) for s in self.signatures],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> _Story:
        return cls(
            story_id=data["id"],
            first_seen=_utc(datetime.fromisoformat(data["t0"])),
            last_seen=_utc(datetime.fromisoformat(data["t1"])),
            member_count=int(data["n"]),
            sources=list(data["src"]),
            member_ids=list(data["ids"]),
            signatures=[_decode_signature(s) for s in data["sigs"]],
        )


def _utc(value: datetime) -> datetime:
    out = to_utc(value)
    assert out is not None
    return out


def _item_sources(item: NewsItem) -> list[str]:
    # Feeds that carried the very same item (also_sources) have covered the story too.
    return list(dict.fromkeys([item.source, *item.also_sources]))


class StoryIndex:
    """Assigns items to stories; bounded by the window and ``max_stories``; state round-trips as JSON.

    Event time is ``NewsItem.ingested`` (the timestamp the pipeline uses). A story lives while its
    last member is within ``window`` of the newest event time seen; when more than ``max_stories``
    are live the least recently updated (by event time) go first.

    The story id names the first item *assigned* to it; an out-of-order item with an earlier event
    time joins the existing story (ids already sent to subscribers never change).
    """

    def __init__(
        self,
        window: timedelta = DEFAULT_WINDOW,
        threshold: float = THRESHOLD,
        max_stories: int = DEFAULT_MAX_STORIES,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if max_stories < 1:
            raise ValueError("max_stories must be at least 1")
        self.window = window
        self.threshold = threshold
        self.max_stories = max_stories
        self._newest: datetime | None = None
        self._stories: dict[str, _Story] = {}
        # Derived indexes, rebuilt from the stories on load (never stored).
        self._bands: dict[tuple[int, Signature], set[str]] = {}
        self._members: dict[str, str] = {}
        # (last_seen, story_id) min-heap with lazy deletion: eviction without scanning every story.
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._stories)

    @property
    def newest(self) -> datetime | None:
        """The newest event time seen so far (the clock of the window)."""
        return self._newest

    def story_ids(self) -> list[str]:
        return sorted(self._stories)

    # -- the decision --

    def assign(self, item: NewsItem) -> StoryDecision:
        """Put one item into a story (new or existing) and say what changed."""
        known = self._members.get(item.id)
        if known is not None:
            story = self._stories[known]
            return self._decision(item, story, is_new=False, duplicate=True, new_sources=[])

        when = item.ingested
        if self._newest is None or when > self._newest:
            self._newest = when
            self._evict_expired()
        assert self._newest is not None
        late = when < self._newest - self.window

        sig = item_signature(item)
        match = self._match(sig, when) if sig is not None else None
        if match is not None:
            story, similarity = match
            new_sources = self._join(story, item, sig)
            return self._decision(item, story, is_new=False, new_sources=new_sources, similarity=similarity, late=late)

        sources = _item_sources(item)[:MAX_SOURCES]
        story = _Story(
            story_id=story_id_for(item.id),
            first_seen=when,
            last_seen=when,
            member_count=1,
            sources=sources,
            member_ids=[item.id],
            signatures=[sig] if sig is not None else [],
        )
        if not late and story.story_id not in self._stories:
            # A late item's own story would be evicted at once: decide for it, keep nothing.
            self._add(story)
            self._evict_overflow()
        return self._decision(item, story, is_new=True, new_sources=sources, late=late)

    def _decision(
        self,
        item: NewsItem,
        story: _Story,
        *,
        is_new: bool,
        new_sources: list[str],
        duplicate: bool = False,
        similarity: float | None = None,
        late: bool = False,
    ) -> StoryDecision:
        return StoryDecision(
            item_id=item.id,
            story_id=story.story_id,
            is_new=is_new,
            duplicate=duplicate,
            late=late,
            member_count=story.member_count,
            new_source=bool(new_sources),
            new_sources=new_sources,
            sources=list(story.sources),
            similarity=similarity,
        )

    def _match(self, sig: Signature, when: datetime) -> tuple[_Story, float] | None:
        candidates: set[str] = set()
        for key in _band_keys(sig):
            candidates.update(self._bands.get(key, ()))
        best: tuple[float, datetime, str] | None = None
        for sid in candidates:
            story = self._stories[sid]
            # The window holds on both sides: an item from days before a story began is not that story.
            if when < story.first_seen - self.window or when > story.last_seen + self.window:
                continue
            sim = max(estimated_similarity(sig, s) for s in story.signatures)
            if sim < self.threshold:
                continue
            # Best similarity wins; ties go to the older story, then the id, so the choice is deterministic.
            key = (-sim, story.first_seen, sid)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        return self._stories[best[2]], -best[0]

    def _join(self, story: _Story, item: NewsItem, sig: Signature | None) -> list[str]:
        when = item.ingested
        story.member_count += 1
        story.first_seen = min(story.first_seen, when)
        if when > story.last_seen:
            story.last_seen = when
            heapq.heappush(self._heap, (when, story.story_id))
        new_sources = [s for s in _item_sources(item) if s not in story.sources]
        story.sources.extend(new_sources[: max(0, MAX_SOURCES - len(story.sources))])

        story.member_ids.append(item.id)
        self._members[item.id] = story.story_id
        if len(story.member_ids) > MAX_MEMBER_IDS:
            # Keep the first member (it names the story) and the most recent ones.
            dropped = story.member_ids.pop(1)
            self._members.pop(dropped, None)

        if sig is not None and sig not in story.signatures:
            self._unindex(story)
            if len(story.signatures) >= MAX_SIGNATURES:
                story.signatures[-1] = sig
            else:
                story.signatures.append(sig)
            self._index(story)
        return new_sources

    # -- bookkeeping --

    def _add(self, story: _Story) -> None:
        self._stories[story.story_id] = story
        for member in story.member_ids:
            self._members[member] = story.story_id
        self._index(story)
        heapq.heappush(self._heap, (story.last_seen, story.story_id))

    def _remove(self, story_id: str) -> None:
        story = self._stories.pop(story_id)
        self._unindex(story)
        for member in story.member_ids:
            if self._members.get(member) == story_id:
                del self._members[member]

    def _index(self, story: _Story) -> None:
        for sig in story.signatures:
            for key in _band_keys(sig):
                self._bands.setdefault(key, set()).add(story.story_id)

    def _unindex(self, story: _Story) -> None:
        for sig in story.signatures:
            for key in _band_keys(sig):
                bucket = self._bands.get(key)
                if bucket is not None:
                    bucket.discard(story.story_id)
                    if not bucket:
                        del self._bands[key]

    def _pop_valid(self) -> _Story | None:
        # Heap entries go stale when a story's last_seen moves on or it is removed; skip those.
        while self._heap:
            last_seen, sid = heapq.heappop(self._heap)
            story = self._stories.get(sid)
            if story is not None and story.last_seen == last_seen:
                return story
        return None

    def _evict_expired(self) -> None:
        assert self._newest is not None
        cutoff = self._newest - self.window
        while self._heap and self._heap[0][0] < cutoff:
            last_seen, sid = heapq.heappop(self._heap)
            story = self._stories.get(sid)
            if story is not None and story.last_seen == last_seen:
                self._remove(sid)
        self._compact_heap()

    def _evict_overflow(self) -> None:
        while len(self._stories) > self.max_stories:
            story = self._pop_valid()
            if story is None:
                break
            self._remove(story.story_id)
        self._compact_heap()

    def _compact_heap(self) -> None:
        if len(self._heap) > 2 * len(self._stories) + 64:
            self._heap = [(s.last_seen, s.story_id) for s in self._stories.values()]
            heapq.heapify(self._heap)

    # -- state --

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the newest event time and the live stories (oldest first). Indexes are rebuilt."""
        stories = sorted(self._stories.values(), key=lambda s: (s.last_seen, s.story_id))
        return {
            "v": STATE_VERSION,
            "newest": self._newest.isoformat() if self._newest else None,
            "stories": [s.to_state() for s in stories],
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any] | None,
        window: timedelta = DEFAULT_WINDOW,
        threshold: float = THRESHOLD,
        max_stories: int = DEFAULT_MAX_STORIES,
    ) -> StoryIndex:
        """Rebuild an index from ``to_state()`` (None or {} → empty). Configuration comes from the caller,
        so a changed window or cap applies at once (the surplus is evicted on load)."""
        index = cls(window=window, threshold=threshold, max_stories=max_stories)
        if not state:
            return index
        if state.get("v") != STATE_VERSION:
            # Signatures from another hashing scheme would silently never match: refuse instead.
            raise ValueError(f"unsupported story state version {state.get('v')!r} (expected {STATE_VERSION})")
        newest = state.get("newest")
        index._newest = _utc(datetime.fromisoformat(newest)) if newest else None
        for data in state.get("stories", []):
            index._add(_Story.from_state(data))
        if index._newest is not None:
            index._evict_expired()
        index._evict_overflow()
        return index


# --- alerts -------------------------------------------------------------------------------------


def story_alerts(decision: StoryDecision, classified: ClassifiedItem, item_alerts: list[Alert]) -> list[Alert]:
    """The policy's item alerts for one item, made story-aware.

    * first item of a story: the ``alert.item`` alerts unchanged, with ``story_id`` set;
    * a later member that brings a new outlet: each becomes an ``alert.updated`` (id from
      subscription + story + item, so reruns dedupe) with the story's sources in ``details``;
    * a later member from outlets the story already has, or a repeat: nothing.

    Never a second ``alert.item`` for one story. The subscriptions are the alerts' own
    ``subscription`` fields; alerts of other kinds pass through untouched.
    """
    item = classified.item
    if decision.item_id != item.id:
        raise ValueError(f"decision is for item {decision.item_id!r}, not {item.id!r}")
    others = [a for a in item_alerts if a.kind != "alert.item"]
    own = [a for a in item_alerts if a.kind == "alert.item"]
    if decision.is_new:
        return [a.model_copy(update={"story_id": decision.story_id}) for a in own] + others
    if decision.duplicate or not decision.new_sources:
        return others

    subject = f"{decision.story_id}/{item.id}"
    details = {
        "new_sources": list(decision.new_sources),
        "sources": list(decision.sources),
        "members": decision.member_count,
    }
    prefix = (
        f"story update: now {decision.member_count} items from {len(decision.sources)} outlets"
        f" (new: {', '.join(decision.new_sources)})"
    )
    updated = [
        a.model_copy(
            update={
                "id": alert_id(a.subscription, "alert.updated", subject),
                "kind": "alert.updated",
                "story_id": decision.story_id,
                "reason": f"{prefix}; {a.reason}",
                "details": {**a.details, **details},
            }
        )
        for a in own
    ]
    return updated + others
