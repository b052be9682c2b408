"""Precision, recall and F1 of a topics file against labelled JSONL, with the evidence behind errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipelines.classify.engine import Engine
from pipelines.model import TopicMatch

__all__ = ["Example", "LabelError", "Report", "TopicScore", "evaluate", "read_labeled"]


class LabelError(ValueError):
    """A labelled file line that cannot be used (the message names the line)."""


@dataclass(frozen=True)
class Example:
    line: int
    id: str
    title: str
    body: str
    topics: frozenset[str]


@dataclass
class TopicScore:
    topic: str
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Error:
    kind: str  # "false_positive" | "false_negative"
    topic: str
    example: Example
    match: TopicMatch | None


@dataclass
class Report:
    scores: dict[str, TopicScore]
    errors: list[Error] = field(default_factory=list)
    n_examples: int = 0

    @property
    def macro_f1(self) -> float:
        return sum(s.f1 for s in self.scores.values()) / len(self.scores) if self.scores else 0.0

    def to_json(self) -> dict:
        return {
            "examples": self.n_examples,
            "macro_f1": round(self.macro_f1, 4),
            "topics": {
                t: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "support": s.support,
                    "tp": s.tp,
                    "fp": s.fp,
                    "fn": s.fn,
                }
                for t, s in self.scores.items()
            },
            "errors": [
                {
                    "kind": e.kind,
                    "topic": e.topic,
                    "line": e.example.line,
                    "id": e.example.id,
                    "title": e.example.title,
                    "labels": sorted(e.example.topics),
                    "evidence": [ev.model_dump(mode="json") for ev in e.match.evidence] if e.match else [],
                }
                for e in self.errors
            ],
        }


def read_labeled(lines: Iterable[str], known_topics: set[str]) -> list[Example]:
    examples = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LabelError(f"line {number}: not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("topics"), list):
            raise LabelError(f"line {number}: needs an object with a 'topics' list")
        unknown = [t for t in obj["topics"] if t not in known_topics]
        if unknown:
            raise LabelError(f"line {number}: unknown topic(s) {', '.join(map(str, unknown))}")
        body = next((obj[k] for k in ("summary", "body", "text") if isinstance(obj.get(k), str)), "")
        examples.append(
            Example(number, str(obj.get("id", number)), str(obj.get("title", "")), body, frozenset(obj["topics"]))
        )
    return examples


def evaluate(engine: Engine, examples: list[Example]) -> Report:
    report = Report(scores={t: TopicScore(t) for t in engine.topic_ids}, n_examples=len(examples))
    for ex in examples:
        predicted = {m.topic: m for m in engine.classify(ex.title, ex.body)}
        for topic, score in report.scores.items():
            got, want = topic in predicted, topic in ex.topics
            if got and want:
                score.tp += 1
            elif got:
                score.fp += 1
                report.errors.append(Error("false_positive", topic, ex, predicted[topic]))
            elif want:
                score.fn += 1
                report.errors.append(Error("false_negative", topic, ex, None))
    return report
