"""Metrics a local run exports: replay's metrics.prom, valid for promtool, figures matching outputs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.e2e.test_cli import newsmon, read_jsonl


def sample(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert m, f"{series} not in exposition"
    return float(m.group(1))


@pytest.mark.parametrize("extra", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]])
def test_replay_writes_metrics_that_match_its_outputs(tmp_path, extra):
    result = newsmon("replay", "--out", "out", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "metrics.prom").read_text()
    items = read_jsonl(tmp_path / "out" / "items.jsonl")
    alerts = read_jsonl(tmp_path / "out" / "alerts.jsonl")
    assert sample(text, 'newsmon_items_ingested_total{source_kind="replay"}') == len(items)
    assert sample(text, "newsmon_items_classified_total") == len(items)
    spying = sum(1 for r in items if any(t["topic"] == "spying" for t in r["topics"]))
    assert sample(text, 'newsmon_items_by_topic_total{topic="spying"}') == spying
    alerted = sum(1 for a in alerts if "spying" in a["topics"])
    assert sample(text, 'newsmon_alerts_total{kind="alert.item",topic="spying"}') == alerted
    assert sample(text, "newsmon_classify_seconds_count") == len(items)
    assert 'newsmon_build_info{version="' in text
    assert not (tmp_path / "out" / ".metrics").exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_exposition_passes_promtool(tmp_path):
    assert newsmon("replay", "--out", "out", cwd=tmp_path).returncode == 0
    exposition = (tmp_path / "out" / "metrics.prom").read_bytes()
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_port_busy_is_a_user_error(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = newsmon("replay", "--out", "out", "--metrics-port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert f"--metrics-port {port}: cannot listen" in result.stderr and "Traceback" not in result.stderr
