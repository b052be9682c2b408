"""A real Prometheus scrapes a live newsmon watch; rules and the dashboard are checked against it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ROOT
from tests.feed_server import FeedServer, Route, rss_feed
from tests.webhook_servers import SECRET, ScriptedReceiver, serving

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
DEPLOY = ROOT / "deploy"
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package)")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        return json.load(resp)


def value(base: str, expr: str) -> float | None:
    result = query(base, expr)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "newsmon.json").read_text())
    exprs = []
    for panel in dash["panels"]:
        exprs.extend(t["expr"] for t in panel.get("targets", []))
    return exprs


@needs_promtool
def test_alerting_rules_check_and_pass_their_unit_tests():
    rules = DEPLOY / "prometheus"
    for cmd in (
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
        ["check", "config", "prometheus.yml"],
    ):
        done = subprocess.run([PROMTOOL, *cmd], cwd=rules, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_has_units_and_a_datasource_variable():
    dash = json.loads((DEPLOY / "grafana" / "newsmon.json").read_text())
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == ["Ingest", "Topics", "Alerts", "Delivery", "Feed health"]
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


@needs_prometheus
def test_prometheus_scrapes_watch_and_every_dashboard_query_runs(tmp_path):
    metrics_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    shutil.copy(DEPLOY / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        f"scrape_configs:\n  - job_name: newsmon\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    entries = [
        {"guid": f"g{i}", "title": f"Chinese embassy row: UK summons ambassador over spying claims {i}",
         "link": f"https://news.example/{i}", "description": "The Foreign Office summoned the ambassador.",
         "published": datetime(2025, 2, 1, tzinfo=UTC) + timedelta(minutes=i)}
        for i in range(4)
    ]  # fmt: skip
    try:
        with FeedServer() as feeds, serving(ScriptedReceiver()) as receiver:
            feeds.route("/a.xml", Route(body=rss_feed(entries), etag="auto"))
            feeds.route("/down.xml", Route(status=500, body=b"oops"))
            subs = tmp_path / "subs.toml"
            subs.write_text(
                f'[[subscriptions]]\nid = "desk"\nurl = "http://127.0.0.1:{receiver.server_address[1]}/h"\n'
                f'secret = "{SECRET}"\nallow_private_targets = true\n'
            )
            watch = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "watch", "--feed", feeds.url("/a.xml"),
                 "--feed", feeds.url("/down.xml"), "--interval", "1", "--duration", "14",
                 "--metrics-port", str(metrics_port), "--subscriptions", str(subs), "--out", str(tmp_path / "out")],
                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            seen, last_error = None, None
            while time.monotonic() < deadline:
                try:
                    seen = value(base, 'newsmon_items_ingested_total{source_kind="rss"}')
                    delivered = value(base, 'newsmon_webhook_deliveries_total{outcome="delivered"}')
                    if seen and seen >= 4 and delivered:
                        break
                except OSError as exc:
                    last_error = exc  # Prometheus still starting
                time.sleep(0.5)
            if seen != 4:
                watch.kill()
                prometheus.terminate()
                pytest.fail(
                    f"items seen by Prometheus: {seen} ({last_error!r}); watch said: {watch.communicate()}; "
                    f"prometheus said: {(tmp_path / 'prometheus.log').read_text()[-3000:]}"
                )
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                exposition = resp.read()
            # the expected series, scraped for real
            assert value(base, 'up{job="newsmon"}') == 1
            assert value(base, "sum(newsmon_feed_polls_total)") >= 2
            assert value(base, 'sum(newsmon_feed_polls_total{outcome="http_error"})') >= 1
            assert value(base, "max(newsmon_feed_consecutive_failures)") >= 1
            assert value(base, "max(newsmon_feed_last_success_timestamp_seconds)") > time.time() - 60
            assert value(base, 'sum(newsmon_alerts_total{kind="alert.item"})') >= 1
            assert value(base, 'newsmon_webhook_deliveries_total{outcome="delivered"}') >= 1
            assert value(base, "sum(newsmon_webhook_attempts_total)") >= 1
            assert value(base, "sum(newsmon_classify_seconds_count)") == 4
            assert value(base, "sum(newsmon_feed_entries_total)") >= 4
            assert query(base, "newsmon_build_info")["data"]["result"][0]["metric"]["version"]
            for expr in dashboard_exprs():
                result = query(base, expr.replace("$__rate_interval", "1m"))
                assert result["status"] == "success", (expr, result)
            _, err = watch.communicate(timeout=60)
            assert watch.returncode == 0, err
    finally:
        prometheus.terminate()
        prometheus.wait(10)
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
