"""The topic rule language: TOML validated by pydantic, with errors that name the topic and field.

A topics file looks like::

    version = 1
    title_weight = 2.0          # a title hit counts this many body hits
    max_count = 3               # body repeats of one term count at most this often

    [[topics]]
    id = "tariffs"
    label = "Tariffs"
    definition = "Customs duties on goods, anti-dumping, tariff wars"
    threshold = 3.0
    terms = { "tariff*" = 2, "anti-dumping" = 3, "customs duties" = 3 }
    all_of = [["tariff*", "duty", "duties", "anti-dumping"]]
    none_of = ["price cap"]
    mask = ["energy tariff*", "phone tariff*"]
    near = [{ a = ["import*", "export*"], b = ["dut*"], window = 4, weight = 2 }]
    examples = { positive = ["US raises tariffs on Chinese steel"], negative = ["Ofgem raises energy tariffs"] }

Patterns are case-insensitive whole words (``spy*`` is a prefix wildcard). Spaces and hyphens in a
pattern are interchangeable, and a hyphenated pattern also matches its closed form (``anti-dumping``
matches ``anti dumping`` and ``antidumping``). Acronyms match their dotted form (``uk`` ≈ ``U.K.``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DEFAULT_TOPICS",
    "NearRule",
    "RuleError",
    "TopicRule",
    "TopicsFile",
    "default_topics_path",
    "load_topics",
    "parse_topics",
]

DEFAULT_TOPICS = "topics.toml"

_PATTERN = re.compile(r"^[\w][\w .,&'’/+()-]*\*?$", re.UNICODE)


class RuleError(ValueError):
    """A topics file that cannot be used; the message names the file, topic and field."""


def _check_pattern(value: str) -> str:
    value = value.strip()
    if not value or not _PATTERN.match(value) or "**" in value:
        raise ValueError(f"invalid pattern {value!r}: words, spaces, hyphens, an optional trailing *")
    return value


Pattern = Annotated[str, Field(min_length=1)]


class NearRule(BaseModel):
    """Adds ``weight`` when a term of ``a`` occurs within ``window`` words of a term of ``b``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    a: list[Pattern] = Field(min_length=1)
    b: list[Pattern] = Field(min_length=1)
    window: int = Field(default=5, ge=1, le=50)
    weight: float = Field(default=1.0, gt=0)

    _v = field_validator("a", "b")(lambda v: [_check_pattern(x) for x in v])


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)


class TopicRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    label: str
    definition: str
    threshold: float = Field(gt=0)
    title_weight: float | None = Field(default=None, gt=0)
    terms: dict[str, float] = Field(min_length=1)
    all_of: list[list[Pattern]] = Field(default_factory=list)
    none_of: list[Pattern] = Field(default_factory=list)
    mask: list[Pattern] = Field(default_factory=list)
    near: list[NearRule] = Field(default_factory=list)
    examples: Examples = Field(default_factory=Examples)

    @field_validator("terms")
    @classmethod
    def _terms(cls, v: dict[str, float]) -> dict[str, float]:
        out = {}
        for pattern, weight in v.items():
            if weight == 0:
                raise ValueError(f"term {pattern!r} has weight 0 (remove it instead)")
            out[_check_pattern(pattern)] = weight
        return out

    @field_validator("none_of", "mask")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return [_check_pattern(x) for x in v]

    @field_validator("all_of")
    @classmethod
    def _groups(cls, v: list[list[str]]) -> list[list[str]]:
        if any(not group for group in v):
            raise ValueError("every all_of group needs at least one pattern")
        return [[_check_pattern(x) for x in group] for group in v]


class TopicsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    version: int = 1
    title_weight: float = Field(default=2.0, gt=0)
    max_count: int = Field(default=3, ge=1)
    topics: list[TopicRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> TopicsFile:
        seen: set[str] = set()
        for topic in self.topics:
            if topic.id in seen:
                raise ValueError(f"topic id {topic.id!r} appears twice")
            seen.add(topic.id)
        return self


def _describe(exc: ValidationError, data: dict) -> str:
    lines = []
    topics = data.get("topics") if isinstance(data, dict) else None
    for err in exc.errors():
        loc = list(err["loc"])
        where = "file"
        if len(loc) >= 2 and loc[0] == "topics" and isinstance(loc[1], int):
            tid = "?"
            if isinstance(topics, list) and loc[1] < len(topics) and isinstance(topics[loc[1]], dict):
                tid = str(topics[loc[1]].get("id", f"#{loc[1] + 1}"))
            where = f"topic {tid!r}"
            loc = loc[2:]
        field = ".".join(str(x) for x in loc) or "(topic)"
        lines.append(f"{where}, field {field}: {err['msg']}")
    return "; ".join(lines)


def parse_topics(text: str, origin: str = "<topics>") -> TopicsFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return TopicsFile.model_validate(data)
    except ValidationError as exc:
        raise RuleError(f"{origin}: {_describe(exc, data)}") from None


def default_topics_path() -> Path:
    return Path(str(resources.files("pipelines.classify").joinpath(DEFAULT_TOPICS)))


def load_topics(path: str | Path | None = None) -> TopicsFile:
    """Load and validate a topics file (the shipped one when ``path`` is None)."""
    target = Path(path) if path else default_topics_path()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{target}: cannot read topics file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{target}: topics file is not UTF-8") from None
    return parse_topics(text, str(target))
