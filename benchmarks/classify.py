"""Classifier throughput: newsmon's engine against a naive regex baseline, same run, same corpus.

The engine is timed twice: with its compiled hot path (``newsmon_speedups``, when built) and as
pure Python (``Engine(..., speedups=False)``, what runs where no C compiler was available).

Baseline: one ``re.IGNORECASE`` alternation per topic over the same term variants, ``finditer`` over
title and body (spans kept, like our evidence), the same weights, title bonus, max_count and
threshold. For the agreement check both run a terms-only copy of the topics (no near/all_of/none_of/
mask, no case-sensitive acronyms): there the rules coincide and the topic sets must be identical.

    python -m benchmarks.classify [--articles 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from benchmarks.corpus import generate_articles
from pipelines.classify.engine import Engine, _variants, normalize
from pipelines.classify.rules import TopicsFile, load_topics


def terms_only(topics: TopicsFile) -> TopicsFile:
    """The shipped topics without context rules or case-sensitive patterns: what a regex can mirror."""
    stripped = []
    for rule in topics.topics:
        terms = {p: w for p, w in rule.terms.items() if not _variants(p)[2]}
        # A regex alternation finds non-overlapping matches; the engine finds all. Keep only terms that
        # share no word with another kept term of the topic, so no two can overlap in a text.
        kept: dict[str, float] = {}
        used: set[str] = set()
        for p in sorted(terms, key=lambda t: (len(t), t)):
            words = {w for key in _variants(p)[0] for w in re.split(r"[ -]", key.rstrip("*"))}
            if used.isdisjoint(words):
                kept[p] = terms[p]
                used |= words
        terms = kept
        stripped.append(rule.model_copy(update={"terms": terms, "near": [], "all_of": [], "none_of": [], "mask": []}))
    return topics.model_copy(update={"topics": stripped})


class NaiveBaseline:
    def __init__(self, topics: TopicsFile) -> None:
        self.topics = topics
        self.compiled = []
        for rule in topics.topics:
            alternatives, weights = [], {}
            for pattern, weight in rule.terms.items():
                keys, prefix, _ = _variants(pattern)
                for key in keys:
                    alternatives.append(re.escape(key) + (r"\w*" if prefix else ""))
                    weights[key] = (pattern, weight, prefix)
            regex = re.compile(
                r"(?<!\w)(?:" + "|".join(sorted(alternatives, key=len, reverse=True)) + r")(?!\w)", re.IGNORECASE
            )
            self.compiled.append((rule, regex, weights, rule.title_weight or topics.title_weight))

    def classify(self, title: str, body: str) -> set[str]:
        found = set()
        fields = (("title", normalize(title)[0]), ("body", normalize(body)[0]))
        for rule, regex, weights, title_weight in self.compiled:
            hits: dict[tuple[str, str], list[tuple[int, int]]] = {}
            for name, text in fields:
                for m in regex.finditer(text):
                    pattern = self._pattern(m.group(0).lower(), weights)
                    hits.setdefault((name, pattern), []).append(m.span())
            raw = 0.0
            for pattern, weight in rule.terms.items():
                if hits.get(("title", pattern)):
                    raw += weight * title_weight
                raw += weight * min(len(hits.get(("body", pattern), ())), self.topics.max_count)
            if raw >= rule.threshold and raw > 0:
                found.add(rule.id)
        return found

    @staticmethod
    def _pattern(matched: str, weights) -> str:
        if matched in weights:
            return weights[matched][0]
        best = max((k for k, v in weights.items() if v[2] and matched.startswith(k)), key=len)
        return weights[best][0]


def timed(fn, corpus, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for title, body, _ in corpus:
            fn(title, body)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    corpus = generate_articles(args.articles)
    megabytes = sum(len(t.encode()) + len(b.encode()) for t, b, _ in corpus) / 1e6
    shipped = load_topics()
    engine, python_engine = Engine(shipped), Engine(shipped, speedups=False)
    plain = terms_only(shipped)
    plain_engine, baseline = Engine(plain), NaiveBaseline(plain)

    ours = timed(engine.classify, corpus, args.repeat)
    ours_python = timed(python_engine.classify, corpus, args.repeat)
    ours_plain = timed(plain_engine.classify, corpus, args.repeat)
    naive = timed(baseline.classify, corpus, args.repeat)
    disagree = sum({m.topic for m in plain_engine.classify(t, b)} != baseline.classify(t, b) for t, b, _ in corpus)

    # The two engines must agree exactly (topics, scores, evidence), not just on topic sets.
    def dumped(eng: Engine, title: str, body: str) -> list[str]:
        return [m.model_dump_json() for m in eng.classify(title, body)]

    differ = sum(dumped(engine, t, b) != dumped(python_engine, t, b) for t, b, _ in corpus)
    evidence = sum(len(m.evidence) for t, b, _ in corpus[:500] for m in engine.classify(t, b))

    kind = "compiled" if engine.compiled else "pure Python: newsmon_speedups not built"
    print(f"corpus: {len(corpus)} articles, {megabytes:.1f} MB (title+body, UTF-8), best of {args.repeat}")
    print(f"engine in use: {kind}")
    print(f"engine (shipped rules, with evidence): {megabytes / ours:7.1f} MB/s  {len(corpus) / ours:9.0f} items/s")
    print(
        f"  same, pure Python (speedups=False):  {megabytes / ours_python:7.1f} MB/s  "
        f"{len(corpus) / ours_python:9.0f} items/s"
    )
    print(
        f"engine (terms-only rules):             {megabytes / ours_plain:7.1f} MB/s  "
        f"{len(corpus) / ours_plain:9.0f} items/s"
    )
    print(f"naive regex baseline (terms-only):     {megabytes / naive:7.1f} MB/s  {len(corpus) / naive:9.0f} items/s")
    print(f"speed-up over baseline: {naive / ours:.1f}x (shipped rules), {naive / ours_plain:.1f}x (same rules)")
    print(f"topic-set agreement on the same rules: {len(corpus) - disagree}/{len(corpus)}")
    print(f"compiled vs pure-Python results (topics, scores, evidence): {len(corpus) - differ}/{len(corpus)} identical")
    print(f"evidence records on the first 500 items: {evidence}")
    return 1 if disagree or differ else 0


if __name__ == "__main__":
    sys.exit(main())
