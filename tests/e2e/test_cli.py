"""The newsmon command as a user runs it: a real process, real files, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipelines.classify.engine import speedups_available
from tests.conftest import ROOT


def newsmon(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("replay")
    result = newsmon("replay", "--out", "out", cwd=work)
    return work / "out", result


def topics_by_seed(items: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rec in items:
        seed = Path(rec["source"]).name[:3]
        found.setdefault(seed, set()).update(t["topic"] for t in rec["topics"])
    return found


def test_replay_seeds_prints_summary_and_writes_outputs(seed_run):
    out, result = seed_run
    assert result.returncode == 0, result.stderr
    assert "newsmon replay:" in result.stdout and "items per topic:" in result.stdout
    items = read_jsonl(out / "items.jsonl")
    assert len(items) >= 14
    per_seed = Counter(Path(r["source"]).name[:3] for r in items)
    assert per_seed["004"] >= 9
    assert all(per_seed[s] == 1 for s in ("000", "001", "002", "003"))
    assert {"id", "source", "title", "url", "published", "topics"} <= set(items[0])
    assert all(r["source"].startswith("seeds/") for r in items)


def test_replay_seeds_tags_known_topics_with_evidence(seed_run):
    out, _ = seed_run
    items = read_jsonl(out / "items.jsonl")
    found = topics_by_seed(items)
    assert "spying" in found["000"]
    assert {"embassy", "tariffs", "trade-investment"} <= found["002"]
    assert {"human-rights", "hong-kong"} <= found["003"]
    grok = next(r for r in items if "Grok" in r["title"] or "data protection watchdog" in r["title"])
    assert "tech-regulation" in {t["topic"] for t in grok["topics"]}
    for rec in items:
        for match in rec["topics"]:
            assert match["evidence"], match
            assert 0 < match["score"] <= 1


def test_replay_alerts_cover_spying_embassy_tariffs(seed_run):
    out, _ = seed_run
    alerts = read_jsonl(out / "alerts.jsonl")
    alerted = {t for a in alerts for t in a["topics"]}
    assert {"spying", "embassy", "tariffs"} <= alerted
    assert len({a["id"] for a in alerts}) == len(alerts)


def test_rerun_is_byte_identical(seed_run, tmp_path):
    out, _ = seed_run
    again = newsmon("replay", "--out", "out", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for name in ("items.jsonl", "alerts.jsonl", "dead_letters.jsonl"):
        assert (tmp_path / "out" / name).read_bytes() == (out / name).read_bytes(), name


def test_missing_path_is_one_line_error_exit_2(tmp_path):
    result = newsmon("replay", "no/such/dir", "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "newsmon: error: no/such/dir: no such file or directory (or nothing matches)"
    ]
    assert not (tmp_path / "o").exists()


def test_bad_topics_file_stops_before_the_pipeline(tmp_path):
    bad = tmp_path / "topics.toml"
    bad.write_text('[[topics]]\nid = "spying"\nlabel = "S"\ndefinition = "d"\nthreshold = "high"\nterms = {spy = 1}\n')
    result = newsmon("replay", "--topics", str(bad), "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "topic 'spying', field threshold" in result.stderr


def test_bad_subscriptions_file_is_one_line_error(tmp_path):
    subs = tmp_path / "subs.toml"
    subs.write_text('[[subscriptions]]\nid = "desk"\ntopics = ["spyin"]\n')
    result = newsmon("replay", "--subscriptions", str(subs), "--out", "o", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "subscription 'desk', field topics: unknown topic(s) spyin" in result.stderr


def test_replay_with_subscriptions_filters_alerts(tmp_path):
    subs = tmp_path / "subs.toml"
    subs.write_text('[[subscriptions]]\nid = "tech"\ntopics = ["tech-regulation"]\nmin_score = 0.6\n')
    result = newsmon(
        "replay",
        str(ROOT / "seeds" / "004_d9bdcb0313118baf.txt"),
        "--subscriptions",
        str(subs),
        "--out",
        "o",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    alerts = read_jsonl(tmp_path / "o" / "alerts.jsonl")
    assert alerts and all(a["subscription"] == "tech" and a["topics"] == ["tech-regulation"] for a in alerts)
    assert all(s >= 0.6 for a in alerts for s in a["scores"].values())


def test_classify_keeps_order_reports_bad_lines_and_exits_1(tmp_path):
    lines = (
        "\n".join(
            [
                json.dumps(
                    {"id": "a", "title": "UK expels Russian diplomats", "summary": "The ambassador was summoned."}
                ),
                "{not json",
                json.dumps({"id": "b", "title": "Recipe: lemon cake", "body": "Mix and bake."}),
            ]
        )
        + "\n"
    )
    result = newsmon("classify", "-", cwd=tmp_path, stdin=lines)
    assert result.returncode == 1
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert out[0]["id"] == "a" and [t["topic"] for t in out[0]["topics"]] == ["embassy"]
    assert out[0]["topics"][0]["evidence"]
    assert out[1]["line"] == 2 and "not JSON" in out[1]["error"]
    assert out[2] == {"id": "b", "topics": []}


def test_topics_lists_the_taxonomy(tmp_path):
    result = newsmon("topics", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.count("threshold") == 11 and "tech-regulation" in result.stdout
    # Which engine runs is visible, so a user can tell whether the C extension was built.
    expected = "engine: compiled" if speedups_available() else "engine: pure Python"
    assert expected in result.stdout


def test_help_on_every_command(tmp_path):
    for cmd in ([], ["replay"], ["classify"], ["eval"], ["topics"], ["subscribe"], ["subscriptions"]):
        result = newsmon(*cmd, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "usage: newsmon" in result.stdout


def test_eval_prints_table_and_errors_with_evidence(tmp_path):
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"title": "Two men charged with spying for China", "summary": "Espionage case.", "topics": ["spying"]},
                {"title": "Spy ring: MI5 hunts agents", "summary": "Counter-intelligence officers.", "topics": []},
                {"title": "Lemon cake recipe", "summary": "Bake it.", "topics": ["tariffs"]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = newsmon("eval", str(labeled), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "macro-F1" in result.stdout
    assert "FP spying" in result.stdout and "evidence:" in result.stdout
    assert "FN tariffs" in result.stdout
    report = json.loads(newsmon("eval", str(labeled), "--json", cwd=tmp_path).stdout)
    assert report["topics"]["spying"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": 0.6667,
        "support": 1,
        "tp": 1,
        "fp": 1,
        "fn": 0,
    }
    assert report["topics"]["tariffs"]["fn"] == 1
    fp = next(e for e in report["errors"] if e["kind"] == "false_positive")
    assert fp["line"] == 2 and fp["evidence"]


def test_eval_rejects_unknown_topic_labels_with_line_number(tmp_path):
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text(json.dumps({"title": "x", "topics": ["spies"]}) + "\n", encoding="utf-8")
    result = newsmon("eval", str(labeled), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"newsmon: error: {labeled}: line 1: unknown topic(s) spies"


def test_subscribe_prints_the_secret_once_and_subscriptions_masks_it(tmp_path):
    result = newsmon(
        "subscribe",
        "--url",
        "https://hooks.example.com/in",
        "--topics",
        "spying,embassy",
        "--min-score",
        "0.6",
        "--query",
        "China OR Beijing",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.split("secret (shown once; configure your receiver with it): ")[1].strip()
    assert secret.startswith("whsec_")
    listed = newsmon("subscriptions", cwd=tmp_path)
    assert listed.returncode == 0
    assert "spying-embassy" in listed.stdout and "https://hooks.example.com/in" in listed.stdout
    assert secret not in listed.stdout and "whsec_****" in listed.stdout
    again = newsmon("subscribe", "--url", "https://hooks.example.com/2", "--topics", "spying,embassy", cwd=tmp_path)
    assert "'spying-embassy-2'" in again.stdout
    bad = newsmon("subscribe", "--url", "ftp://x", cwd=tmp_path)
    assert bad.returncode == 2 and "field url" in bad.stderr and "Traceback" not in bad.stderr


def test_stdout_sink_pipes_alerts_as_json_lines(tmp_path):
    subs = tmp_path / "subs.toml"
    subs.write_text('[[subscriptions]]\nid = "pipe"\nsink = "stdout"\ntopics = ["tariffs"]\n')
    result = newsmon("replay", "--subscriptions", str(subs), "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    piped = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert piped and all(a["subscription"] == "pipe" and "tariffs" in a["topics"] for a in piped)
    assert sorted(a["id"] for a in piped) == sorted(a["id"] for a in read_jsonl(tmp_path / "o" / "alerts.jsonl"))
