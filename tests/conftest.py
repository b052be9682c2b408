"""Shared fixtures: the in-process runner for TestPipeline (no Prism download), seed paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines.runner import local_runner

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


def local_test_pipeline() -> TestPipeline:
    options = PipelineOptions([])
    return TestPipeline(runner=local_runner(options), options=options)


@pytest.fixture
def seeds_dir() -> Path:
    return SEEDS


def seed_text(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")
