"""The corrector protocol every backend (PyTorch, onnxruntime, peers) implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from spantune.postprocess import PostResult
from spantune.schema import SpanExample


#: The keep margin's per-span record, in predictions.jsonl and `spantune fix --jsonl` output alike.
KEEP_SCORES = ("kept", "keep_logprob", "answer_logprob", "edit_preference")


@dataclass(frozen=True)
class Prediction:
    """One corrected span: the raw model text, what the editor would insert, and its cost.

    :data:`KEEP_SCORES` are set when the keep margin scored the answer (:mod:`spantune.infer.keep`): ``kept``
    says the margin replaced the answer by ``span_in``; the two log-probabilities and the edit preference (nats
    per token) are what it decided on.
    """

    raw: str
    result: PostResult
    latency_s: float
    new_tokens: int = 0
    kept: bool | None = None
    keep_logprob: float | None = None
    answer_logprob: float | None = None
    edit_preference: float | None = None

    @property
    def text(self) -> str:
        return self.result.text


@runtime_checkable
class Corrector(Protocol):
    """Anything that corrects spans; evaluation and ``spantune fix`` accept any of these. One span per call:
    every backend decodes spans one at a time, so callers loop (and stream each answer as it comes)."""

    name: str

    def correct(self, example: SpanExample) -> Prediction: ...
