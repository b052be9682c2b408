"""The rule engine: compile a topics file once, then classify (title, body) → TopicMatch with evidence.

Matching is one Aho–Corasick pass (pyahocorasick, C) per field over normalised lower-case text,
whatever the number of topics and terms; Python only looks at actual hits, which is what makes it
fast enough never to be the pipeline's bottleneck.

Score formula (documented in the README)::

    raw   = Σ_terms weight × (title_weight·[term in title] + min(body hits, max_count))
          + Σ_near weight × (title_weight if the pair is in the title else 1)
    score = raw / (raw + threshold)          # 0.5 exactly at the threshold, → 1 as evidence grows

A topic applies when raw ≥ threshold, every ``all_of`` group has a hit, and no ``none_of`` pattern
matched. Hits inside a ``mask`` phrase (``energy tariff``) do not count for that topic.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from pipelines.classify.rules import TopicRule, TopicsFile
from pipelines.model import Evidence, TopicMatch

__all__ = ["Engine", "Hit", "normalize"]

_FOLD = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u02bc": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\n": " ",
    "\r": " ",
    "\t": " ",
}
_FOLD_TABLE = str.maketrans(_FOLD)
_FIELDS = ("title", "body")


def normalize(text: str) -> tuple[str, list[int] | None]:
    """Lower-case, NFKC, typographic quotes/dashes folded, whitespace made single-char.

    Returns (normalised, index map). The map is None when every character maps 1:1 (the common
    case), otherwise ``map[i]`` is the original offset of normalised character ``i``.
    """
    if text.isascii():
        return text.translate(_FOLD_TABLE).lower(), None
    if unicodedata.is_normalized("NFKC", text):
        folded = text.translate(_FOLD_TABLE).lower()
        if len(folded) == len(text):
            return folded, None
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        piece = unicodedata.normalize("NFKC", ch).translate(_FOLD_TABLE).lower()
        chars.append(piece)
        index.extend([i] * len(piece))
    return "".join(chars), index


def _variants(pattern: str) -> tuple[list[str], bool, bool]:
    """Normalised keys for one pattern, whether it is a prefix wildcard, whether case-sensitive."""
    prefix = pattern.endswith("*")
    raw = pattern[:-1] if prefix else pattern
    upper = raw.isupper()
    base = normalize(raw)[0].strip()
    keys = {base}
    if " " in base or "-" in base:
        keys.add(base.replace("-", " "))
        keys.add(base.replace(" ", "-"))
    if "-" in base:
        keys.add(base.replace("-", ""))
    if upper and base.isalpha() and 2 <= len(base) <= 4:
        keys.add(".".join(base) + ".")  # UK → u.k.
    return sorted(keys), prefix, upper


@dataclass(frozen=True, slots=True)
class Hit:
    pattern: str
    field: str
    start: int  # offsets in the normalised field text
    end: int


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: TopicRule
    title_weight: float


class Engine:
    """Compiled topics. Build once per worker (``DoFn.setup``), then call :meth:`classify` per item."""

    def __init__(self, topics: TopicsFile) -> None:
        self.topics = topics
        self.max_count = topics.max_count
        self._compiled = [_Compiled(rule, rule.title_weight or topics.title_weight) for rule in topics.topics]
        self._case_sensitive: set[str] = set()
        automaton = ahocorasick.Automaton()
        keys: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        for pattern in sorted(self._all_patterns()):
            variants, prefix, upper = _variants(pattern)
            if upper:
                self._case_sensitive.add(pattern)
            for key in variants:
                keys[key].append((pattern, prefix))
        for key, targets in keys.items():
            automaton.add_word(key, (len(key), tuple(targets)))
        automaton.make_automaton()
        self._automaton = automaton

    def _all_patterns(self) -> Iterable[str]:
        for rule in self.topics.topics:
            yield from rule.terms
            yield from rule.none_of
            yield from rule.mask
            for group in rule.all_of:
                yield from group
            for near in rule.near:
                yield from near.a
                yield from near.b

    @property
    def topic_ids(self) -> list[str]:
        return [c.rule.id for c in self._compiled]

    # --- matching ---------------------------------------------------------------------------------

    def _scan(self, norm: str, index: list[int] | None, original: str, field: str) -> dict[str, list[Hit]]:
        hits: dict[str, list[Hit]] = defaultdict(list)
        n = len(norm)
        for end_idx, (length, targets) in self._automaton.iter(norm):
            start = end_idx - length + 1
            if start > 0 and norm[start - 1].isalnum():
                continue
            after = end_idx + 1
            whole = after >= n or not norm[after].isalnum()
            for pattern, prefix in targets:
                if prefix:
                    stop = after
                    while stop < n and norm[stop].isalnum():
                        stop += 1
                elif whole:
                    stop = after
                else:
                    continue
                if pattern in self._case_sensitive and not _upper_at(original, index, start, stop):
                    continue
                hits[pattern].append(Hit(pattern, field, start, stop))
        return hits

    def scan(self, title: str, body: str) -> dict[str, dict[str, list[Hit]]]:
        """All pattern hits per field (normalised offsets), for tools that explain decisions."""
        return {
            "title": self._scan(*normalize(title), title, "title"),
            "body": self._scan(*normalize(body), body, "body"),
        }

    # --- scoring ----------------------------------------------------------------------------------

    def classify(self, title: str, body: str = "") -> list[TopicMatch]:
        """Topics that pass their threshold, best score first, each with its evidence."""
        texts = {"title": title, "body": body}
        norms = {"title": normalize(title), "body": normalize(body)}
        hits = {f: self._scan(*norms[f], texts[f], f) for f in _FIELDS}
        matches = []
        for compiled in self._compiled:
            match = self._score(compiled, hits, norms, texts)
            if match is not None:
                matches.append(match)
        matches.sort(key=lambda m: (-m.score, m.topic))
        return matches

    def _score(
        self,
        compiled: _Compiled,
        hits: dict[str, dict[str, list[Hit]]],
        norms: dict[str, tuple[str, list[int] | None]],
        texts: dict[str, str],
    ) -> TopicMatch | None:
        rule = compiled.rule
        for pattern in rule.none_of:
            if hits["title"].get(pattern) or hits["body"].get(pattern):
                return None
        masked = {f: [(h.start, h.end) for p in rule.mask for h in hits[f].get(p, ())] for f in _FIELDS}

        def live(pattern: str, field: str) -> list[Hit]:
            found = hits[field].get(pattern, ())
            spans = masked[field]
            if not spans:
                return list(found)
            return [h for h in found if not any(s < h.end and h.start < e for s, e in spans)]

        for group in rule.all_of:
            if not any(live(p, f) for p in group for f in _FIELDS):
                return None

        raw = 0.0
        evidence: list[tuple[Hit, str, float]] = []
        for pattern, weight in rule.terms.items():
            title_hits = live(pattern, "title")
            body_hits = live(pattern, "body")
            if title_hits:
                raw += weight * compiled.title_weight
                evidence.append((title_hits[0], "term", weight * compiled.title_weight))
            counted = body_hits[: self.max_count]
            raw += weight * len(counted)
            evidence.extend((h, "term", weight) for h in counted)
        for near in rule.near:
            pair = self._near_pair(near.a, near.b, near.window, live, norms)
            if pair is not None:
                gain = near.weight * (compiled.title_weight if pair[0].field == "title" else 1.0)
                raw += gain
                evidence.extend((h, "near", gain) for h in pair)
        if raw < rule.threshold or raw <= 0:
            return None
        score = round(raw / (raw + rule.threshold), 4)
        return TopicMatch(
            topic=rule.id,
            score=score,
            evidence=[self._evidence(h, kind, w, norms, texts) for h, kind, w in evidence],
        )

    @staticmethod
    def _near_pair(a, b, window, live, norms) -> tuple[Hit, Hit] | None:
        for field in _FIELDS:
            left = [h for p in a for h in live(p, field)]
            if not left:
                continue
            right = [h for p in b for h in live(p, field)]
            norm = norms[field][0]
            for x in left:
                for y in right:
                    if x.start == y.start:
                        continue
                    first, second = (x, y) if x.start < y.start else (y, x)
                    gap = norm.count(" ", first.end, max(first.end, second.start))
                    if gap <= window:
                        return (x, y)
        return None

    @staticmethod
    def _evidence(hit: Hit, kind: str, weight: float, norms, texts) -> Evidence:
        index = norms[hit.field][1]
        start, end = (hit.start, hit.end) if index is None else _map_span(index, hit.start, hit.end)
        original = texts[hit.field]
        return Evidence(
            term=hit.pattern,
            text=original[start:end],
            field=hit.field,  # type: ignore[arg-type]
            start=start,
            end=end,
            rule=kind,
            weight=round(weight, 4),
        )


def _map_span(index: list[int], start: int, end: int) -> tuple[int, int]:
    return index[start], index[end - 1] + 1


def _upper_at(original: str, index: list[int] | None, start: int, stop: int) -> bool:
    if index is not None:
        start, stop = _map_span(index, start, stop)
    letters = [c for c in original[start:stop] if c.isalpha()]
    return bool(letters) and all(c.isupper() for c in letters)
