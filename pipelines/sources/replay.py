"""ReplayArticles: article files (local or gs://, via Beam FileSystems) → timestamped NewsItems.

File contents never travel through ``beam.Create``: only the patterns do; workers match and read
the files themselves, so replaying months of archives costs no graph size.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import MatchResult
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import TimestampedValue

from pipelines import metrics
from pipelines.model import DeadLetter, NewsItem, item_id
from pipelines.sources.articles import BinaryFileError, decode_text, split_articles

__all__ = [
    "DEAD_LETTERS",
    "UNDATED_EPOCH",
    "InputSpec",
    "ParseArticleFile",
    "ReplayArticles",
    "expand_inputs",
    "parse_file",
]

DEAD_LETTERS = "dead_letters"
# Articles without a date in their text get this event time plus their position in the file, in
# seconds: deterministic (a rerun is byte-identical) and obviously "unknown" to a reader.
UNDATED_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InputError(ValueError):
    """A replay input that does not exist or matches nothing."""


@dataclass(frozen=True)
class InputSpec:
    """One file pattern to match and the root that item ``source`` paths are made relative to."""

    pattern: str
    root: str


def _is_glob(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def expand_inputs(paths: Iterable[str]) -> list[InputSpec]:
    """Turn user paths (files, directories, globs; local or gs://) into match patterns.

    Item sources are made relative to the parent of the named directory (``seeds/000.txt``), of a
    glob's fixed prefix, or of a file's directory, so ids do not depend on where the checkout is.
    Raises InputError naming the first path that matches nothing, before any pipeline is built.
    """
    specs: list[InputSpec] = []
    for raw in paths:
        if "://" in raw:
            pattern, root = raw, ""
        else:
            absolute = os.path.abspath(raw)
            if os.path.isdir(absolute):
                pattern, root = os.path.join(absolute, "*"), os.path.dirname(absolute)
            else:
                parts = absolute.split(os.sep)
                fixed = [p for p in itertools.takewhile(lambda p: not _is_glob(p), parts)]
                static = os.sep.join(fixed[:-1]) if len(fixed) == len(parts) else os.sep.join(fixed)
                pattern, root = absolute, os.path.dirname(static) or os.sep
        try:
            result: MatchResult = FileSystems.match([pattern])[0]
        except Exception as exc:
            raise InputError(f"{raw}: cannot list: {exc}") from None
        if not any(not _hidden(m.path) for m in result.metadata_list):
            raise InputError(f"{raw}: no such file or directory (or nothing matches)")
        specs.append(InputSpec(pattern, root))
    return specs


def _hidden(path: str) -> bool:
    return FileSystems.split(path)[1].startswith(".")


def relative_source(path: str, roots: Iterable[str]) -> str:
    """The item ``source``: the path relative to its input root (stable across checkouts)."""
    if "://" in path:
        return path
    for root in roots:
        if root and path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root)
    return path


def parse_file(source: str, data: bytes) -> tuple[list[NewsItem], list[DeadLetter], bool]:
    """Pure: one file's bytes → (items, dead letters, whether undecodable bytes were replaced)."""
    if not data.strip():
        return [], [DeadLetter(stage="replay", source=source, reason="empty_file")], False
    try:
        text, replaced = decode_text(data)
    except BinaryFileError as exc:
        return [], [DeadLetter(stage="replay", source=source, reason="binary_file", detail=str(exc))], False
    articles = split_articles(text)
    if not articles:
        return [], [DeadLetter(stage="replay", source=source, reason="no_articles")], replaced
    items = [
        NewsItem(
            id=item_id(source, None, a.title, a.published),
            source=source,
            source_kind="replay",
            title=a.title,
            body=a.body,
            published=a.published,
            ingested=a.published or UNDATED_EPOCH + timedelta(seconds=a.ordinal),
        )
        for a in articles
    ]
    return items, [], replaced


class ParseArticleFile(beam.DoFn):
    """ReadableFile → NewsItems (main) and DeadLetters (tagged)."""

    def __init__(self, roots: list[str], max_file_bytes: int) -> None:
        self._roots = roots
        self._max_bytes = max_file_bytes

    def process(self, file: fileio.ReadableFile) -> Iterator[object]:
        source = relative_source(file.metadata.path, self._roots)
        if file.metadata.size_in_bytes > self._max_bytes:
            metrics.inc("dead_letters", stage="replay")
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter(
                    stage="replay",
                    source=source,
                    reason="file_too_large",
                    detail=f"{file.metadata.size_in_bytes} bytes > limit {self._max_bytes}",
                ),
            )
            return
        items, dead, replaced = parse_file(source, file.read())
        metrics.inc("replay_files")
        if replaced:
            metrics.inc("replay_decode_replaced")
        for letter in dead:
            metrics.inc("dead_letters", stage="replay")
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        for item in items:
            metrics.inc("items_ingested", source_kind="replay")
            yield item


class _Pace(beam.DoFn):
    """Emit items in event-time order, sleeping so that ``speed`` event seconds pass per wall second."""

    def __init__(self, speed: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._speed = speed
        self._sleep = sleep

    def process(self, items: list[NewsItem]) -> Iterator[NewsItem]:
        previous: datetime | None = None
        for item in sorted(items, key=lambda it: (it.ingested, it.id)):
            if previous is not None:
                gap = (item.ingested - previous).total_seconds() / self._speed
                if gap > 0:
                    self._sleep(gap)
            previous = item.ingested
            yield item


class ReplayArticles(beam.PTransform):
    """PBegin → {"items": timestamped NewsItems, "dead_letters": DeadLetters}."""

    def __init__(
        self,
        inputs: list[InputSpec],
        *,
        max_file_bytes: int = 32 * 1024 * 1024,
        speed: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._inputs = inputs
        self._max_bytes = max_file_bytes
        self._speed = speed
        self._sleep = sleep

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        roots = [spec.root for spec in self._inputs]
        parsed = (
            pbegin
            | "Patterns" >> beam.Create([spec.pattern for spec in self._inputs])
            | "MatchFiles" >> fileio.MatchAll()
            | "SkipHidden" >> beam.Filter(lambda m: not _hidden(m.path))
            # The matches come out of one element; a shuffle lets several workers read and classify.
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadMatches" >> fileio.ReadMatches()
            | "ParseArticles"
            >> beam.ParDo(ParseArticleFile(roots, self._max_bytes)).with_outputs(DEAD_LETTERS, main="items")
        )
        items = parsed.items
        if self._speed > 0:
            items = (
                items
                | "Collect" >> beam.combiners.ToList()
                | "PaceInEventTime" >> beam.ParDo(_Pace(self._speed, self._sleep))
            )
        stamped = items | "EventTime" >> beam.Map(lambda item: TimestampedValue(item, item.ingested.timestamp()))
        return {"items": stamped, DEAD_LETTERS: parsed[DEAD_LETTERS]}
