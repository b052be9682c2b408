"""Live-source benchmark: ``newsmon watch`` against loopback feed servers whose feeds keep growing.

Starts ``--hosts`` FeedServer instances on 127.0.0.1 (one port each, so newsmon's per-host limit of
2 concurrent requests applies per port, as it would per site), serving ``--feeds`` RSS feeds between
them with ``--latency-ms`` of response latency and ETag "auto" (an unchanged feed answers 304). Each
feed starts with a few entries and gains new ones at random times (exponential gaps; each feed's mean
gap is drawn uniformly in [0.5, 1.5] x ``--new-every``; deterministic ``--seed``). An entry is
*visible* from its scheduled wall time on: every response body generated from then on includes it.

Runs ``python -m pipelines.cli watch --feeds FILE --interval S --duration S --out DIR
--metrics-port 0`` as a subprocess (own session, cwd a temp dir, PYTHONPATH = this checkout), tails
DIR/items.jsonl while it runs (the wall time each entry's url first appears there is its emission
time) and samples the watch process tree's RSS and CPU (utime+stime from /proc) every second.

Prints: the configuration; entries that appeared vs were emitted (and the missing ones); latency from
appearance to emission (p50/p95/max) for entries that appeared after warm-up (by default: when every
feed has been fetched once, i.e. the first full poll round) and early enough that a poll was owed
before the run ended (appearance <= poll deadline - (interval + slack)); that latency split into
"poll wait" (appearance -> first served by the server) and "pipeline" (served -> line in
items.jsonl); RSS at the end of warm-up vs the end and the growth; CPU (% of one core) of the watch
tree, of this process (the feed servers) and of the whole machine; requests served (200 vs 304) and
peak concurrency; poll periods per feed from DIR/feeds.jsonl (checked_at); a timeline; and PASS/FAIL:

    p95 <= interval + 2 s   (1,000 feeds x 200 ms latency x 60 s interval)
    p95 <= interval + 1 s   (100 feeds, no latency, 1 s interval)
    RSS growth after warm-up < 10 %

It always exits 0 (a measurement). Ctrl-C / SIGTERM stop the watch process (SIGTERM, then SIGKILL
after 20 s) and the servers, and still print what was measured. Raw data (entries.csv, samples.csv,
the watch's out/ folder, stdout and stderr) stays in ``--workdir`` (default: a new /tmp/newsmon-watch-*).

    cd /work/main
    /work/venv/bin/python -m benchmarks.watch --feeds 100 --latency-ms 0 --interval 1 --duration 60 --hosts 10
    nohup /work/venv/bin/python -m benchmarks.watch --feeds 1000 --latency-ms 200 --interval 60 \\
        --duration 600 --hosts 50 > /tmp/watch-1000.txt 2>&1 &
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.feed_server import FeedServer, Route, rss_feed

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTUP_ALLOWANCE = 120.0  # seconds the watch process may take to start polling before we give up on it
EXIT_GRACE = 60.0  # seconds after its duration before the watch process is told to stop

# --- synthetic feeds ------------------------------------------------------------------------------

_TITLES = [
    "UK and China resume trade talks on {thing}",
    "Beijing raises tariffs on British {thing} imports",
    "Embassy row deepens as minister summons Chinese ambassador over {thing}",
    "Hackers linked to China target {thing} networks, GCHQ says",
    "Two charged with spying for China after {thing} inquiry",
    "Hong Kong activists call for sanctions over {thing}",
    "Council approves new {thing} plan after long consultation",
    "Local football club unveils {thing} for next season",
    "Weather: {thing} expected across the north this weekend",
    "Visa rules for Chinese students to change, {thing} report says",
]
_THINGS = [
    "whisky",
    "steel",
    "semiconductor",
    "electric vehicle",
    "pharmaceutical",
    "university",
    "port",
    "telecoms",
    "solar panel",
    "energy",
    "water",
    "rail",
    "housing",
    "fishing",
    "airport",
]
_SENTENCES = [
    "Officials said the talks would continue next month in London.",
    "The Foreign Office declined to comment on the details.",
    "Critics warned that the move could damage relations with Beijing.",
    "Prosecutors say the pair passed sensitive information to intelligence services.",
    "Industry groups welcomed the decision but asked for more clarity on customs duties.",
    "The council will publish its full response later this week.",
    "Analysts expect the dispute to drag on for several months.",
    "A spokesperson said the company had not been informed in advance.",
]


@dataclass
class Entry:
    feed: int
    seq: int
    guid: str
    url: str
    title: str
    description: str
    appear: float  # wall time from which the entry is in every response body
    initial: bool
    served: float | None = None  # wall time of the first response body that included it
    emitted: float | None = None  # wall time its url first appeared in items.jsonl
    emitted_count: int = 0


@dataclass
class SimFeed:
    index: int
    host: int
    path: str
    entries: list[Entry]
    window: int
    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served_upto: int = 0
    cached_n: int = -1
    cached_body: bytes = b""
    requests: int = 0
    first_request: float | None = None

    def __post_init__(self) -> None:
        self.times = [e.appear for e in self.entries]

    def body(self) -> bytes:
        """Called by FeedServer for every request (200 or 304): the document as of now."""
        now = time.time()
        n = bisect.bisect_right(self.times, now)
        with self.lock:
            self.requests += 1
            if self.first_request is None:
                self.first_request = now
            if n > self.served_upto:
                for entry in self.entries[self.served_upto : n]:
                    entry.served = now
                self.served_upto = n
            if n != self.cached_n:
                shown = self.entries[max(0, n - self.window) : n]
                self.cached_body = rss_feed(
                    (
                        {
                            "guid": e.guid,
                            "title": e.title,
                            "link": e.url,
                            "description": e.description,
                            "published": datetime.fromtimestamp(e.appear, UTC),
                        }
                        for e in reversed(shown)  # newest first, as feeds list them
                    ),
                    title=f"Bench feed {self.index}",
                )
                self.cached_n = n
            return self.cached_body


def make_feeds(args: argparse.Namespace, start: float, horizon: float) -> list[SimFeed]:
    rng = random.Random(args.seed)
    feeds = []
    for f in range(args.feeds):
        host = f % args.hosts
        mean = args.new_every * rng.uniform(0.5, 1.5)
        times = [start - 3600 + 600 * i + rng.uniform(0, 60) for i in range(args.initial_entries)]
        t = start
        while True:
            t += rng.expovariate(1.0 / mean)
            if t > start + horizon:
                break
            times.append(t)
        entries = [
            Entry(
                feed=f,
                seq=seq,
                guid=f"bench-{f}-{seq}",
                url=f"https://site{host}.example/feed{f}/story-{seq}",
                title=rng.choice(_TITLES).format(thing=rng.choice(_THINGS)),
                description=" ".join(rng.sample(_SENTENCES, 3)),
                appear=appear,
                initial=seq < args.initial_entries,
            )
            for seq, appear in enumerate(times)
        ]
        feeds.append(SimFeed(index=f, host=host, path=f"/feed{f}.xml", entries=entries, window=args.window))
    return feeds


# --- /proc sampling -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of a process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def _rss_threads(pid: int) -> tuple[int, int]:
    rss = threads = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def tree_usage(root: int) -> tuple[int, int, int, int]:
    """(RSS KiB, CPU ticks, threads, processes) of ``root`` and all its descendants."""
    stats: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                stats[int(name)] = st
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    rss = ticks = threads = procs = 0
    pending = [root] if root in stats else []
    while pending:
        pid = pending.pop()
        r, t = _rss_threads(pid)
        rss, threads, procs = rss + r, threads + t, procs + 1
        ticks += stats[pid][1]
        pending.extend(children.get(pid, []))
    return rss, ticks, threads, procs


def system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, all cores."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


@dataclass
class Sample:
    t: float
    rss_kib: int
    ticks: int
    threads: int
    procs: int
    self_ticks: int
    sys_busy: int
    sys_total: int


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.pid = pid
        self.every = every
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            rss, ticks, threads, procs = tree_usage(self.pid)
            st = _stat(os.getpid())
            busy, total = system_cpu()
            if procs and rss:  # an exiting (zombie) process has no VmRSS
                self.samples.append(Sample(time.time(), rss, ticks, threads, procs, st[1] if st else 0, busy, total))
            if self.stop.wait(self.every):
                return


# --- tailing items.jsonl and the watch's stdout ---------------------------------------------------


class Tail(threading.Thread):
    """Follows a growing JSONL file; records the wall time each url is first read."""

    def __init__(self, path: Path, by_url: dict[str, Entry]) -> None:
        super().__init__(daemon=True, name="bench-tail")
        self.path = path
        self.by_url = by_url
        self.stop = threading.Event()
        self.lines = 0
        self.unknown: Counter[str] = Counter()

    def run(self) -> None:
        fh = None
        buffer = b""
        try:
            while True:
                stopping = self.stop.is_set()
                if fh is None:
                    with contextlib.suppress(FileNotFoundError):
                        fh = open(self.path, "rb")  # noqa: SIM115 (kept open while tailing)
                chunk = fh.read() if fh is not None else b""
                if chunk:
                    now = time.time()
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    for line in complete:
                        self._line(line, now)
                    continue
                if stopping:
                    return
                self.stop.wait(0.02)
        finally:
            if fh is not None:
                fh.close()

    def _line(self, line: bytes, now: float) -> None:
        if not line.strip():
            return
        self.lines += 1
        try:
            url = json.loads(line).get("url")
        except ValueError:
            self.unknown["<bad json>"] += 1
            return
        entry = self.by_url.get(url)
        if entry is None:
            self.unknown[str(url)] += 1
            return
        entry.emitted_count += 1
        if entry.emitted is None:
            entry.emitted = now


class StdoutReader(threading.Thread):
    def __init__(self, stream, path: Path) -> None:
        super().__init__(daemon=True, name="bench-stdout")
        self.stream = stream
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self.announced = threading.Event()
        self.announced_at: float | None = None

    def run(self) -> None:
        with open(self.path, "w", encoding="utf-8") as out:
            for raw in self.stream:
                now = time.time()
                line = raw.rstrip("\n")
                self.lines.append((now, line))
                out.write(f"{now:.3f} {line}\n")
                out.flush()
                if line.startswith("newsmon watch:") and self.announced_at is None:
                    self.announced_at = now
                    self.announced.set()


# --- statistics -----------------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (inf counts as a value: a missing entry)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "missing"
    return f"{value:.2f} s"


def triple(values: list[float]) -> str:
    values = sorted(values)
    return f"p50 {fmt_s(pct(values, 50))}, p95 {fmt_s(pct(values, 95))}, max {fmt_s(values[-1] if values else None)}"


def cpu_pct(a: Sample, b: Sample, attr: str = "ticks") -> float:
    dt = b.t - a.t
    return 100.0 * (getattr(b, attr) - getattr(a, attr)) / CLK_TCK / dt if dt > 0 else 0.0


def sample_at(samples: list[Sample], t: float, after: bool = True) -> Sample | None:
    """The first sample at or after ``t`` (or the last one at or before it)."""
    if after:
        return next((s for s in samples if s.t >= t), samples[-1] if samples else None)
    before = [s for s in samples if s.t <= t]
    return before[-1] if before else (samples[0] if samples else None)


def target_slack(args: argparse.Namespace) -> tuple[float, str]:
    if args.target_slack is not None:
        return args.target_slack, "given with --target-slack"
    if args.feeds >= 1000 and args.latency_ms >= 200 and args.interval >= 60:
        return 2.0, "target for 1,000 feeds x 200 ms x 60 s"
    if args.feeds <= 100 and args.latency_ms == 0 and args.interval <= 1:
        return 1.0, "target for 100 feeds, no latency, 1 s interval"
    return 2.0, "no stated target for this configuration; using +2 s"


# --- the run --------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


STOP_REQUESTED: list[float] = []  # wall time the benchmark asked the watch process to stop


def stop_process(proc: subprocess.Popen, why: str) -> None:
    if proc.poll() is not None:
        return
    STOP_REQUESTED.append(time.time())
    print(f"bench: {why}: sending SIGTERM to watch (pid {proc.pid})", file=sys.stderr, flush=True)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        print("bench: watch did not stop within 20 s: SIGKILL", file=sys.stderr, flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=100, help="number of feeds (default 100)")
    parser.add_argument("--hosts", type=int, default=10, help="feed servers (ports) to spread them over (default 10)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="server latency before each response")
    parser.add_argument("--interval", type=float, default=1.0, help="newsmon watch --interval (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="newsmon watch --duration (s)")
    parser.add_argument(
        "--new-every",
        type=float,
        default=None,
        help="mean seconds between new entries of a feed (default 2 x interval); per feed the "
        "mean is drawn in [0.5, 1.5] x this, gaps are exponential",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds after the watch process started that count as warm-up (default: until "
        "every feed has been fetched once)",
    )
    parser.add_argument("--initial-entries", type=int, default=3, help="entries each feed starts with")
    parser.add_argument("--window", type=int, default=10, help="newest entries kept in a feed document")
    parser.add_argument("--shards", type=int, default=1, help="newsmon watch --shards (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target-slack", type=float, default=None, help="override: p95 target = interval + this")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new /tmp/newsmon-watch-* folder")
    args = parser.parse_args()
    if args.new_every is None:
        args.new_every = 2 * args.interval
    if args.feeds < 1 or args.hosts < 1 or args.hosts > args.feeds:
        parser.error("need 1 <= --hosts <= --feeds")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="newsmon-watch-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = workdir / "out"
    with contextlib.suppress(FileNotFoundError):
        (out_dir / "items.jsonl").unlink()

    def on_term(signum, frame):
        raise Interrupted

    signal.signal(signal.SIGTERM, on_term)

    load_before = os.getloadavg()
    start = time.time()
    horizon = STARTUP_ALLOWANCE + args.duration + EXIT_GRACE + 60
    feeds = make_feeds(args, start, horizon)
    by_url = {e.url: e for f in feeds for e in f.entries}
    servers: list[FeedServer] = []
    proc: subprocess.Popen | None = None
    sampler = tail = reader = None
    interrupted = ""
    t_spawn = t_exit = None
    mono_to_wall = time.time() - time.monotonic()
    try:
        servers = [FeedServer() for _ in range(args.hosts)]
        delay = args.latency_ms / 1000.0
        for feed in feeds:
            servers[feed.host].route(feed.path, Route(body=feed.body, etag="auto", delay=delay))
        feed_file = workdir / "feeds.txt"
        feed_file.write_text("".join(servers[f.host].url(f.path) + "\n" for f in feeds), encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "watch",
            "--feeds",
            str(feed_file),
            "--interval",
            f"{args.interval:g}",
            "--duration",
            f"{args.duration:g}",
            "--out",
            str(out_dir),
            "--metrics-port",
            "0",
        ]
        if args.shards != 1:
            cmd += ["--shards", str(args.shards)]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        print(f"bench: workdir {workdir}", flush=True)
        print(f"bench: {' '.join(cmd)}", flush=True)
        stderr_file = open(workdir / "watch.stderr", "w", encoding="utf-8")  # noqa: SIM115
        t_spawn = time.time()
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            start_new_session=True,
        )
        stderr_file.close()
        reader = StdoutReader(proc.stdout, workdir / "watch.stdout")
        reader.start()
        sampler = Sampler(proc.pid)
        sampler.start()
        tail = Tail(out_dir / "items.jsonl", by_url)
        tail.start()
        hard_stop = t_spawn + STARTUP_ALLOWANCE + args.duration + EXIT_GRACE
        while proc.poll() is None:
            if time.time() > hard_stop:
                interrupted = "watch ran past its duration + grace"
                stop_process(proc, interrupted)
                break
            time.sleep(0.2)
    except (KeyboardInterrupt, Interrupted):
        interrupted = "interrupted (Ctrl-C / SIGTERM)"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded; do not abort it halfway
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proc is not None:
            stop_process(proc, interrupted or "cleanup")
            t_exit = time.time()
        for thread in (sampler, tail):
            if thread is not None:
                thread.stop.set()
                thread.join(timeout=10)
        if reader is not None:
            reader.join(timeout=5)
        records = []
        for server in servers:
            records.append(server.requests(settle=2.0))
            server.close()

    if proc is None or t_spawn is None:
        print("bench: the watch process was never started", file=sys.stderr)
        return 0
    report(
        args,
        feeds,
        records,
        sampler,
        tail,
        reader,
        proc,
        workdir,
        out_dir,
        t_spawn,
        t_exit or time.time(),
        mono_to_wall,
        load_before,
        interrupted,
    )
    return 0


def report(
    args,
    feeds,
    records,
    sampler,
    tail,
    reader,
    proc,
    workdir,
    out_dir,
    t_spawn,
    t_exit,
    mono_to_wall,
    load_before,
    interrupted,
) -> None:
    samples: list[Sample] = sampler.samples if sampler else []
    entries = [e for f in feeds for e in f.entries]
    announced = reader.announced_at if reader and reader.announced_at else t_spawn
    deadline = announced + args.duration  # when watch stops polling (its clock starts a little later)
    end_of_polls = min(deadline, STOP_REQUESTED[0] if STOP_REQUESTED else t_exit)
    slack, slack_note = target_slack(args)
    target = args.interval + slack
    cutoff = end_of_polls - target  # entries appearing later are not owed an emission by the end

    # warm-up: the first full poll round, as the servers saw it
    firsts = [f.first_request for f in feeds]
    round_done = max(firsts) if all(t is not None for t in firsts) else None
    if args.warmup is not None:
        warm_end, warm_note = t_spawn + args.warmup, f"--warmup {args.warmup:g} s"
    elif round_done is not None:
        warm_end, warm_note = round_done, "every feed fetched once"
    else:
        warm_end, warm_note = t_spawn + args.interval, "first round never completed; using spawn + interval"

    rel = lambda t: f"+{t - t_spawn:.1f} s"  # noqa: E731
    print()
    print("=" * 100)
    print("newsmon watch benchmark (live RSS source, Beam in-process runner)")
    print(
        f"  feeds {args.feeds}, hosts {args.hosts} (~{args.feeds / args.hosts:g} feeds per host:port), latency "
        f"{args.latency_ms:g} ms, interval {args.interval:g} s, duration {args.duration:g} s, shards {args.shards}"
    )
    print(
        f"  new entries: mean gap per feed ~{args.new_every:g} s (per-feed mean in [0.5, 1.5] x that, exponential "
        f"gaps), {args.initial_entries} initial entries, window {args.window}, seed {args.seed}"
    )
    print(
        f"  machine: {os.cpu_count()} cores; load average before start {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}; the feed servers run in this benchmark process, on the same cores"
    )
    print(
        f"  watch: pid {proc.pid}, exit code {proc.returncode}; announced {rel(announced)}, first full poll round "
        f"done {rel(round_done) if round_done else 'never'}, poll deadline ~{rel(deadline)}, exited {rel(t_exit)}"
    )
    print(
        f"  warm-up ends {rel(warm_end)} ({warm_note}); latency window: entries appearing in "
        f"[{rel(warm_end)}, {rel(cutoff)}] (deadline - interval - {slack:g} s)"
    )
    if interrupted:
        print(f"  NOTE: {interrupted}; figures cover what ran")

    # --- entries
    initial = [e for e in entries if e.initial]
    new = [e for e in entries if not e.initial and e.appear <= end_of_polls]
    new_emitted = [e for e in new if e.emitted is not None]
    new_missing = [e for e in new if e.emitted is None]
    served_not_emitted = [e for e in new_missing if e.served is not None]
    never_served = [e for e in new_missing if e.served is None]
    owed_unserved = [e for e in never_served if e.appear <= cutoff]
    late_emitted = [e for e in entries if not e.initial and e.appear > end_of_polls and e.emitted is not None]
    dupes = [e for e in entries if e.emitted_count > 1]
    print("entries")
    print(
        f"  initial (in the feeds before watch started): {len(initial)}, emitted "
        f"{sum(e.emitted is not None for e in initial)}"
    )
    print(
        f"  new (appeared before the poll deadline): {len(new)} appeared, {len(new_emitted)} emitted, "
        f"{len(new_missing)} missing"
    )
    print(
        f"    missing: {len(served_not_emitted)} served by a feed but never in items.jsonl; {len(never_served)} "
        f"never fetched after appearing ({len(owed_unserved)} of them appeared before the latency cutoff)"
    )
    if late_emitted:
        print(f"  appeared after the poll deadline but emitted anyway: {len(late_emitted)}")
    print(
        f"  items.jsonl lines {tail.lines if tail else 0}; urls emitted more than once: {len(dupes)}; "
        f"lines with unknown urls: {sum(tail.unknown.values()) if tail else 0}"
    )

    # --- latency
    window = [e for e in entries if not e.initial and warm_end <= e.appear <= cutoff]
    lat = sorted((e.emitted - e.appear) if e.emitted is not None else math.inf for e in window)
    missing_in_window = sum(math.isinf(v) for v in lat)
    p50, p95 = pct(lat, 50), pct(lat, 95)
    print(
        f"latency appearance -> emission ({len(window)} entries in the window, {missing_in_window} missing = "
        f"counted as infinite)"
    )
    print(f"  {triple(lat)}")
    done = [e for e in window if e.emitted is not None and e.served is not None]
    if done:
        print(f"  poll wait (appearance -> first served)   {triple([e.served - e.appear for e in done])}")
        print(f"  pipeline (served -> line in items.jsonl)  {triple([e.emitted - e.served for e in done])}")
        over = sum(e.emitted - e.appear > target for e in done)
        print(
            f"  entries over target ({target:g} s): {over} of {len(window)} ({100 * over / len(window):.1f} %)"
            if window
            else ""
        )

    # --- memory
    print("memory (watch process tree RSS)")
    s_warm = sample_at(samples, warm_end)
    s_end = sample_at(samples, end_of_polls, after=False)
    growth = None
    if s_warm and s_end and s_warm.rss_kib:
        growth = 100.0 * (s_end.rss_kib - s_warm.rss_kib) / s_warm.rss_kib
        peak = max(s.rss_kib for s in samples)
        print(
            f"  end of warm-up ({rel(s_warm.t)}) {s_warm.rss_kib / 1024:.1f} MiB, end ({rel(s_end.t)}) "
            f"{s_end.rss_kib / 1024:.1f} MiB, growth {growth:+.1f} %, peak {peak / 1024:.1f} MiB"
        )
        print(f"  threads {s_warm.threads} -> {s_end.threads}; processes in tree {s_end.procs}")
        mid = sample_at(samples, (s_warm.t + s_end.t) / 2)
        steady = [s for s in samples if s_warm.t <= s.t <= s_end.t]
        if mid and mid.rss_kib and len(steady) >= 3:
            # Startup settling vs a steady leak: the second half of the post-warm-up run, and a fitted slope.
            n = len(steady)
            mt, mr = sum(s.t for s in steady) / n, sum(s.rss_kib for s in steady) / n
            var = sum((s.t - mt) ** 2 for s in steady)
            slope = sum((s.t - mt) * (s.rss_kib - mr) for s in steady) / var * 60 / 1024 if var else 0.0
            half = 100.0 * (s_end.rss_kib - mid.rss_kib) / mid.rss_kib
            print(
                f"  second half only ({rel(mid.t)} {mid.rss_kib / 1024:.1f} MiB -> end): {half:+.1f} %; "
                f"least-squares slope after warm-up {slope:+.2f} MiB/min"
            )
    else:
        print("  no samples")

    # --- cpu
    print("cpu (% of one core)")
    if len(samples) >= 2:
        running = [s for s in samples if s.t <= end_of_polls] or samples
        first, last = running[0], running[-1]
        steady = [s for s in running if s.t >= warm_end]
        per_sec = [cpu_pct(a, b) for a, b in itertools.pairwise(running)]
        print(
            f"  watch tree: avg {cpu_pct(first, last):.0f} % over the run"
            + (f", {cpu_pct(steady[0], steady[-1]):.0f} % after warm-up" if len(steady) >= 2 else "")
            + f"; peak 1-s {max(per_sec):.0f} %; seconds >= 90 %: {sum(v >= 90 for v in per_sec)} of {len(per_sec)}"
        )
        print(f"  this process (feed servers, tail, sampler): avg {cpu_pct(first, last, 'self_ticks'):.0f} %")
        busy = (last.sys_busy - first.sys_busy) / max(1, last.sys_total - first.sys_total) * 100
        print(
            f"  whole machine: {busy:.0f} % busy of {os.cpu_count()} cores (= {busy * (os.cpu_count() or 1):.0f} % "
            f"of one core; includes other processes)"
        )

    # --- requests
    flat = [r for rs in records for r in rs]
    statuses = Counter(r.status for r in flat)
    print("requests")
    other = {k: v for k, v in statuses.items() if k not in (200, 304)}
    print(
        f"  served {len(flat)}: 200 -> {statuses.get(200, 0)}, 304 -> {statuses.get(304, 0)}"
        + (f", other {dict(other)}" if other else "")
    )
    per_host_peak = max((_peak([(r.started, r.ended) for r in rs]) for rs in records), default=0)
    print(
        f"  peak concurrent requests: per host:port {per_host_peak} (newsmon's per-host limit: 2), all hosts "
        f"{_peak([(r.started, r.ended) for r in flat])} (newsmon's fetch workers per shard: 16)"
    )
    print("    (server-side view: a request counts until its handler has finished, so it can read 1 above the limit)")

    # --- poll periods from feeds.jsonl
    health = _read_jsonl(out_dir / "feeds.jsonl")
    by_feed: dict[str, list[float]] = defaultdict(list)
    for h in health:
        by_feed[h["url"]].append(datetime.fromisoformat(h["checked_at"]).timestamp())
    gaps: list[float] = []
    late_gaps: list[float] = []
    for times in by_feed.values():
        times.sort()
        for a, b in itertools.pairwise(times):
            gaps.append(b - a)
            if a >= warm_end:
                late_gaps.append(b - a)
    polls = sorted(len(v) for v in by_feed.values())
    print("polls (DIR/feeds.jsonl checked_at)")
    print(
        f"  health records {len(health)}, outcomes {dict(Counter(h['outcome'] for h in health))}; feeds polled "
        f"{len(by_feed)}; polls per feed min {polls[0] if polls else 0}, median "
        f"{polls[len(polls) // 2] if polls else 0}, max {polls[-1] if polls else 0}"
    )
    if gaps:
        print(f"  gap between polls of a feed (interval {args.interval:g} s): {triple(gaps)}")
        if late_gaps:
            print(f"    after warm-up: {triple(late_gaps)}")

    # --- timeline
    print("timeline (buckets from the watch's start; latency of entries appearing in the bucket, up to the cutoff)")
    width = max(args.interval, round(max(10.0, (end_of_polls - t_spawn) / 10)))
    print(
        f"  {'from':>7} {'req':>6} {'200':>5} {'304':>5} {'appeared':>8} {'emitted':>8} {'p95 lat':>9} "
        f"{'max lat':>9} {'cpu %':>6} {'rss MiB':>8} {'polls/s':>8}"
    )
    ends = sorted((r.ended + mono_to_wall, r.status) for r in flat)
    checks = sorted(t for v in by_feed.values() for t in v)
    t = t_spawn
    while t < t_exit:
        u = t + width
        reqs = [s for (w, s) in ends if t <= w < u]
        appeared = [e for e in entries if not e.initial and t <= e.appear < u and e.appear <= end_of_polls]
        emitted = sum(1 for e in entries if e.emitted is not None and t <= e.emitted < u)
        bl = sorted(
            (e.emitted - e.appear) if e.emitted is not None else math.inf for e in appeared if e.appear <= cutoff
        )
        a, b = sample_at(samples, t), sample_at(samples, u, after=False)
        cpu = cpu_pct(a, b) if a and b and b.t > a.t else float("nan")
        n_checks = bisect.bisect_left(checks, u) - bisect.bisect_left(checks, t)
        print(
            f"  {t - t_spawn:6.0f}s {len(reqs):6d} {reqs.count(200):5d} {reqs.count(304):5d} {len(appeared):8d} "
            f"{emitted:8d} {fmt_s(pct(bl, 95)):>9} {fmt_s(bl[-1] if bl else None):>9} {cpu:6.0f} "
            f"{(b.rss_kib / 1024 if b else 0):8.1f} {n_checks / width:8.1f}"
        )
        t = u

    last_status = [line for _, line in (reader.lines if reader else []) if line.startswith(("[", "newsmon"))]
    if last_status:
        print("watch output (last lines)")
        for line in last_status[-3:]:
            print(f"  {line}")
    if proc.returncode not in (0, None):
        err = (workdir / "watch.stderr").read_text(encoding="utf-8", errors="replace")
        print(f"watch stderr (tail):\n{err[-2000:]}")

    # --- verdicts
    print("verdicts")
    if p95 is None:
        print("  latency: FAIL (no entries in the latency window)")
    else:
        ok = p95 <= target
        print(
            f"  latency p95 {fmt_s(p95)} <= interval + {slack:g} s = {target:g} s ({slack_note}): "
            f"{'PASS' if ok else 'FAIL'}   [p50 {fmt_s(p50)}]"
        )
    if growth is None:
        print("  RSS growth after warm-up < 10 %: FAIL (not measured)")
    else:
        print(f"  RSS growth after warm-up {growth:+.1f} % < 10 %: {'PASS' if growth < 10 else 'FAIL'}")
    print(
        f"  (info) every entry owed by the end was emitted: {'yes' if missing_in_window == 0 else 'no'}; "
        f"duplicates: {len(dupes)}"
    )
    print(f"raw data: {workdir} (entries.csv, samples.csv, out/, watch.stdout, watch.stderr)")
    print("=" * 100, flush=True)

    with open(workdir / "entries.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["feed", "seq", "initial", "url", "appear", "served", "emitted", "emitted_count"])
        for e in entries:
            if e.initial or e.appear <= t_exit:
                w.writerow(
                    [
                        e.feed,
                        e.seq,
                        int(e.initial),
                        e.url,
                        f"{e.appear:.3f}",
                        "" if e.served is None else f"{e.served:.3f}",
                        "" if e.emitted is None else f"{e.emitted:.3f}",
                        e.emitted_count,
                    ]
                )
    with open(workdir / "samples.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["t", "rss_kib", "ticks", "threads", "procs", "self_ticks", "sys_busy", "sys_total"])
        for s in samples:
            w.writerow([f"{s.t:.3f}", s.rss_kib, s.ticks, s.threads, s.procs, s.self_ticks, s.sys_busy, s.sys_total])
    with open(workdir / "meta.json", "w", encoding="utf-8") as fh:
        json.dump(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "t_spawn": t_spawn,
                "announced": announced,
                "deadline": deadline,
                "t_exit": t_exit,
                "warm_end": warm_end,
                "cutoff": cutoff,
                "mono_to_wall": mono_to_wall,
            },
            fh,
            indent=1,
        )


def _peak(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


if __name__ == "__main__":
    sys.exit(main())
