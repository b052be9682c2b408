"""newsmon's own settings: one pydantic model, built once by the CLI and passed down as values.

Runner concerns (runner, project, region, workers…) stay in Beam's PipelineOptions.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ReplaySettings"]


class ReplaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    inputs: list[str] = Field(default_factory=list, description="files, directories or globs; empty = the seeds")
    out_dir: str = Field(default="out", description="where items.jsonl, alerts.jsonl, dead_letters.jsonl go")
    speed: float = Field(default=0.0, ge=0.0, description="event seconds per wall second; 0 = as fast as possible")
    topics_file: str | None = Field(default=None, description="topics TOML; default: the shipped taxonomy")
    subscriptions_file: str | None = Field(default=None, description="subscriptions TOML; default: all topics")
    max_file_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="larger files are dead-lettered")
