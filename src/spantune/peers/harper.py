"""Harper (PyPI ``harper-py``), an offline rule-based English grammar checker, as a span corrector.

It gives every evaluation report a real, non-LLM alternative to stand against. Harper lints the
whole visible text (``ctx_before + span_in + ctx_after``, as plain text) so its rules see the
context; the first suggestion of each lint lying entirely inside the span is applied, right to left
so earlier offsets stay valid, and lints touching the contexts are ignored. The result goes through
:func:`spantune.postprocess.postprocess` like any model output, so the flags mean the same thing.
"""

from __future__ import annotations

import time
from typing import Any

from spantune.errors import SpantuneError
from spantune.infer.base import Prediction
from spantune.postprocess import postprocess
from spantune.schema import SpanExample


def _linter() -> Any:
    try:
        import harper
    except ImportError as exc:
        raise SpantuneError(f"the harper system needs the harper-py package ({exc}): "
                            "pip install 'spantune[peers]'") from None
    return harper.Linter()


class HarperCorrector:
    """:class:`~spantune.infer.base.Corrector` applying Harper's suggestions inside the span."""

    name = "harper"

    def __init__(self) -> None:
        self.linter = _linter()  # about a second to build its dictionary: build once, reuse

    def correct_text(self, ctx_before: str, span_in: str, ctx_after: str) -> str:
        """``span_in`` with the first suggestion of every Harper lint inside it applied."""
        text = ctx_before + span_in + ctx_after
        start, end = len(ctx_before), len(ctx_before) + len(span_in)
        inside = [lint for lint in self.linter.lint(text, language="plaintext")
                  if start <= lint.span.start and lint.span.end <= end and lint.suggestions]
        for lint in sorted(inside, key=lambda lint: lint.span.start, reverse=True):
            text = self.linter.apply_suggestion(text, lint, lint.suggestions[0])
        return text[start:len(text) - len(ctx_after)]

    def correct(self, example: SpanExample) -> Prediction:
        t0 = time.perf_counter()
        raw = self.correct_text(example.ctx_before, example.span_in, example.ctx_after)
        result = postprocess(raw, example.span_in)
        return Prediction(raw=raw, result=result, latency_s=time.perf_counter() - t0, new_tokens=0)
