"""A real or synthetic error before it is cut into a span example (shared by the builder and the readers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    """A (text with one error, corrected text) pair, before it is cut into a span."""

    text_in: str
    text_out: str
    tags: list[str]
    group: str
    source: str
    key: str  # seeds this candidate's RNG
    extra: dict[str, Any] = field(default_factory=dict)
    anchor: int | None = None  # no-op candidates: the character the span is cut around
    in_document: bool = False  # the texts are the learner's paragraph: never joined with other sentences
