"""Subscriptions: who wants which alerts, where. TOML validated by pydantic.

    [[subscriptions]]
    id = "china-security"
    topics = ["spying", "embassy", "cyber"]   # any of these; empty = every topic
    min_score = 0.6
    sink = "file"                              # alerts.jsonl in the output folder

A bad file stops the run before the pipeline starts, naming the subscription and the field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "DEFAULT_SUBSCRIPTION_ID",
    "Subscription",
    "SubscriptionError",
    "SubscriptionsFile",
    "default_subscriptions",
    "load_subscriptions",
    "parse_subscriptions",
]

DEFAULT_SUBSCRIPTION_ID = "all-topics"


class SubscriptionError(ValueError):
    """A subscriptions file that cannot be used; the message names the subscription and field."""


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    topics: list[str] = Field(default_factory=list, description="any of these topics; empty = all")
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    sink: Literal["file"] = "file"
    enabled: bool = True

    def wants(self, topic: str, score: float) -> bool:
        return (not self.topics or topic in self.topics) and score >= self.min_score


class SubscriptionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    subscriptions: list[Subscription] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SubscriptionsFile:
        ids = [s.id for s in self.subscriptions]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"subscription ids must be unique: {', '.join(dupes)}")
        return self

    def check_topics(self, known: list[str]) -> None:
        for sub in self.subscriptions:
            unknown = [t for t in sub.topics if t not in known]
            if unknown:
                raise SubscriptionError(
                    f"subscription {sub.id!r}, field topics: unknown topic(s) {', '.join(unknown)} "
                    f"(known: {', '.join(known)})"
                )


def default_subscriptions() -> SubscriptionsFile:
    """One subscription to every topic, written to the output folder."""
    return SubscriptionsFile(subscriptions=[Subscription(id=DEFAULT_SUBSCRIPTION_ID)])


def parse_subscriptions(text: str, origin: str = "<subscriptions>") -> SubscriptionsFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SubscriptionError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return SubscriptionsFile.model_validate(data)
    except ValidationError as exc:
        subs = data.get("subscriptions") if isinstance(data, dict) else None
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = "file"
            if len(loc) >= 2 and loc[0] == "subscriptions" and isinstance(loc[1], int):
                entry = subs[loc[1]] if isinstance(subs, list) and loc[1] < len(subs) else {}
                name = entry.get("id", f"#{loc[1] + 1}") if isinstance(entry, dict) else f"#{loc[1] + 1}"
                where = f"subscription {name!r}"
                loc = loc[2:]
            problems.append(f"{where}, field {'.'.join(map(str, loc)) or '(entry)'}: {err['msg']}")
        raise SubscriptionError(f"{origin}: {'; '.join(problems)}") from None


def load_subscriptions(path: str | Path | None) -> SubscriptionsFile:
    if path is None:
        return default_subscriptions()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SubscriptionError(f"{path}: cannot read subscriptions file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SubscriptionError(f"{path}: subscriptions file is not UTF-8") from None
    return parse_subscriptions(text, str(path))
