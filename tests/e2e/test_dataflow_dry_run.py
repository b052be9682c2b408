"""Dataflow, offline: the same pipelines build as Dataflow jobs (dry run), with stable transform names."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.conftest import ROOT, SEEDS

pytest.importorskip("apache_beam.runners.dataflow.dataflow_runner", reason="apache-beam[gcp] not installed")
pytest.importorskip("google.cloud.pubsub_v1", reason="apache-beam[gcp] not installed")

from alerts.subscriptions import default_subscriptions
from pipelines.classify.rules import load_topics
from pipelines.pipeline import build_pipeline
from pipelines.runner import make_pipeline
from pipelines.sources.feeds import FeedConfig
from pipelines.sources.pubsub import ReadItems
from pipelines.sources.replay import ReplayArticles, expand_inputs
from pipelines.sources.rss import PollFeeds

NAMES_FILE = ROOT / "tests" / "data" / "transform_names.txt"
DATAFLOW = [
    "--runner=DataflowRunner", "--project=newsmon-test", "--region=europe-west2",
    "--temp_location=gs://newsmon-test/tmp", "--dry_run=True", "--enable_streaming_engine",
]  # fmt: skip


def replay_job(args=DATAFLOW):
    p = make_pipeline(list(args))
    build_pipeline(p, ReplayArticles(expand_inputs([str(SEEDS)])), load_topics(), default_subscriptions(),
                   out_dir="gs://newsmon-test/out")  # fmt: skip
    return p


def watch_job(args=DATAFLOW):
    p = make_pipeline(list(args), streaming=True)
    feeds = [FeedConfig(url="https://feeds.example.com/world.xml")]
    build_pipeline(p, PollFeeds(feeds, interval=300, sleep_locally=False), load_topics(), default_subscriptions(),
                   out_dir="gs://newsmon-test/out", streaming=True,
                   alerts_topic="projects/newsmon-test/topics/alerts")  # fmt: skip
    return p


def stream_job(args=DATAFLOW):
    p = make_pipeline(list(args), streaming=True)
    source = ReadItems(subscription="projects/newsmon-test/subscriptions/items", id_label="item_id",
                       timestamp_attribute="published")  # fmt: skip
    build_pipeline(p, source, load_topics(), default_subscriptions(), out_dir="gs://newsmon-test/out",
                   streaming=True, alerts_topic="projects/newsmon-test/topics/alerts")  # fmt: skip
    return p


def dry_run(pipeline):
    result = pipeline.run()
    assert str(result.state).endswith("DONE")
    return pipeline.runner.job


def test_replay_builds_a_batch_dataflow_job():
    job = dry_run(replay_job())
    assert job.proto.type.name == "JOB_TYPE_BATCH"
    assert job.options.get_all_options()["project"] == "newsmon-test"
    assert job.options.get_all_options()["region"] == "europe-west2"


@pytest.mark.parametrize("builder", [watch_job, stream_job], ids=["watch-rss", "stream-pubsub"])
def test_live_pipelines_build_streaming_dataflow_jobs(builder):
    job = dry_run(builder())
    assert job.proto.type.name == "JOB_TYPE_STREAMING"
    options = job.options.get_all_options()
    assert options["streaming"] is True and options["enable_streaming_engine"] is True


def test_cli_dry_run_submits_nothing_and_says_so(tmp_path):
    from pipelines.cli import main

    out = io.StringIO()
    code = main(["replay", "--inputs", f"{SEEDS}/000_0b7f4daa54ae6f7e.txt", "--out", "gs://newsmon-test/out",
                 *DATAFLOW], out=out)  # fmt: skip
    assert code == 0 and "submitted" in out.getvalue()


def transform_names() -> list[str]:
    names = set()
    for kind, builder in (("replay", replay_job), ("watch", watch_job), ("stream", stream_job)):
        proto = builder().to_runner_api()
        names.update(f"{kind}\t{t.unique_name}" for t in proto.components.transforms.values() if t.unique_name)
    return sorted(names)


def test_transform_names_match_the_checked_in_list():
    """Renaming a transform breaks `--update` of a running Dataflow job: do it on purpose, with a
    --transform_name_mapping documented in deploy/dataflow/README.md, then refresh the list with
    `python -m tests.e2e.test_dataflow_dry_run`."""
    expected = [line for line in NAMES_FILE.read_text().splitlines() if line and not line.startswith("#")]
    actual = transform_names()
    added, removed = sorted(set(actual) - set(expected)), sorted(set(expected) - set(actual))
    assert not added and not removed, f"renamed transforms: added {added[:20]}, removed {removed[:20]}"


if __name__ == "__main__":
    Path(NAMES_FILE).write_text(
        "# Transform names per pipeline (kind<TAB>unique name). Renames break Dataflow --update: see\n"
        "# tests/e2e/test_dataflow_dry_run.py. Regenerate: python -m tests.e2e.test_dataflow_dry_run\n"
        + "\n".join(transform_names())
        + "\n"
    )
    print(f"wrote {NAMES_FILE}")


def test_job_description_survives_runs_that_create_no_job():
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

    from pipelines.runner import describe_result

    assert "no job created" in describe_result(DataflowPipelineResult(None, None))
