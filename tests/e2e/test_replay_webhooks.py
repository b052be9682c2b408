"""Replay → signed webhooks → receivers, as a user runs it: real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from tests.conftest import ROOT
from tests.e2e.test_cli import newsmon, read_jsonl
from tests.webhook_servers import SECRET, Reply, ScriptedReceiver, closed_port, serving


def subscriptions_file(tmp_path: Path, entries: list[dict]) -> Path:
    lines = []
    for entry in entries:
        lines.append("[[subscriptions]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in entry.items())
    path = tmp_path / "subs.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "receiver exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("receiver did not start")


def test_replay_delivers_seed_alerts_to_newsmon_receive(tmp_path):
    port = closed_port()
    received = tmp_path / "received.jsonl"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "receive", "--port", str(port), "--secret", SECRET,
         "--out", str(received)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_port(receiver, port)
        subs = subscriptions_file(tmp_path, [{
            "id": "desk", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET,
            "topics": ["spying", "embassy", "tariffs"], "allow_private_targets": True,
        }])  # fmt: skip
        result = newsmon("replay", "--subscriptions", str(subs), "--out", "out", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    finally:
        receiver.terminate()
        out, err = receiver.communicate(timeout=10)
    alerts = read_jsonl(tmp_path / "out" / "alerts.jsonl")
    assert alerts and {t for a in alerts for t in a["topics"]} >= {"spying", "embassy", "tariffs"}
    bodies = read_jsonl(received)
    assert sorted(b["data"]["id"] for b in bodies) == sorted(a["id"] for a in alerts)
    assert {b["type"] for b in bodies} <= {"alert.item", "alert.updated", "alert.burst"}
    assert (tmp_path / "out" / "dead_letters.jsonl").read_text() == ""
    assert "alerts received" in err and "Traceback" not in err
    assert "alert.item" in out  # printed readably


def test_dead_endpoint_and_flaky_receiver_lose_nothing_and_finish_quickly(tmp_path):
    dead_port = closed_port()

    def flaky(webhook_id: str, count: int) -> Reply | None:
        return Reply(status=503) if count <= 2 else None  # the first two attempts of every id fail

    with serving(ScriptedReceiver(behaviour=flaky)) as live:
        live_url = f"http://127.0.0.1:{live.server_address[1]}/hook"
        subs = subscriptions_file(tmp_path, [
            {"id": "dead", "url": f"http://127.0.0.1:{dead_port}/hook", "secret": SECRET,
             "allow_private_targets": True},
            {"id": "live", "url": live_url, "secret": SECRET, "allow_private_targets": True},
        ])  # fmt: skip
        started = time.monotonic()
        result = newsmon("replay", "--subscriptions", str(subs), "--out", "out", cwd=tmp_path)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        print(f"replay with a dead and a flaky webhook: {elapsed:.1f} s")
        assert elapsed < 60
        alerts = read_jsonl(tmp_path / "out" / "alerts.jsonl")
        dead = read_jsonl(tmp_path / "out" / "dead_letters.jsonl")
        live_ids = {a["id"] for a in alerts if a["subscription"] == "live"}
        assert live_ids and {a["subscription"] for a in alerts} == {"live"}
        with live.lock:
            received_ids = {json.loads(b)["data"]["id"] for b in live.bodies.values()}
            retried = all(len(times) >= 3 for times in live.arrivals.values())
        assert received_ids == live_ids and retried  # same webhook-id retried until delivered, once recorded
        assert len(dead) == len(live_ids)  # every alert of the dead subscription is a dead letter
        assert {d["source"] for d in dead} == {"dead"}
        assert {d["reason"] for d in dead} <= {"endpoint_down", "exhausted"}
        detail = json.loads(dead[0]["detail"])
        Webhook(SECRET).verify(detail["body"], detail["headers"])  # the exact signed request is kept

    # The endpoint comes back: redeliver sends the same webhook-ids, and the file empties.
    with serving(ScriptedReceiver(port=dead_port)) as back:
        again = newsmon("redeliver", str(tmp_path / "out" / "dead_letters.jsonl"), "--subscriptions", str(subs),
                        cwd=tmp_path)  # fmt: skip
        assert again.returncode == 0, again.stderr + again.stdout
        with back.lock:
            redelivered = {json.loads(b)["data"]["id"] for b in back.bodies.values()}
        assert redelivered == {json.loads(d["detail"])["webhook_id"] for d in dead}
    assert (tmp_path / "out" / "dead_letters.jsonl").read_text() == ""
