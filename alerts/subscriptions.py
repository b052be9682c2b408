"""Subscriptions: who wants which alerts, where. TOML validated by pydantic.

    [[subscriptions]]
    id = "china-security"
    url = "https://hooks.example.com/newsmon"     # webhook (Standard Webhooks); omit for the file sink
    secret = "NEWSMON_SECRET_CHINA"                # whsec_… or the NAME of an environment variable
    topics = ["spying", "embassy", "cyber"]        # any of these; empty = every topic
    all_topics = []                                # and all of these
    min_score = 0.6
    query = "China OR Beijing"                     # the item must also contain these terms
    kinds = ["item", "story_update", "burst", "feed_health"]
    enabled = true

A bad file stops the run before the pipeline starts, naming the subscription and the field.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pipelines.model import AlertKind

__all__ = [
    "DEFAULT_SUBSCRIPTION_ID",
    "KIND_OF_ALERT",
    "Query",
    "Subscription",
    "SubscriptionError",
    "SubscriptionsFile",
    "append_subscription",
    "default_subscriptions",
    "generate_secret",
    "load_subscriptions",
    "parse_subscriptions",
]

DEFAULT_SUBSCRIPTION_ID = "all-topics"
Kind = Literal["item", "story_update", "burst", "feed_health"]
ALL_KINDS: tuple[Kind, ...] = ("item", "story_update", "burst", "feed_health")
KIND_OF_ALERT: dict[AlertKind, Kind] = {
    "alert.item": "item",
    "alert.updated": "story_update",
    "alert.burst": "burst",
    "feed.down": "feed_health",
    "feed.recovered": "feed_health",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SubscriptionError(ValueError):
    """A subscriptions file that cannot be used; the message names the subscription and field."""


def generate_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Query:
    """``a OR b``, ``a AND b``, ``"multi word"``: OR of AND-groups of case-insensitive whole words."""

    _TOKEN = re.compile(r'"([^"]+)"|(\S+)')

    def __init__(self, text: str) -> None:
        groups: list[list[str]] = [[]]
        for quoted, bare in self._TOKEN.findall(text):
            word = quoted or bare
            if bare == "OR":
                groups.append([])
            elif bare != "AND":
                groups[-1].append(word.lower())
        if any(not g for g in groups):
            raise ValueError(f"query {text!r}: every OR branch needs at least one term")
        self.text = text
        self._patterns = [
            [re.compile(r"(?<!\w)" + re.escape(w).replace(r"\ ", r"\s+") + r"(?!\w)") for w in g] for g in groups
        ]

    def matches(self, text: str) -> bool:
        lowered = text.lower()
        return any(all(p.search(lowered) for p in group) for group in self._patterns)


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    url: str | None = Field(default=None, description="webhook URL (http/https); none = file sink")
    secret: SecretStr | None = Field(default=None, description="whsec_… or an environment variable name")
    topics: list[str] = Field(default_factory=list, description="any of these topics; empty = all")
    all_topics: list[str] = Field(default_factory=list, description="and all of these topics")
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    query: str | None = Field(default=None, description="terms the item must also contain")
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS))
    sink: Literal["file", "stdout", "webhook"] | None = None
    enabled: bool = True
    allow_private_targets: bool = Field(default=False, description="allow loopback/private webhook targets")
    max_attempts: int = Field(default=6, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL with a host")
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is not None:
            Query(v)
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        if raw.startswith("whsec_"):
            try:
                base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except ValueError:
                raise ValueError("whsec_ secret is not valid base64") from None
        elif not _ENV_NAME.match(raw):
            raise ValueError("must be a whsec_… secret or the name of an environment variable")
        return v

    @model_validator(mode="after")
    def _sink(self) -> Subscription:
        sink = self.sink or ("webhook" if self.url else "file")
        if sink == "webhook" and not self.url:
            raise ValueError("sink 'webhook' needs a url")
        if sink == "webhook" and self.secret is None:
            raise ValueError("a webhook subscription needs a secret (whsec_… or an environment variable name)")
        object.__setattr__(self, "sink", sink)
        return self

    def resolved_secret(self) -> str:
        """The whsec_ secret, reading the environment variable the file names, if it names one."""
        if self.secret is None:
            raise SubscriptionError(f"subscription {self.id!r}, field secret: none given")
        raw = self.secret.get_secret_value()
        if raw.startswith("whsec_"):
            return raw
        value = os.environ.get(raw)
        if not value or not value.startswith("whsec_"):
            raise SubscriptionError(
                f"subscription {self.id!r}, field secret: environment variable {raw} is not set to a whsec_ secret"
            )
        return value

    def wants(self, topic: str, score: float) -> bool:
        return (not self.topics or topic in self.topics) and score >= self.min_score

    def wants_kind(self, kind: AlertKind) -> bool:
        return KIND_OF_ALERT[kind] in self.kinds


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
            for field in ("topics", "all_topics"):
                unknown = [t for t in getattr(sub, field) if t not in known]
                if unknown:
                    raise SubscriptionError(
                        f"subscription {sub.id!r}, field {field}: unknown topic(s) {', '.join(unknown)} "
                        f"(known: {', '.join(known)})"
                    )

    def check_secrets(self) -> None:
        """Resolve every enabled webhook's secret now, so a missing variable stops the run early."""
        for sub in self.subscriptions:
            if sub.enabled and sub.sink == "webhook":
                sub.resolved_secret()

    @property
    def queries(self) -> dict[str, str]:
        return {s.id: s.query for s in self.subscriptions if s.query}


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
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}, field {'.'.join(map(str, loc)) or '(entry)'}: {msg}")
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


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def append_subscription(path: str | Path, fields: dict[str, object]) -> Subscription:
    """Validate one subscription against the file's others and append it as a TOML table."""
    target = Path(path)
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    block = "\n[[subscriptions]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items() if v is not None)
    parsed = parse_subscriptions(existing + block, str(target))
    target.write_text(existing + block, encoding="utf-8")
    return parsed.subscriptions[-1]
