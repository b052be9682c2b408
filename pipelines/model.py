"""The shared vocabulary of newsmon: items, topic matches, alerts and dead letters.

Every arrow of the pipeline carries one of these pydantic models. Nothing here imports Beam, so the
models can be used (and tested) by pure code, the CLI and the alert receivers alike.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Alert",
    "AlertItem",
    "AlertKind",
    "ClassifiedItem",
    "DeadLetter",
    "Evidence",
    "NewsItem",
    "SourceKind",
    "TopicMatch",
    "construct_trusted",
    "item_id",
    "stable_id",
    "to_utc",
]

SourceKind = Literal["replay", "rss", "pubsub", "test"]
AlertKind = Literal["alert.item", "alert.updated", "alert.burst", "feed.down", "feed.recovered"]


def stable_id(*parts: str, length: int = 16) -> str:
    """A short deterministic hex id from string parts (NUL-separated so parts cannot run together)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


def construct_trusted(cls: type[BaseModel], **values: Any) -> Any:
    """Build a model from values that are already valid (made by newsmon itself), skipping validation.

    ``model_construct`` costs ~7 µs per object and validation more; evidence lists make that a large
    share of classification and of decoding between pipeline stages. Never use it on outside input.
    """
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def to_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def item_id(source: str, url: str | None, title: str, published: datetime | None) -> str:
    """Stable item id: source + url, or source + title + published when there is no url."""
    if url:
        return stable_id("url", source, url)
    stamp = to_utc(published).isoformat() if published else ""
    return stable_id("title", source, title, stamp)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewsItem(_Model):
    """One article or feed entry, whatever source it came from."""

    id: str
    source: str = Field(description="file path (relative to the replay root) or feed URL")
    source_kind: SourceKind
    url: str | None = None
    title: str
    body: str = ""
    published: datetime | None = Field(default=None, description="UTC publication time, if known")
    ingested: datetime = Field(description="the event timestamp actually used for this item (UTC)")
    guid: str | None = Field(default=None, description="the feed entry's guid/id, when it has one")
    date_estimated: bool = Field(default=False, description="no usable date: ingested is the fetch time")
    also_sources: list[str] = Field(default_factory=list, description="other feeds that carried this item")

    _utc = field_validator("published", "ingested")(to_utc)


class Evidence(_Model):
    """One match that contributed to (or decided against) a topic."""

    term: str = Field(description="the rule pattern that matched, e.g. 'spy*'")
    text: str = Field(description="the text actually matched")
    field: Literal["title", "body"]
    start: int = Field(ge=0, description="character offset in the field")
    end: int = Field(ge=0)
    rule: str = Field(description="which rule matched: term, near, all_of, none_of")
    weight: float = 0.0


class TopicMatch(_Model):
    topic: str
    score: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)


class ClassifiedItem(_Model):
    item: NewsItem
    matches: list[TopicMatch] = Field(default_factory=list)
    queries: list[str] = Field(
        default_factory=list, description="ids of subscriptions whose query the item's full text satisfies"
    )

    @property
    def topics(self) -> list[str]:
        return [m.topic for m in self.matches]


class AlertItem(_Model):
    """The part of an item that travels inside an alert (no body: alerts stay small)."""

    id: str
    title: str
    url: str | None = None
    source: str
    published: datetime | None = None
    matches: list[TopicMatch] = Field(default_factory=list, description="topics, scores and evidence")

    _utc = field_validator("published")(to_utc)


class Alert(_Model):
    id: str = Field(description="deterministic: derived from subscription, kind and subject")
    kind: AlertKind = Field(description="also the webhook event type")
    subscription: str
    topics: list[str]
    scores: dict[str, float] = Field(default_factory=dict)
    items: list[AlertItem]
    reason: str
    timestamp: datetime = Field(description="event time of the alert (UTC)")
    story_id: str | None = Field(default=None, description="the story an item or update belongs to")
    details: dict[str, Any] = Field(default_factory=dict, description="kind-specific facts (burst counts, feed)")

    _utc = field_validator("timestamp")(to_utc)


class DeadLetter(_Model):
    """Input that could not be turned into output, kept (not logged and dropped) with the reason."""

    stage: str
    source: str
    reason: str
    detail: str = ""
