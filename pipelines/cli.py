"""The ``newsmon`` command: parse arguments and settings, build, run, report. Nothing else.

User errors (bad paths, bad topics or subscriptions files) print one line and exit 2 before any
pipeline is built; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TextIO

from alerts.subscriptions import SubscriptionError, load_subscriptions
from pipelines import __version__
from pipelines.classify.rules import RuleError, load_topics
from pipelines.settings import ReplaySettings

__all__ = ["default_seeds", "main"]

EXIT_USAGE = 2


class UserError(Exception):
    """Anything the user can fix; printed as one line."""


def default_seeds() -> str:
    """The checked-out ``seeds/`` next to the package, else the copy packaged inside the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "seeds"
    if checkout.is_dir() and any(checkout.iterdir()):
        return str(checkout)
    return str(resources.files("pipelines").joinpath("seeds"))


# --- replay ---------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace, beam_args: list[str], out: TextIO) -> int:
    from pipelines.outputs import finalize_outputs
    from pipelines.pipeline import build_pipeline
    from pipelines.runner import describe_result, is_local, make_pipeline
    from pipelines.sources.replay import InputError, ReplayArticles, expand_inputs

    listed = [p.strip() for p in (args.inputs or "").split(",") if p.strip()]
    settings = ReplaySettings(
        inputs=[*args.paths, *listed] or [default_seeds()],
        out_dir=args.out,
        speed=args.speed,
        topics_file=args.topics,
        subscriptions_file=args.subscriptions,
    )
    topics = _load_topics(settings.topics_file)
    subscriptions = _load_subscriptions(settings.subscriptions_file, [t.id for t in topics.topics])
    try:
        specs = expand_inputs(settings.inputs)
    except InputError as exc:
        raise UserError(str(exc)) from None
    local = is_local(beam_args) and "://" not in settings.out_dir
    if local:
        _prepare_out_dir(settings.out_dir)
        _start_metrics(settings.out_dir, beam_args, args.metrics_port)

    started = time.monotonic()
    pipeline = make_pipeline(beam_args)
    build_pipeline(
        pipeline,
        ReplayArticles(specs, max_file_bytes=settings.max_file_bytes, speed=settings.speed),
        topics,
        subscriptions,
        out_dir=settings.out_dir,
    )
    result = pipeline.run()
    if not local:
        # A remote runner (Dataflow) owns the job from here; shards stay under OUT/.parts.
        out.write(f"newsmon replay: submitted ({describe_result(result)}); outputs under {settings.out_dir}/\n")
        return 0
    result.wait_until_finish()
    finalize_outputs(settings.out_dir)
    _write_metrics(settings.out_dir)
    _print_summary(settings.out_dir, time.monotonic() - started, out)
    return 0


def _start_metrics(out_dir: str, beam_args: list[str], port: int | None) -> None:
    """Prometheus export for this run: multiprocess files when workers are separate processes."""
    import shutil

    from pipelines import metrics

    multi = any("multi_processing" in arg for arg in beam_args)
    mp_dir = Path(out_dir) / ".metrics"
    shutil.rmtree(mp_dir, ignore_errors=True)
    metrics.enable_prometheus(str(mp_dir) if multi else None)
    if port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr="127.0.0.1", registry=metrics.registry())
        except OSError as exc:
            raise UserError(f"--metrics-port {port}: cannot listen: {exc.strerror or exc}") from None


def _write_metrics(out_dir: str) -> None:
    import shutil

    from pipelines import metrics

    (Path(out_dir) / "metrics.prom").write_bytes(metrics.render())
    shutil.rmtree(Path(out_dir) / ".metrics", ignore_errors=True)


