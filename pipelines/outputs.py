"""JSONL outputs: records written as shards by Beam, then merged into one sorted file per kind.

Sorting on stable keys is what makes a rerun byte-identical whatever the runner's bundling.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Callable

import apache_beam as beam

from pipelines.model import Alert, ClassifiedItem, DeadLetter

__all__ = [
    "OUTPUT_KINDS",
    "AppendJsonl",
    "WindowedJsonl",
    "WriteJsonl",
    "alert_record",
    "dead_letter_record",
    "finalize_outputs",
    "item_record",
    "keyed_line",
    "live_writer",
    "parts_dir",
]

OUTPUT_KINDS = ("items", "alerts", "dead_letters")
_PARTS = ".parts"


def item_record(classified: ClassifiedItem) -> dict:
    item = classified.item
    return {
        "id": item.id,
        "source": item.source,
        "source_kind": item.source_kind,
        "title": item.title,
        "url": item.url,
        "published": item.published.isoformat() if item.published else None,
        "ingested": item.ingested.isoformat(),
        "topics": [m.model_dump(mode="json") for m in classified.matches],
    }


def alert_record(alert: Alert) -> dict:
    return alert.model_dump(mode="json")


def dead_letter_record(letter: DeadLetter) -> dict:
    return letter.model_dump(mode="json")


def _dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":"))


def parts_dir(out_dir: str) -> str:
    return os.path.join(out_dir, _PARTS)


class WriteJsonl(beam.PTransform):
    """Records → JSONL shards under ``OUT/.parts/KIND``; :func:`finalize_outputs` merges them."""

    def __init__(self, out_dir: str, kind: str, to_record: Callable[[object], dict]) -> None:
        super().__init__()
        self._prefix = os.path.join(parts_dir(out_dir), kind)
        self._to_record = to_record
        self._kind = kind

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        to_record, kind = self._to_record, self._kind
        return (
            pcoll
            | "ToJson" >> beam.Map(lambda x: keyed_line(kind, to_record(x)))
            | "WriteShards" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )


class _AppendLines(beam.DoFn):
    """Append JSON lines to ``OUT/KIND.jsonl`` as records arrive (unbounded runs on a local disk).

    Written as they come, so a live run's files are current and a stop loses nothing written.
    """

    def __init__(self, path: str, to_record: Callable[[object], dict]) -> None:
        self._path = path
        self._to_record = to_record

    def setup(self) -> None:
        # One O_APPEND write per line: several writers (one per alert branch) can share a file
        # without interleaving inside a line.
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def process(self, element: object) -> None:
        os.write(self._fd, (_dumps(self._to_record(element)) + "\n").encode("utf-8"))

    def teardown(self) -> None:
        os.close(self._fd)


class AppendJsonl(beam.PTransform):
    """Records → appended to ``OUT/KIND.jsonl`` (streaming runs; batch runs use WriteJsonl)."""

    def __init__(self, out_dir: str, kind: str, to_record: Callable[[object], dict]) -> None:
        super().__init__()
        self._path = os.path.join(out_dir, f"{kind}.jsonl")
        self._to_record = to_record

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "AppendLines" >> beam.ParDo(_AppendLines(self._path, self._to_record))


class WindowedJsonl(beam.PTransform):
    """Records → JSONL files per 5-minute window under ``OUT/KIND/`` (unbounded runs on gs:// etc.)."""

    WINDOW_SECONDS = 300

    def __init__(self, out_dir: str, kind: str, to_record: Callable[[object], dict]) -> None:
        super().__init__()
        self._path = out_dir.rstrip("/") + "/" + kind
        self._kind = kind
        self._to_record = to_record

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        from apache_beam.io import fileio
        from apache_beam.transforms.window import FixedWindows

        to_record = self._to_record
        return (
            pcoll
            | "ToJson" >> beam.Map(lambda x: _dumps(to_record(x)))
            | "Window" >> beam.WindowInto(FixedWindows(self.WINDOW_SECONDS))
            | "WriteFiles"
            >> fileio.WriteToFiles(
                path=self._path,
                shards=1,
                file_naming=fileio.default_file_naming(prefix=self._kind, suffix=".jsonl"),
            )
        )


def live_writer(out_dir: str) -> type[beam.PTransform]:
    """The writer for unbounded runs: appending local files, windowed files on remote filesystems."""
    return WindowedJsonl if "://" in out_dir else AppendJsonl


_SORT_KEYS: dict[str, Callable[[dict], tuple]] = {
    "items": lambda r: (r["ingested"], r["id"]),
    "alerts": lambda r: (r["timestamp"], r["id"]),
    "dead_letters": lambda r: (r["stage"], r["source"], r["reason"], r["detail"]),
}


def keyed_line(kind: str, record: dict) -> str:
    """A shard line: the record's sort key, a tab, its JSON (JSON never holds a raw tab).

    Carrying the key lets the merge sort without parsing every record again.
    """
    key = "\x1f".join(_SORT_KEYS[kind](record)).replace("\t", " ").replace("\n", " ")
    return key + "\t" + _dumps(record)


def finalize_outputs(out_dir: str, append: bool = False) -> dict[str, int]:
    """Merge the shards of each kind into ``OUT/KIND.jsonl`` (sorted), remove them; return counts."""
    counts: dict[str, int] = {}
    for kind in OUTPUT_KINDS:
        shards = sorted(glob.glob(os.path.join(parts_dir(out_dir), f"{kind}-*.jsonl")))
        keyed: list[tuple[str, str]] = []
        for shard in shards:
            with open(shard, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        key, _, record = line.rstrip("\n").partition("\t")
                        keyed.append((key, record))
        keyed.sort()
        target = os.path.join(out_dir, f"{kind}.jsonl")
        mode = "a" if append else "w"
        with open(target, mode, encoding="utf-8") as fh:
            fh.writelines(record + "\n" for _, record in keyed)
        records = keyed
        for shard in shards:
            os.remove(shard)
        counts[kind] = len(records)
    with contextlib.suppress(OSError):  # other files left there: keep the folder
        os.rmdir(parts_dir(out_dir))
    return counts
