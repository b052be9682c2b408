"""The Pub/Sub path end to end against the Pub/Sub emulator: items in → stream → alerts topic out."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

GCLOUD = shutil.which("gcloud")
EMULATOR_DIR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator")
pytestmark = [
    pytest.mark.skipif(GCLOUD is None, reason="gcloud not installed (Debian 12 images ship it; Debian 13 do not)"),
    pytest.mark.skipif(shutil.which("java") is None, reason="java not installed (the Pub/Sub emulator needs it)"),
]
PROJECT = "newsmon-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    pytest.importorskip("google.cloud.pubsub_v1", reason="apache-beam[gcp] not installed")
    port = free_port()
    config = tmp_path_factory.mktemp("gcloud")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(config), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    proc = subprocess.Popen(
        [GCLOUD, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", f"--project={PROJECT}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"Pub/Sub emulator did not start: {proc.stderr.read()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, 9)
        pytest.skip("Pub/Sub emulator did not open its port within 60 s")
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, 15)
    proc.wait(20)


def test_items_from_pubsub_become_alerts_on_a_topic(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator)
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in ("items", "alerts"):
        publisher.create_topic(name=f"projects/{PROJECT}/topics/{topic}")
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/items",
                                   topic=f"projects/{PROJECT}/topics/items")  # fmt: skip
    subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/alerts-out",
                                   topic=f"projects/{PROJECT}/topics/alerts")  # fmt: skip
    messages = [
        {"title": "Two men charged with spying for China", "url": "https://n.example/1", "source": "wire",
         "body": "Prosecutors say the pair passed state secrets to Beijing's intelligence services.",
         "published": "2025-03-01T10:00:00+00:00"},
        {"title": "China doubles import tariffs on Scotch whisky", "url": "https://n.example/2", "source": "wire",
         "summary": "The new customs duties and anti-dumping measures hit exporters.",
         "published": "2025-03-01T11:00:00+00:00"},
        {"title": "Local bakery wins award", "body": "A sourdough triumph.", "url": "https://n.example/3"},
    ]  # fmt: skip
    for m in messages:
        publisher.publish(f"projects/{PROJECT}/topics/items", json.dumps(m).encode()).result(timeout=30)
    publisher.publish(f"projects/{PROJECT}/topics/items", b"{not json").result(timeout=30)

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "stream", "--input_subscription",
         f"projects/{PROJECT}/subscriptions/items", "--alerts_topic", f"projects/{PROJECT}/topics/alerts",
         "--duration", "12", "--metrics-port", "0", "--out", "out"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "PUBSUB_EMULATOR_HOST": emulator},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    items = [json.loads(x) for x in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert sorted(i["url"] for i in items) == ["https://n.example/1", "https://n.example/2", "https://n.example/3"]
    assert all(i["source_kind"] == "pubsub" for i in items)
    dead = [json.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()]
    assert [(d["stage"], d["reason"]) for d in dead] == [("pubsub", "bad_message")]

    pulled = subscriber.pull(subscription=f"projects/{PROJECT}/subscriptions/alerts-out", max_messages=20, timeout=30)
    alerts = [json.loads(m.message.data) for m in pulled.received_messages]
    topics = sorted(t for a in alerts for t in a["data"]["topics"])
    assert {a["type"] for a in alerts} == {"alert.item"}
    assert "spying" in topics and "tariffs" in topics
    assert sorted(a["data"]["items"][0]["url"] for a in alerts) == ["https://n.example/1", "https://n.example/2"]