def _prepare_out_dir(out_dir: str) -> None:
    from pipelines.outputs import parts_dir

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot create: {exc.strerror or exc}") from None
    stale = Path(parts_dir(out_dir))
    if stale.is_dir():
        for leftover in stale.iterdir():  # shards of an interrupted run must not leak into this one
            leftover.unlink()


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _print_summary(out_dir: str, seconds: float, out: TextIO) -> None:
    base = Path(out_dir)
    items = _read_jsonl(base / "items.jsonl")
    alerts = _read_jsonl(base / "alerts.jsonl")
    dead = _read_jsonl(base / "dead_letters.jsonl")
    per_source = Counter(r["source"] for r in items)
    per_topic = Counter(t["topic"] for r in items for t in r["topics"])
    out.write(
        f"newsmon replay: {len(items)} items, {len(alerts)} alerts, {len(dead)} dead letters "
        f"in {seconds:.1f} s -> {out_dir}/\n"
    )
    out.write("items per source:\n")
    for source, n in sorted(per_source.items()):
        out.write(f"  {n:5d}  {source}\n")
    out.write("items per topic:\n")
    for topic, n in sorted(per_topic.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"  {n:5d}  {topic}\n")
    out.write("alerts per subscription and topic:\n")
    pairs = Counter((a["subscription"], t) for a in alerts for t in a["topics"])
    for (sub, topic), n in sorted(pairs.items()):
        out.write(f"  {n:5d}  {sub}: {topic}\n")
    if dead:
        out.write("dead letters:\n")
        for (stage, reason), n in sorted(Counter((d["stage"], d["reason"]) for d in dead).items()):
            out.write(f"  {n:5d}  {stage}: {reason}\n")
    else:
        out.write("dead letters: none\n")


# --- watch / receive / redeliver ------------------------------------------------------------------


def _watch(args: argparse.Namespace, beam_args: list[str], out: TextIO) -> int:
    from pydantic import ValidationError

    from pipelines.settings import WatchSettings
    from pipelines.sources.feeds import FeedConfig, FeedError, check_feed_url, parse_feed_list
    from pipelines.watch import check_local_options, run_watch

    problem = check_local_options(beam_args)
    if problem:
        raise UserError(problem)
    try:
        settings = WatchSettings(
            feeds=args.feed or [], feeds_file=args.feeds, interval=args.interval, duration=args.duration,
            out_dir=args.out, topics_file=args.topics, subscriptions_file=args.subscriptions,
            shards=args.shards, metrics_port=args.metrics_port,
        )  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    if not settings.feeds and not settings.feeds_file:
        raise UserError("give feeds with --feed URL (repeatable) or --feeds FILE")
    try:
        feeds = [FeedConfig(url=check_feed_url(u)) for u in settings.feeds]
        if settings.feeds_file:
            feeds += parse_feed_list(_read_config(settings.feeds_file, "feed list"), settings.feeds_file)
    except (FeedError, ValueError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    unique = list({f.url: f for f in feeds}.values())
    topics = _load_topics(settings.topics_file)
    subscriptions = _load_subscriptions(settings.subscriptions_file, [t.id for t in topics.topics])
    if "://" not in settings.out_dir:
        _prepare_out_dir(settings.out_dir)

    until = f", for {settings.duration:g} s" if settings.duration else " (Ctrl-C to stop)"
    out.write(f"newsmon watch: {len(unique)} feeds, every {settings.interval:g} s{until} -> {settings.out_dir}/\n")
    out.flush()
    run_watch(settings, unique, topics, subscriptions, beam_args, out, serve_metrics=_metrics_server(out),
              alerts_topic=args.alerts_topic)  # fmt: skip
    return 0


def _metrics_server(out: TextIO):
    def serve(port: int) -> None:
        from prometheus_client import start_http_server

        from pipelines import metrics

        try:
            start_http_server(port, addr="127.0.0.1", registry=metrics.registry())
        except OSError as exc:
            raise UserError(f"--metrics-port {port}: cannot listen: {exc.strerror or exc}") from None
        out.write(f"metrics: http://127.0.0.1:{port}/metrics\n")

    return serve


def _stream(args: argparse.Namespace, beam_args: list[str], out: TextIO) -> int:
    from pipelines.runner import is_local
    from pipelines.sources.pubsub import ReadItems
    from pipelines.watch import run_live

    if bool(args.input_subscription) == bool(args.input_topic):
        raise UserError("give exactly one of --input_subscription or --input_topic")
    local = is_local(beam_args)
    if args.id_label and local:
        raise UserError("--id_label is supported on Dataflow only (the direct runner rejects it)")
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration: must be > 0")
    topics = _load_topics(args.topics)
    subscriptions = _load_subscriptions(args.subscriptions, [t.id for t in topics.topics])
    if local and "://" not in args.out:
        _prepare_out_dir(args.out)
    source = ReadItems(
        subscription=args.input_subscription, topic=args.input_topic, id_label=args.id_label,
        timestamp_attribute=args.timestamp_attribute,
    )  # fmt: skip
    out.write(f"newsmon stream: items from {args.input_subscription or args.input_topic} -> {args.out}/"
              f"{f' and {args.alerts_topic}' if args.alerts_topic else ''}\n")  # fmt: skip
    out.flush()
    run_live(
        source, topics, subscriptions, beam_args, out, out_dir=args.out, metrics_port=args.metrics_port,
        serve_metrics=_metrics_server(out), alerts_topic=args.alerts_topic, pubsub=True, duration=args.duration,
    )  # fmt: skip
    return 0


def _receive(args: argparse.Namespace, out: TextIO) -> int:
    import signal

    from alerts.receiver import run_receiver

    secret = args.secret or os.environ.get("NEWSMON_RECEIVER_SECRET", "")
    if not secret.startswith("whsec_"):
        raise UserError("--secret must be a whsec_… secret (or set NEWSMON_RECEIVER_SECRET)")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        run_receiver(args.host, args.port, secret, Path(args.out) if args.out else None, out)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"--secret: {exc}") from None
    return 0


