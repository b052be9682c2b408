"""Replay throughput: newsmon on Beam against a plain-Python loop over the same pure functions.

Times (1) a single-process loop that parses, dedupes, classifies, decides alerts and writes the same
sorted outputs, (2) ``newsmon replay`` on the in-process runner, (3) the same with
``--direct_running_mode=multi_processing --direct_num_workers=2``. Prints items/s, ratios to (1),
peak resident memory (whole process tree, sampled), and checks the three outputs are identical.

    python -m benchmarks.replay [--articles 100000] [--workdir /tmp/newsmon-bench] [--skip-multi]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from alerts.decide import burst_alerts_in_order, story_alerts_in_order
from alerts.subscriptions import default_subscriptions
from benchmarks.corpus import write_corpus
from pipelines.classify.engine import Engine
from pipelines.classify.rules import load_topics
from pipelines.dedupe import pick_first
from pipelines.model import ClassifiedItem
from pipelines.outputs import alert_record, dead_letter_record, item_record, keyed_line
from pipelines.pipeline import LEAD_CHARS
from pipelines.sources.replay import expand_inputs, parse_file, relative_source


def plain_loop(corpus_dir: Path, out_dir: Path) -> int:
    """The baseline: the same pure functions (parse, dedupe, classify, story/burst alerts), no Beam."""
    specs = expand_inputs([str(corpus_dir)])
    roots = [s.root for s in specs]
    engine = Engine(load_topics())
    subs = default_subscriptions().subscriptions
    by_id: dict[str, list] = {}
    dead = []
    for path in sorted(corpus_dir.iterdir()):
        if path.name.startswith("."):
            continue
        items, letters, _ = parse_file(relative_source(str(path), roots), path.read_bytes())
        dead.extend(letters)
        for item in items:
            by_id.setdefault(item.id, []).append(item)
    records: dict[str, list[dict]] = {"items": [], "alerts": [], "dead_letters": []}
    classified_items = []
    by_topic: dict[str, list[ClassifiedItem]] = {}
    for copies in by_id.values():
        item = pick_first(copies)
        classified = ClassifiedItem(item=item, matches=engine.classify(item.title, item.body))
        records["items"].append(item_record(classified))
        # the same lead-only body the pipeline carries past classification
        lead = classified.model_copy(update={"item": item.model_copy(update={"body": item.body[:LEAD_CHARS]})})
        classified_items.append(lead)
        for match in classified.matches:
            by_topic.setdefault(match.topic, []).append(lead)
    records["alerts"].extend(alert_record(a) for a in story_alerts_in_order(classified_items, subs))
    for topic, members in by_topic.items():
        records["alerts"].extend(alert_record(a) for a in burst_alerts_in_order(topic, members, subs))
    records["dead_letters"] = [dead_letter_record(d) for d in dead]
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, recs in records.items():
        lines = sorted(keyed_line(kind, r).partition("\t")[::2] for r in recs)
        (out_dir / f"{kind}.jsonl").write_text("".join(line + "\n" for _, line in lines), encoding="utf-8")
    return len(records["items"])


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{current}/task/{current}/children") as fh:
                pending.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak tree RSS (KiB) of a command."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return time.perf_counter() - started, peak


def same_outputs(a: Path, b: Path) -> bool:
    for kind in ("items", "alerts", "dead_letters"):
        left = set((a / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines())
        right = set((b / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines())
        if left != right:
            print(f"  {kind}: {len(left ^ right)} lines differ", file=sys.stderr)
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/newsmon-bench"))
    parser.add_argument("--skip-multi", action="store_true")
    args = parser.parse_args()

    corpus = args.workdir / f"corpus-{args.articles}"
    if not corpus.is_dir():
        started = time.perf_counter()
        write_corpus(corpus, args.articles, args.per_file)
        print(f"corpus: wrote {args.articles} articles in {time.perf_counter() - started:.1f} s")
    size_mb = sum(p.stat().st_size for p in corpus.iterdir()) / 1e6
    print(f"corpus: {args.articles} articles, {size_mb:.0f} MB in {len(os.listdir(corpus))} files")

    here = Path(__file__).resolve().parent.parent
    results = {}
    out1 = args.workdir / "out-plain"
    shutil.rmtree(out1, ignore_errors=True)
    cmd1 = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(here)!r}); from benchmarks.replay import plain_loop; "
        f"from pathlib import Path; plain_loop(Path({str(corpus)!r}), Path({str(out1)!r}))",
    ]
    results["plain"] = run_measured(cmd1, here)
    runs = [("inprocess", [])]
    if not args.skip_multi:
        runs.append(("multi2", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
    outs = {"plain": out1}
    for name, extra in runs:
        out = args.workdir / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "pipelines.cli", "replay", str(corpus), "--out", str(out), *extra]
        results[name] = run_measured(cmd, here)
        outs[name] = out

    items = sum(1 for _ in (out1 / "items.jsonl").open(encoding="utf-8"))
    base = results["plain"][0]
    print(f"{'run':<10} {'wall s':>8} {'items/s':>9} {'vs plain (speed)':>17} {'peak RSS MiB':>13}")
    for name, (wall, peak) in results.items():
        print(f"{name:<10} {wall:8.1f} {items / wall:9.0f} {base / wall:16.2f}x {peak / 1024:13.0f}")
    identical = all(same_outputs(out1, outs[n]) for n in outs if n != "plain")
    print(f"outputs identical as sets: {identical} ({items} items)")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
