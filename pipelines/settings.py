"""newsmon's own settings: one pydantic model, built once by the CLI and passed down as values.

Runner concerns (runner, project, region, workers…) stay in Beam's PipelineOptions.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ReplaySettings", "WatchSettings"]


class ReplaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    inputs: list[str] = Field(default_factory=list, description="files, directories or globs; empty = the seeds")
    out_dir: str = Field(default="out", description="where items.jsonl, alerts.jsonl, dead_letters.jsonl go")
    speed: float = Field(default=0.0, ge=0.0, description="event seconds per wall second; 0 = as fast as possible")
    topics_file: str | None = Field(default=None, description="topics TOML; default: the shipped taxonomy")
    subscriptions_file: str | None = Field(default=None, description="subscriptions TOML; default: all topics")
    max_file_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="larger files are dead-lettered")


class WatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    feeds: list[str] = Field(default_factory=list, description="feed URLs given with --feed")
    feeds_file: str | None = Field(default=None, description="one URL per line (# comments) or an OPML export")
    interval: float = Field(default=300.0, gt=0, description="seconds between polls of one feed")
    duration: float | None = Field(default=None, gt=0, description="stop cleanly after this many seconds")
    out_dir: str = Field(default="out", description="items, alerts, dead letters and feeds.jsonl are appended here")
    topics_file: str | None = None
    subscriptions_file: str | None = None
    shards: int = Field(
        default=1, ge=1, le=256, description="polling shards (elements); one suffices locally, fetches are concurrent"
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    fetch_workers: int = Field(default=16, ge=1, le=256, description="concurrent fetches per shard")
    per_host: int = Field(default=2, ge=1, le=64, description="concurrent fetches per host")