def _redeliver(args: argparse.Namespace, out: TextIO) -> int:
    from alerts.delivery import webhook_targets
    from alerts.webhooks import WebhookDeliverer, redeliver, to_dead_letter
    from pipelines.model import DeadLetter

    path = Path(args.file)
    try:
        records = [DeadLetter.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()
                   if line.strip()]  # fmt: skip
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"{path}: not a dead-letter file: {str(exc).splitlines()[0]}") from None
    subs = _load_subscriptions(args.subscriptions, [t.id for t in _load_topics(None).topics])
    wanted = [r for r in records if r.stage == "delivery"]
    known = {s.id for s in subs.subscriptions}
    unknown = sorted({r.source for r in wanted} - known)
    if unknown:
        raise UserError(f"dead letters name subscriptions not in {args.subscriptions}: {', '.join(unknown)}")
    with WebhookDeliverer(webhook_targets(subs.subscriptions)) as deliverer:
        results = redeliver(wanted, deliverer)
    failed = [to_dead_letter(r) for r in results if r.outcome != "delivered"]
    keep = [r for r in records if r.stage != "delivery"] + failed
    path.write_text("".join(r.model_dump_json() + "\n" for r in keep), encoding="utf-8")
    out.write(
        f"redelivered {len(results) - len(failed)} of {len(results)}; {len(failed)} still dead-lettered "
        f"(kept in {path})\n"
    )
    return 0 if not failed else 1


# --- classify / topics ----------------------------------------------------------------------------


def _read_config(path: str, what: str) -> str:
    from pipelines.files import read_bytes

    try:
        return read_bytes(path).decode("utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: {what} is not UTF-8") from None


def _load_topics(path: str | None):
    from pipelines.classify.rules import parse_topics

    try:
        return load_topics(None) if path is None else parse_topics(_read_config(path, "topics file"), path)
    except RuleError as exc:
        raise UserError(str(exc)) from None


def _load_subscriptions(path: str | None, known_topics: list[str]):
    from alerts.subscriptions import parse_subscriptions

    try:
        if path is None:
            subs = load_subscriptions(None)
        else:
            subs = parse_subscriptions(_read_config(path, "subscriptions file"), path)
        subs.check_topics(known_topics)
        subs.check_secrets()
    except SubscriptionError as exc:
        raise UserError(str(exc)) from None
    return subs


