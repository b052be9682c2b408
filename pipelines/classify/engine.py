"""The rule engine: compile a topics file once, then classify (title, body) → TopicMatch with evidence.

Matching is one Aho–Corasick pass (pyahocorasick, C) per field over normalised lower-case text for
all topics at once, plus one pass over case-preserved text for the few case-sensitive acronyms.
Python then touches only actual hits: topics are scored only when their hits could reach the
threshold, and evidence is built only for topics that match.

When the optional C extension ``newsmon_speedups`` is built (setup.py; sources in
``pipelines/classify/_speedups/``), the same matching, scoring and evidence run there, ~6x faster;
this module compiles the rules for it, folds the text it cannot fold itself, and stays the
reference it is tested against item for item (tests/unit/test_engine_speedups.py). That is what
keeps classification off the pipeline's critical path (see docs/benchmarks.md).

Score formula (documented in the README)::

    raw   = Σ_terms weight × (title_weight·[term in title] + min(body hits, max_count))
          + Σ_near weight × (title_weight if the pair is in the title else 1)
    score = raw / (raw + threshold)          # 0.5 exactly at the threshold, → 1 as evidence grows

A topic applies when raw ≥ threshold, every ``all_of`` group has a hit, and no ``none_of`` pattern
matched. Hits inside a ``mask`` phrase (``energy tariff``) do not count for that topic.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import ahocorasick

from pipelines.classify.rules import TopicRule, TopicsFile
from pipelines.model import Evidence, TopicMatch, construct_trusted

try:  # the optional C build of the hot path (setup.py); same results, ~6x faster
    import newsmon_speedups
except ImportError:  # no C compiler at install time
    newsmon_speedups = None
if os.environ.get("NEWSMON_NO_SPEEDUPS"):  # force the pure-Python engine (debugging, comparisons)
    newsmon_speedups = None

__all__ = ["Engine", "fold", "normalize", "speedups_available"]

_log = logging.getLogger(__name__)


def speedups_available() -> bool:
    """Whether the compiled matcher (``newsmon_speedups``) was built and can be used."""
    return newsmon_speedups is not None


_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u02bc": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
    "\u2026": ".",  # NFKC would make the ellipsis three characters and force the slow path
}  # fmt: skip
_ASCII_FOLD = (("\n", " "), ("\r", " "), ("\t", " "))
_ALL_FOLD = tuple(_FOLD.items()) + _ASCII_FOLD
_FOLD_TABLE = str.maketrans(dict(_ALL_FOLD))

Spans = list[tuple[int, int]]
FieldHits = dict[str, Spans]


def _replace_all(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    # str.replace per present character beats str.translate with a dict by ~10x on article text.
    for char, repl in pairs:
        if char in text:
            text = text.replace(char, repl)
    return text


def fold(text: str) -> tuple[str, list[int] | None]:
    """NFKC, typographic quotes/dashes folded, line breaks as spaces; case kept.

    Returns (folded, index map). The map is None when every character maps 1:1 (the common case),
    otherwise ``map[i]`` is the original offset of folded character ``i``.
    """
    if text.isascii():
        return _replace_all(text, _ASCII_FOLD), None
    folded = _replace_all(text, _ALL_FOLD)
    if unicodedata.is_normalized("NFKC", folded):
        return folded, None
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        piece = unicodedata.normalize("NFKC", ch).translate(_FOLD_TABLE)
        chars.append(piece)
        index.extend([i] * len(piece))
    return "".join(chars), index


def normalize(text: str) -> tuple[str, list[int] | None]:
    """:func:`fold`, then lower-case (offset map as in :func:`fold`)."""
    folded, index = fold(text)
    lower = folded.lower()
    if len(lower) == len(folded):
        return lower, index
    chars: list[str] = []
    new_index: list[int] = []
    for i, ch in enumerate(folded):
        piece = ch.lower()
        chars.append(piece)
        new_index.extend([index[i] if index else i] * len(piece))
    return "".join(chars), new_index


def _variants(pattern: str) -> tuple[list[str], bool, bool]:
    """Match keys for one pattern, whether it is a prefix wildcard, whether it is case-sensitive.

    Keys of case-sensitive (ALL-CAPS) patterns keep their case; all others are lower-case.
    """
    prefix = pattern.endswith("*")
    raw = pattern[:-1] if prefix else pattern
    upper = raw.isupper()
    base = fold(raw)[0].strip() if upper else normalize(raw)[0].strip()
    keys = {base}
    if " " in base or "-" in base:
        keys.add(base.replace("-", " "))
        keys.add(base.replace(" ", "-"))
    if "-" in base:
        keys.add(base.replace("-", ""))
    if upper and base.isalpha() and 2 <= len(base) <= 4:
        keys.add(".".join(base) + ".")  # UK → U.K.
    return sorted(keys), prefix, upper


def _automaton(keys: dict[str, list[tuple[str, bool]]]) -> ahocorasick.Automaton | None:
    if not keys:
        return None
    automaton = ahocorasick.Automaton()
    for key, targets in keys.items():
        # Most keys have one exact (non-prefix) pattern: give those a flat value for the hot loop.
        if len(targets) == 1 and not targets[0][1]:
            automaton.add_word(key, (len(key), targets[0][0], None))
        else:
            automaton.add_word(key, (len(key), None, tuple(targets)))
    automaton.make_automaton()
    return automaton


def _scan(automaton: ahocorasick.Automaton | None, text: str, hits: FieldHits) -> None:
    if automaton is None:
        return
    n = len(text)
    for end_idx, (length, single, targets) in automaton.iter(text):
        start = end_idx - length + 1
        if start and text[start - 1].isalnum():
            continue
        after = end_idx + 1
        whole = after >= n or not text[after].isalnum()
        if single is not None:
            if whole:
                spans = hits.get(single)
                if spans is None:
                    hits[single] = [(start, after)]
                else:
                    spans.append((start, after))
            continue
        for pattern, prefix in targets:
            if prefix:
                stop = after
                while stop < n and text[stop].isalnum():
                    stop += 1
            elif whole:
                stop = after
            else:
                continue
            spans = hits.get(pattern)
            if spans is None:
                hits[pattern] = [(start, stop)]
            else:
                spans.append((start, stop))


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    text: str  # original
    norm: str  # normalised (lower-case) text the spans refer to
    index: list[int] | None
    hits: FieldHits


class Engine:
    """Compiled topics. Build once per worker (``DoFn.setup``), then call :meth:`classify` per item.

    ``speedups=None`` uses the C hot path when it was built, ``False`` forces pure Python (the
    reference the C build is tested against), ``True`` requires it.
    """

    def __init__(self, topics: TopicsFile, speedups: bool | None = None) -> None:
        self.topics = topics
        self.max_count = topics.max_count
        self._rules = list(topics.topics)
        self._title_weight = [r.title_weight or topics.title_weight for r in self._rules]
        lower: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        cased: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        for pattern in sorted({p for rule in self._rules for p in _patterns(rule)}):
            keys, prefix, upper = _variants(pattern)
            for key in keys:
                (cased if upper else lower)[key].append((pattern, prefix))
        self._lower = _automaton(lower)
        self._cased = _automaton(cased)
        # Which topics a hit can raise: pattern → [(topic index, positive weight)] for the bound.
        self._raises: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._near: list[list[_Near]] = []
        # pattern → [((topic, near rule), side bit)]: 1 = the rule's a-side, 2 = its b-side.
        self._near_sides: dict[str, list[tuple[tuple[int, int], int]]] = defaultdict(list)
        for t, rule in enumerate(self._rules):
            for n, near in enumerate(rule.near):
                for pattern in set(near.a):
                    self._near_sides[pattern].append(((t, n), 1))
                for pattern in set(near.b):
                    self._near_sides[pattern].append(((t, n), 2))
            for pattern, weight in rule.terms.items():
                self._raises[pattern].append((t, max(weight, 0.0)))
            self._near.append(
                [_Near(frozenset(n.a), frozenset(n.b), n.window, n.weight, tuple(n.a), tuple(n.b)) for n in rule.near]
            )
        if speedups and newsmon_speedups is None:
            raise RuntimeError("newsmon_speedups is not built (install with a C compiler available)")
        self._fast = None
        if speedups is not False and newsmon_speedups is not None:
            try:
                self._fast = self._compile_fast(lower, cased)
            except ValueError as exc:  # a rules file too large for the compiled table still works in Python
                if speedups:
                    raise
                _log.warning("classifier: using the pure-Python engine: %s", exc)

    @property
    def compiled(self) -> bool:
        """True when classification runs on the C hot path."""
        return self._fast is not None

    def _compile_fast(self, lower, cased):
        self._pattern_names = sorted({p for rule in self._rules for p in _patterns(rule)})
        pid = {p: i for i, p in enumerate(self._pattern_names)}

        def keys(table):
            return [(key, [(pid[p], prefix) for p, prefix in targets]) for key, targets in table.items()]

        specs = [
            (
                rule.threshold,
                self._title_weight[t],
                [(pid[p], w) for p, w in rule.terms.items()],
                [pid[p] for p in rule.none_of],
                [pid[p] for p in rule.mask],
                [[pid[p] for p in group] for group in rule.all_of],
                [([pid[p] for p in n.a], [pid[p] for p in n.b], n.window, n.weight) for n in rule.near],
            )
            for t, rule in enumerate(self._rules)
        ]
        return newsmon_speedups.Engine(
            keys(lower), keys(cased), self._pattern_names, specs, self.max_count,
            [rule.id for rule in self._rules], Evidence, TopicMatch, _FOLD,
        )  # fmt: skip

    def _classify_fast(self, title: str, body: str) -> list[TopicMatch] | None:
        """The C path after a Python fold; None sends the item to the pure-Python path."""
        title_folded, title_index = fold(title)
        body_folded, body_index = fold(body)
        title_norm, body_norm = title_folded.lower(), body_folded.lower()
        if len(title_norm) != len(title_folded) or len(body_norm) != len(body_folded):
            return None  # lower-casing changed lengths (e.g. "İ"): the Python path remaps offsets
        return self._fast.classify(
            title, title_index, title_norm, title_folded, body, body_index, body_norm, body_folded
        )

    @property
    def topic_ids(self) -> list[str]:
        return [rule.id for rule in self._rules]

    # --- matching ---------------------------------------------------------------------------------

    def _field(self, name: str, text: str) -> _Field:
        hits: FieldHits = {}
        if not text:
            return _Field(name, text, "", None, hits)
        folded, index = fold(text)
        norm = folded.lower()
        if len(norm) != len(folded):
            norm, index = normalize(text)
            folded = None  # case-sensitive offsets would not line up; match those on the original
        _scan(self._lower, norm, hits)
        if self._cased is not None:
            if folded is None:
                _scan_cased_remapped(self._cased, text, norm, index, hits)
            else:
                _scan(self._cased, folded, hits)
        return _Field(name, text, norm, index, hits)

    # --- scoring ----------------------------------------------------------------------------------

    def classify(self, title: str, body: str = "") -> list[TopicMatch]:
        """Topics that pass their threshold, best score first, each with its evidence."""
        if self._fast is not None:
            # Most text folds to ASCII and is folded in C; the rest is folded here (NFKC, offset maps).
            matches = self._fast.classify_text(title, body)
            if matches is None:
                matches = self._classify_fast(title, body)
            if matches is not None:
                if len(matches) > 1:
                    matches.sort(key=_rank)
                return matches
        fields = (self._field("title", title), self._field("body", body))
        title_f, body_f = fields
        if not title_f.hits and not body_f.hits:
            return []
        # An optimistic bound per topic (no masks; a near rule counts when both its sides were hit in
        # one field) skips most topics cheaply.
        bound: dict[int, float] = {}
        near_counted: set[tuple[int, int]] = set()
        max_count = self.max_count
        for f in fields:
            is_title = f.name == "title"
            for pattern, spans in f.hits.items():
                for t, weight in self._raises.get(pattern, ()):
                    gain = weight * (self._title_weight[t] if is_title else min(len(spans), max_count))
                    bound[t] = bound.get(t, 0.0) + gain
        # Near rules with both sides hit in one field, found from the hits (not by scanning every rule).
        for f in fields:
            sides: dict[tuple[int, int], int] = {}
            for pattern in f.hits:
                for key, side in self._near_sides.get(pattern, ()):
                    sides[key] = sides.get(key, 0) | side
            for (t, n), seen in sides.items():
                if seen == 3 and (t, n) not in near_counted:
                    near_counted.add((t, n))
                    bound[t] = bound.get(t, 0.0) + self._near[t][n].weight * self._title_weight[t]
        matches = []
        for t in sorted(bound):
            rule = self._rules[t]
            if bound[t] < rule.threshold:
                continue
            match = self._score(t, rule, fields)
            if match is not None:
                matches.append(match)
        matches.sort(key=_rank)
        return matches

    def _score(self, t: int, rule: TopicRule, fields: tuple[_Field, _Field]) -> TopicMatch | None:
        title_f, body_f = fields
        for f in fields:
            if f.hits and any(p in f.hits for p in rule.none_of):
                return None
        masked = {
            f.name: [span for p in rule.mask if p in f.hits for span in f.hits[p]] if rule.mask else [] for f in fields
        }

        def live(pattern: str, f: _Field) -> Spans:
            found = f.hits.get(pattern)
            if not found:
                return []
            spans = masked[f.name]
            if not spans:
                return found
            return [h for h in found if not any(s < h[1] and h[0] < e for s, e in spans)]

        for group in rule.all_of:
            if not any(live(p, f) for p in group for f in fields):
                return None

        title_weight = self._title_weight[t]
        terms = rule.terms
        raw = 0.0
        evidence: list[tuple[_Field, str, tuple[int, int], str, float]] = []
        # Walk the field's hits, not the rule's terms: an item hits a handful of a topic's terms.
        for pattern in [p for p in title_f.hits if p in terms]:
            in_title = live(pattern, title_f)
            if in_title:
                gain = terms[pattern] * title_weight
                raw += gain
                evidence.append((title_f, pattern, in_title[0], "term", gain))
        for pattern in [p for p in body_f.hits if p in terms]:
            counted = live(pattern, body_f)[: self.max_count]
            if counted:
                weight = terms[pattern]
                raw += weight * len(counted)
                evidence.extend((body_f, pattern, span, "term", weight) for span in counted)
        for near in self._near[t]:
            pair = _near_pair(near, live, fields)
            if pair is not None:
                f, (pa, sa), (pb, sb) = pair
                gain = near.weight * (title_weight if f.name == "title" else 1.0)
                raw += gain
                evidence.append((f, pa, sa, "near", gain))
                evidence.append((f, pb, sb, "near", gain))
        if raw < rule.threshold or raw <= 0:
            return None
        return construct_trusted(
            TopicMatch,
            topic=rule.id,
            score=round(raw / (raw + rule.threshold), 4),
            evidence=[_evidence(f, p, span, kind, w) for f, p, span, kind, w in evidence],
        )


def _patterns(rule: TopicRule):
    yield from rule.terms
    yield from rule.none_of
    yield from rule.mask
    for group in rule.all_of:
        yield from group
    for near in rule.near:
        yield from near.a
        yield from near.b


@dataclass(frozen=True, slots=True)
class _Near:
    a_set: frozenset[str]
    b_set: frozenset[str]
    window: int
    weight: float
    a: tuple[str, ...]  # declaration order, so evidence is deterministic
    b: tuple[str, ...]


def _near_pair(near: _Near, live, fields):
    for f in fields:
        if near.a_set.isdisjoint(f.hits) or near.b_set.isdisjoint(f.hits):
            continue
        left = [(p, s) for p in near.a if p in f.hits for s in live(p, f)]
        if not left:
            continue
        right = [(p, s) for p in near.b if p in f.hits for s in live(p, f)]
        for pa, sa in left:
            for pb, sb in right:
                if sa[0] == sb[0]:
                    continue
                first, second = (sa, sb) if sa[0] < sb[0] else (sb, sa)
                if f.norm.count(" ", first[1], max(first[1], second[0])) <= near.window:
                    return f, (pa, sa), (pb, sb)
    return None


def _rank(match: TopicMatch) -> tuple[float, str]:
    return -match.score, match.topic


def _evidence(f: _Field, pattern: str, span: tuple[int, int], kind: str, weight: float) -> Evidence:
    start, end = span if f.index is None else (f.index[span[0]], f.index[span[1] - 1] + 1)
    return construct_trusted(
        Evidence, term=pattern, text=f.text[start:end], field=f.name, start=start, end=end, rule=kind,
        weight=round(weight, 4),
    )  # fmt: skip


def _scan_cased_remapped(automaton, original: str, norm: str, index: list[int] | None, hits: FieldHits) -> None:
    """Case-sensitive patterns when lower-casing changed lengths: match on the original folded text
    and keep hits whose span maps back onto normalised offsets exactly."""
    folded, fidx = fold(original)
    found: FieldHits = {}
    _scan(automaton, folded, found)
    if index is None:
        return
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, orig in enumerate(index):
        first.setdefault(orig, i)
        last[orig] = i
    for pattern, spans in found.items():
        for s, e in spans:
            o_start, o_last = (fidx[s], fidx[e - 1]) if fidx else (s, e - 1)
            if o_start in first and o_last in last:
                hits.setdefault(pattern, []).append((first[o_start], last[o_last] + 1))