def _open_input(name: str) -> TextIO:
    if name == "-":
        return sys.stdin
    try:
        return open(name, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{name}: {exc.strerror or exc}") from None


def _classify(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.classify.engine import Engine

    engine = Engine(_load_topics(args.topics))
    failed = False
    stream = _open_input(args.file)
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            record, error = _classify_line(engine, line)
            if error is not None:
                failed = True
                record = {"line": number, "error": error}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if stream is not sys.stdin:
            stream.close()
    return 1 if failed else 0


def _classify_line(engine, line: str) -> tuple[dict, str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return {}, f"not JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return {}, "not a JSON object"
    title = obj.get("title", "")
    body = next((obj[k] for k in ("body", "summary", "text") if isinstance(obj.get(k), str)), "")
    if not isinstance(title, str) or not (title or body):
        return {}, "needs a string 'title' and/or one of 'summary', 'body', 'text'"
    matches = engine.classify(title, body)
    return {"id": obj.get("id"), "topics": [m.model_dump(mode="json") for m in matches]}, None


def _eval(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.classify.engine import Engine
    from pipelines.classify.evaluate import LabelError, evaluate, read_labeled

    topics = _load_topics(args.topics)
    engine = Engine(topics)
    stream = _open_input(args.file)
    try:
        examples = read_labeled(stream, set(engine.topic_ids))
    except LabelError as exc:
        raise UserError(f"{args.file}: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    report = evaluate(engine, examples)
    if args.json:
        out.write(json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n")
        return 0
    out.write(f"{len(examples)} examples\n{'topic':<17} {'prec':>6} {'recall':>6} {'F1':>6} {'support':>7}\n")
    for t, s in report.scores.items():
        out.write(f"{t:<17} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.support:7d}\n")
    out.write(f"{'macro-F1':<17} {'':>6} {'':>6} {report.macro_f1:6.3f}\n")
    if report.errors:
        out.write("\nerrors (FP = false positive with its evidence, FN = missed label):\n")
    for err in report.errors:
        tag = "FP" if err.kind == "false_positive" else "FN"
        out.write(f"  {tag} {err.topic:<16} line {err.example.line}: {err.example.title[:90]}\n")
        if err.match is not None:
            ev = ", ".join(f"{e.text!r}/{e.field}/{e.rule}" for e in err.match.evidence[:8])
            out.write(f"       score {err.match.score:.2f}; evidence: {ev}\n")
        else:
            out.write(f"       labels: {', '.join(sorted(err.example.topics))}\n")
    return 0


def _subscribe(args: argparse.Namespace, out: TextIO) -> int:
    from alerts.subscriptions import append_subscription, generate_secret

    topics = [t.strip() for t in (args.topics or "").split(",") if t.strip()]
    known = [t.id for t in _load_topics(None).topics]
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise UserError(f"--topics: unknown topic(s) {', '.join(unknown)} (known: {', '.join(known)})")
    path = Path(args.subscriptions)
    try:
        existing = load_subscriptions(path) if path.exists() else None
    except SubscriptionError as exc:
        raise UserError(str(exc)) from None
    taken = {s.id for s in existing.subscriptions} if existing else set()
    sub_id = args.id or _free_id(topics, taken)
    secret = generate_secret()
    fields = {
        "id": sub_id, "url": args.url, "secret": secret, "topics": topics, "min_score": args.min_score,
        "query": args.query, "allow_private_targets": True if args.allow_private_targets else None,
    }  # fmt: skip
    try:
        sub = append_subscription(path, fields)
    except SubscriptionError as exc:
        raise UserError(str(exc)) from None
    out.write(f"added subscription {sub.id!r} -> {sub.url} ({', '.join(sub.topics) or 'all topics'}) to {path}\n")
    out.write(f"secret (shown once; configure your receiver with it): {secret}\n")
    return 0


def _free_id(topics: list[str], taken: set[str]) -> str:
    base = "-".join(topics[:3]) or "all"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def _subscriptions(args: argparse.Namespace, out: TextIO) -> int:
    try:
        subs = load_subscriptions(args.subscriptions)
    except SubscriptionError as exc:
        raise UserError(str(exc)) from None
    for s in subs.subscriptions:
        secret = "-"
        if s.secret is not None:
            raw = s.secret.get_secret_value()
            secret = "whsec_****" + raw[-4:] if raw.startswith("whsec_") else f"${raw}"
        target = s.url or s.sink
        state = "" if s.enabled else "  (disabled)"
        out.write(
            f"{s.id:<20} {target}  topics={','.join(s.topics) or '*'}"
            f"{' all=' + ','.join(s.all_topics) if s.all_topics else ''} min_score={s.min_score:g}"
            f"{' query=' + repr(s.query) if s.query else ''} kinds={','.join(s.kinds)} secret={secret}{state}\n"
        )
    return 0


def _topics(args: argparse.Namespace, out: TextIO) -> int:
    topics = _load_topics(args.topics)
    for t in topics.topics:
        rules = len(t.terms) + len(t.near) + len(t.all_of) + len(t.none_of) + len(t.mask)
        out.write(
            f"{t.id:<17} {t.label}\n  {t.definition}\n  threshold {t.threshold:g}; {len(t.terms)} terms, "
            f"{len(t.near)} near, {len(t.all_of)} all_of, {len(t.none_of)} none_of, "
            f"{len(t.mask)} mask ({rules} rules)\n"
        )
    from pipelines.classify.engine import Engine, speedups_available

    compiled = speedups_available() and Engine(topics).compiled
    if compiled:
        out.write("engine: compiled (newsmon_speedups)\n")
    elif os.environ.get("NEWSMON_NO_SPEEDUPS"):
        out.write("engine: pure Python (NEWSMON_NO_SPEEDUPS is set)\n")
    else:
        out.write("engine: pure Python (newsmon_speedups was not built: no C compiler at install time)\n")
    return 0


# --- parser ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsmon", description="Stream-processing news monitor: replay articles, classify topics, alert."
    )
    parser.add_argument("--version", action="version", version=f"newsmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser(
        "replay",
        help="replay article files through the pipeline (default: the seeds)",
        description="Replay article files in event time through classify and alerts. Unknown options "
        "are passed to Beam (e.g. --runner, --direct_running_mode=multi_processing).",
    )
    replay.add_argument("paths", nargs="*", metavar="PATH", help="files, directories or globs (local or gs://)")
    replay.add_argument("--inputs", metavar="PATHS", help="comma-separated files/globs (the template parameter form)")
    replay.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    replay.add_argument(
        "--speed",
        type=_non_negative,
        default=0.0,
        metavar="N",
        help="event-time seconds per wall second; 0 = as fast as possible (default)",
    )
    replay.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")
    replay.add_argument("--subscriptions", metavar="FILE", help="subscriptions TOML (default: all topics)")
    replay.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics on 127.0.0.1:PORT while running (default: off); "
        "the final figures always go to DIR/metrics.prom",
    )

    classify = sub.add_parser(
        "classify",
        help="classify JSONL items (no Beam)",
        description="Read JSONL objects with title and summary/body/text; write topics.",
    )
    classify.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSONL input, - for stdin")
    classify.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")

    evaluate = sub.add_parser(
        "eval",
        help="precision/recall/F1 of the topic rules on labelled JSONL",
        description='Lines: {"title", "summary"|"body", "topics": [...]}. Prints per-topic precision, '
        "recall, F1, support, macro-F1 and the false positives/negatives with their evidence.",
    )
    evaluate.add_argument("file", metavar="LABELED.jsonl", help="labelled JSONL, - for stdin")
    evaluate.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")
    evaluate.add_argument("--json", action="store_true", help="machine-readable report")

    watch = sub.add_parser(
        "watch",
        help="poll RSS/Atom feeds live through the pipeline",
        description="Poll feeds politely (conditional GET, backoff, Retry-After) and classify, alert and deliver "
        "live. Unknown options are passed to Beam.",
    )
    watch.add_argument("--feed", action="append", metavar="URL", help="a feed URL (repeatable)")
    watch.add_argument("--feeds", metavar="FILE", help="one URL per line (# comments) or an OPML export")
    watch.add_argument("--interval", type=float, default=300.0, metavar="SECONDS", help="poll interval (default 300)")
    watch.add_argument("--duration", type=float, metavar="SECONDS", help="stop cleanly after this long")
    watch.add_argument("--out", default="out", metavar="DIR", help="output folder, appended to (default: out)")
    watch.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")
    watch.add_argument("--subscriptions", metavar="FILE", help="subscriptions TOML (default: all topics)")
    watch.add_argument(
        "--shards", type=int, default=1, help="polling shards; fetches within a shard are concurrent (default 1)"
    )
    watch.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        metavar="PORT",
        help="Prometheus /metrics on 127.0.0.1:PORT (default 9464; 0 = off)",
    )

    watch.add_argument("--alerts_topic", metavar="TOPIC", help="also publish alerts to this Pub/Sub topic")

    stream = sub.add_parser(
        "stream",
        help="classify and alert on items arriving on Pub/Sub",
        description="Read items as JSON messages from Pub/Sub (title, body|summary|text, url, source, published), "
        "classify, alert and deliver; optionally publish alerts to a topic. Unknown options go to Beam.",
    )
    stream.add_argument("--input_subscription", metavar="SUBSCRIPTION", help="projects/P/subscriptions/S")
    stream.add_argument("--input_topic", metavar="TOPIC", help="projects/P/topics/T (a temporary subscription)")
    stream.add_argument("--alerts_topic", metavar="TOPIC", help="publish alerts to projects/P/topics/T")
    stream.add_argument("--id_label", metavar="ATTRIBUTE", help="message attribute with a unique id (Dataflow)")
    stream.add_argument("--timestamp_attribute", metavar="ATTRIBUTE", help="message attribute with the event time")
    stream.add_argument("--out", default="out", metavar="DIR", help="output folder (local or gs://; default out)")
    stream.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")
    stream.add_argument("--subscriptions", metavar="FILE", help="subscriptions TOML (default: all topics)")
    stream.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (local runs)")
    stream.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        metavar="PORT",
        help="Prometheus /metrics on 127.0.0.1:PORT in local runs (default 9464; 0 = off)",
    )

    receive = sub.add_parser(
        "receive",
        help="reference webhook receiver: verify, dedupe, print and record alerts",
        description="A small HTTP server that verifies Standard Webhooks signatures (401 otherwise), dedupes by "
        "webhook-id, prints each alert and appends it to --out.",
    )
    receive.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    receive.add_argument("--secret", help="the subscription's whsec_… secret (or NEWSMON_RECEIVER_SECRET)")
    receive.add_argument("--out", metavar="FILE", help="append each received alert as a JSON line")

    redeliver = sub.add_parser(
        "redeliver",
        help="re-send webhook dead letters with their original webhook-id",
        description="Re-send the delivery dead letters of a dead_letters.jsonl; failures again stay in the file.",
    )
    redeliver.add_argument("file", metavar="DEADLETTERS", help="a dead_letters.jsonl written by replay or watch")
    redeliver.add_argument("--subscriptions", required=True, metavar="FILE", help="the subscriptions TOML")

    subscribe = sub.add_parser(
        "subscribe",
        help="add a webhook subscription and print its new secret once",
        description="Append a webhook subscription to the subscriptions file and print its freshly generated "
        "Standard Webhooks secret (whsec_…) once.",
    )
    subscribe.add_argument("--url", required=True, help="webhook URL (http or https)")
    subscribe.add_argument("--topics", default="", help="comma-separated topic ids (default: all topics)")
    subscribe.add_argument("--min-score", type=float, default=0.0, metavar="X", help="minimum topic score 0..1")
    subscribe.add_argument("--query", help='terms the item must also contain, e.g. "China OR Beijing"')
    subscribe.add_argument("--id", help="subscription id (default: from the topics)")
    subscribe.add_argument(
        "--allow-private-targets", action="store_true", help="allow loopback/private addresses (local receivers, tests)"
    )
    subscribe.add_argument(
        "--subscriptions",
        default="subscriptions.toml",
        metavar="FILE",
        help="subscriptions file to append to (default: subscriptions.toml)",
    )

    listing = sub.add_parser(
        "subscriptions",
        help="list subscriptions (secrets masked)",
        description="List the subscriptions of a file, secrets masked.",
    )
    listing.add_argument(
        "--subscriptions",
        default="subscriptions.toml",
        metavar="FILE",
        help="subscriptions file (default: subscriptions.toml)",
    )

    topics = sub.add_parser("topics", help="list the taxonomy", description="List topics with rule counts.")
    topics.add_argument("--topics", metavar="FILE", help="topics TOML (default: shipped taxonomy)")
    return parser


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


class _QuietBeamImports(logging.Filter):
    """Beam warns at import time about optional GCP clients that local runs never use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="newsmon: %(levelname)s: %(name)s: %(message)s")
    logging.getLogger().addFilter(_QuietBeamImports())


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    _configure_logging()
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("replay", "watch", "stream"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "replay":
            return _replay(args, extra, out)
        if args.command == "watch":
            return _watch(args, extra, out)
        if args.command == "stream":
            return _stream(args, extra, out)
        if args.command == "receive":
            return _receive(args, out)
        if args.command == "redeliver":
            return _redeliver(args, out)
        if args.command == "classify":
            return _classify(args, out)
        if args.command == "eval":
            return _eval(args, out)
        if args.command == "subscribe":
            return _subscribe(args, out)
        if args.command == "subscriptions":
            return _subscriptions(args, out)
        return _topics(args, out)
    except UserError as exc:
        print(f"newsmon: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("newsmon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and friends: stop quietly, like other command-line tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
