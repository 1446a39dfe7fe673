"""Evaluation metrics, each defined once: the docstring of its function is the definition.

docs/metrics.md quotes these docstrings (a test checks that they match). Only numpy, rapidfuzz
and sacrebleu are imported, so training can call :func:`compute_metrics` cheaply.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import CHRF

from spantune.data.tags import length_bucket
from spantune.errors import InputError
from spantune.infer.base import KEEP_SCORES
from spantune.postprocess import PostResult, length_cap
from spantune.prompt import WHITESPACE
from spantune.schema import SpanExample, dumps

#: sacrebleu's default chrF (character 6-grams, no word n-grams, beta 2): "chrF2" in papers.
_CHRF = CHRF()



def span_length_bucket(span_in: str) -> str:
    """The data builder's span-length bucket of ``span_in``'s whitespace-separated word count."""
    return length_bucket(len(span_in.split()))


#: Optional example field: further accepted outputs besides ``span_out`` (a list of strings), e.g. a
#: corpus's other references. Edit precision and recall count a match with any of them.
REFERENCES_FIELD = "references"


def accepted_outputs(example: SpanExample) -> tuple[str, ...]:
    """``span_out`` and the example's further accepted references (see :data:`REFERENCES_FIELD`).

    Raises ValueError when the field is not a list of strings (callers name the file, line and field).
    """
    extra = example.extra.get(REFERENCES_FIELD, [])
    if not isinstance(extra, list) or not all(isinstance(r, str) for r in extra):
        raise ValueError(f"expected a list of strings, got {extra!r:.60}")
    return (example.span_out, *extra)


def example_key(example: SpanExample) -> str:
    """Stable identity of an example across files and runs: its id, or a hash of its fields."""
    if example.id:
        return example.id
    text = dumps({k: getattr(example, k) for k in ("ctx_before", "span_in", "ctx_after", "span_out")})
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- per-example primitives


def chrf_stats(prediction: str, reference: str) -> list[int]:
    """sacrebleu's sufficient statistics for one segment; summing them gives corpus chrF."""
    return _CHRF._extract_corpus_statistics([prediction], [[reference]])[0]


def chrf_from_stats(stats: Sequence[int] | np.ndarray) -> float:
    """chrF (0–100) from summed segment statistics, computed by sacrebleu itself."""
    return float(_CHRF._compute_score_from_stats(list(stats)).score)


def sentence_chrf(prediction: str, reference: str) -> float:
    """Sentence-level chrF of one prediction (sacrebleu ``sentence_score``)."""
    return chrf_from_stats(chrf_stats(prediction, reference))


def corpus_chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF: statistics summed over all examples, then one F-score (sacrebleu ``corpus_score``)."""
    return chrf_from_stats(np.sum([chrf_stats(p, r) for p, r in zip(predictions, references, strict=True)], axis=0))


def normalized_levenshtein(prediction: str, reference: str) -> float:
    """Levenshtein distance divided by the longer string's length (rapidfuzz); 0 for two empty strings."""
    return float(Levenshtein.normalized_distance(prediction, reference))


# ---------------------------------------------------------------- evaluated examples


@dataclass
class EvalRow:
    """One evaluated example: what the system inserted, the post-processing flags and the timing.

    Flags, latency and token count are ``None`` when unknown: a plain string prediction (as training
    may pass to :func:`compute_metrics`) carries none of them. ``kept``, the two log-probabilities and the
    edit preference come from the keep margin (docs/keep-margin.md), ``None`` where the answer was not scored.
    """

    example: SpanExample
    prediction: str
    raw: str | None = None
    overrun: bool | None = None
    verbose: bool | None = None
    fallback: bool | None = None
    latency_s: float | None = None
    new_tokens: int | None = None
    kept: bool | None = None
    keep_logprob: float | None = None
    answer_logprob: float | None = None
    edit_preference: float | None = None

    @property
    def key(self) -> str:
        return example_key(self.example)

    @property
    def exact(self) -> bool:
        return self.prediction == self.example.span_out

    @property
    def changed(self) -> bool:
        return self.prediction != self.example.span_in

    @property
    def right(self) -> bool:
        """The prediction is ``span_out`` or another accepted reference."""
        return self.prediction in accepted_outputs(self.example)

    def to_dict(self) -> dict[str, Any]:
        """One line of predictions.jsonl: the example, the output, its flags and per-example scores."""
        ex = self.example
        return {
            "key": self.key,
            "example": ex.to_dict(),
            "prediction": self.prediction,
            "raw": self.raw,
            "overrun": self.overrun,
            "verbose": self.verbose,
            "fallback": self.fallback,
            "latency_s": self.latency_s,
            "new_tokens": self.new_tokens,
            "kept": self.kept,
            "keep_logprob": self.keep_logprob,
            "answer_logprob": self.answer_logprob,
            "edit_preference": self.edit_preference,
            "exact": self.exact,
            "levenshtein": round(normalized_levenshtein(self.prediction, ex.span_out), 6),
            "chrf": round(sentence_chrf(self.prediction, ex.span_out), 4),
            "false_edit": ex.is_noop and self.changed,
            "missed_fix": not ex.is_noop and not self.changed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "<predictions>", line: int | None = None) -> EvalRow:
        """Inverse of :meth:`to_dict` (derived scores are recomputed, not trusted)."""
        if not isinstance(d, dict) or not isinstance(d.get("prediction"), str):
            raise InputError(path, line, "prediction", "missing or not a string")
        example = SpanExample.from_dict(d.get("example"), path, line, max_context=1 << 30)
        names = {f.name for f in fields(cls)} - {"example", "prediction"}
        return cls(example=example, prediction=d["prediction"], **{k: d.get(k) for k in names})


def make_row(example: SpanExample, prediction: Any) -> EvalRow:
    """An :class:`EvalRow` from a plain string, a :class:`PostResult`, or an inference ``Prediction``."""
    if isinstance(prediction, str):
        return EvalRow(example, prediction)
    result = getattr(prediction, "result", prediction)
    if not isinstance(result, PostResult):
        raise TypeError(f"expected str, PostResult or Prediction, got {type(prediction).__name__}")
    return EvalRow(example, result.text, raw=getattr(prediction, "raw", None), overrun=result.overrun,
                   verbose=result.verbose, fallback=result.fallback,
                   **{k: getattr(prediction, k, None) for k in
                      ("latency_s", "new_tokens", *KEEP_SCORES)})


def flag_problem(row: EvalRow) -> str | None:
    """Why a row's post-processing flags break :mod:`spantune.postprocess`'s rules, or None if they hold.

    The rules: all three flags are present; an overrun falls back; a fallback inserts ``span_in``;
    an accepted edit (no fallback) is within the length cap once ``span_in``'s own edge whitespace
    is set aside.
    """
    span_in = row.example.span_in
    if None in (row.overrun, row.verbose, row.fallback):
        return "missing post-processing flags"
    if row.overrun and not row.fallback:
        return "overrun without fallback"
    if row.fallback and row.prediction != span_in:
        return "fallback but the prediction is not span_in"
    ws = "".join(WHITESPACE)
    edges = len(span_in) - len(span_in.strip(ws))
    if not row.fallback and len(row.prediction) - edges > length_cap(span_in):
        return "accepted edit longer than the length cap"
    return None


def _optional(values: Iterable[Any]) -> np.ndarray:
    """Float column with NaN where a value is unknown."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


@dataclass(frozen=True)
class Columns:
    """Per-example arrays that every metric reads; ``take`` resamples them for the bootstrap."""

    exact: np.ndarray
    levenshtein: np.ndarray
    chrf_stats: np.ndarray
    noop: np.ndarray
    changed: np.ndarray
    right: np.ndarray
    overrun: np.ndarray
    verbose: np.ndarray
    fallback: np.ndarray
    latency_s: np.ndarray
    new_tokens: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[EvalRow]) -> Columns:
        refs = [r.example.span_out for r in rows]
        preds = [r.prediction for r in rows]
        stats = [chrf_stats(p, t) for p, t in zip(preds, refs)]
        return cls(
            exact=np.array([r.exact for r in rows], dtype=bool),
            levenshtein=np.array([normalized_levenshtein(p, t) for p, t in zip(preds, refs)], dtype=float),
            chrf_stats=np.array(stats, dtype=np.int64).reshape(len(rows), -1),
            noop=np.array([r.example.is_noop for r in rows], dtype=bool),
            changed=np.array([r.changed for r in rows], dtype=bool),
            right=np.array([r.right for r in rows], dtype=bool),
            overrun=_optional(r.overrun for r in rows),
            verbose=_optional(r.verbose for r in rows),
            fallback=_optional(r.fallback for r in rows),
            latency_s=_optional(r.latency_s for r in rows),
            new_tokens=_optional(r.new_tokens for r in rows),
        )

    def __len__(self) -> int:
        return len(self.exact)

    def take(self, idx: np.ndarray) -> Columns:
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)})


# ---------------------------------------------------------------- aggregate metrics


@dataclass(frozen=True)
class Metric:
    """An aggregate metric: a function of :class:`Columns`; its docstring is the definition."""

    name: str
    label: str
    fn: Callable[[Columns], float | None]
    higher_is_better: bool | None
    unit: str
    bootstrap: bool = True

    @property
    def definition(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def __call__(self, cols: Columns) -> float | None:
        return self.fn(cols) if len(cols) else None


METRICS: dict[str, Metric] = {}


def _metric(label: str, higher_is_better: bool | None, unit: str = "%", bootstrap: bool = True) -> Callable:
    def register(fn: Callable[[Columns], float | None]) -> Callable[[Columns], float | None]:
        METRICS[fn.__name__] = Metric(fn.__name__, label, fn, higher_is_better, unit, bootstrap)
        return fn
    return register


def _share(hits: np.ndarray, among: np.ndarray | None = None) -> float | None:
    """Mean of a 0/1 column over the selected examples; None when none is selected or a value is unknown."""
    if among is not None:
        hits = hits[among]
    if hits.size == 0 or np.isnan(hits.astype(float)).any():
        return None
    return float(hits.mean())


@_metric("Exact match", True)
def exact_match(c: Columns) -> float | None:
    """Share of examples whose prediction equals ``span_out`` character for character, whitespace
    included (the span is spliced back into the text verbatim, so no normalization is applied)."""
    return _share(c.exact)


@_metric("Levenshtein (norm.)", False, unit="")
def levenshtein(c: Columns) -> float | None:
    """Mean over examples of the normalized Levenshtein distance between prediction and ``span_out``:
    the number of single-character insertions, deletions and substitutions, divided by the length of
    the longer of the two strings (rapidfuzz ``Levenshtein.normalized_distance``); 0 is a perfect match."""
    return float(c.levenshtein.mean())


@_metric("chrF", True, unit="")
def chrf(c: Columns) -> float | None:
    """Corpus-level chrF (sacrebleu defaults: character n-grams up to 6, beta 2, score 0–100) of the
    predictions against ``span_out``: n-gram statistics are summed over all examples, then one
    F-score is computed. predictions.jsonl carries each example's sentence-level chrF."""
    return chrf_from_stats(c.chrf_stats.sum(axis=0))


@_metric("Overrun rate", False)
def overrun_rate(c: Columns) -> float | None:
    """Share of examples whose post-processed candidate was longer than the length cap
    (``spantune.postprocess``'s ``overrun`` flag; such an output falls back to ``span_in``)."""
    return _share(c.overrun)


@_metric("Verbose rate", False)
def verbose_rate(c: Columns) -> float | None:
    """Share of examples where post-processing had to remove non-whitespace content (another line,
    an echoed label, wrapping quotes): ``spantune.postprocess``'s ``verbose`` flag."""
    return _share(c.verbose)


@_metric("Fallback rate", False)
def fallback_rate(c: Columns) -> float | None:
    """Share of examples where post-processing returned ``span_in`` unchanged because the output could
    not be trusted (overrun or empty): ``spantune.postprocess``'s ``fallback`` flag."""
    return _share(c.fallback)


@_metric("No-op false edits", False)
def noop_false_edit_rate(c: Columns) -> float | None:
    """Among examples that need no change (``span_out == span_in``), the share whose prediction
    differs from ``span_in``; undefined (None) when the data has no such example."""
    return _share(c.changed, among=c.noop)


@_metric("Missed fixes", False)
def missed_fix_rate(c: Columns) -> float | None:
    """Among examples that need a change (``span_out != span_in``), the share whose prediction equals
    ``span_in`` (the error was left as it was); undefined (None) when every example is a no-op."""
    return _share(~c.changed, among=~c.noop)


@_metric("Edit precision", True)
def edit_precision(c: Columns) -> float | None:
    """Among examples whose prediction differs from ``span_in`` (the system changed the span), the share
    whose prediction is exactly right: equal to ``span_out`` or to one of the example's further accepted
    ``references``; undefined (None) when the system changed nothing."""
    return _share(c.right, among=c.changed)


@_metric("Edit recall", True)
def edit_recall(c: Columns) -> float | None:
    """Among examples that need a change (``span_out != span_in``), the share the system changed into
    exactly ``span_out`` or one of the example's further accepted ``references``; undefined (None) when
    every example is a no-op."""
    return _share(c.right & c.changed, among=~c.noop)


def _latency_percentile(c: Columns, q: float) -> float | None:
    if np.isnan(c.latency_s).any():
        return None
    return float(np.percentile(c.latency_s * 1000.0, q))


@_metric("Latency p50", None, unit="ms", bootstrap=False)
def latency_p50_ms(c: Columns) -> float | None:
    """Median wall-clock time to correct one span, in milliseconds: from the start of the system's
    call (prompt rendering included) to the post-processed text. Machine-dependent, so no CI."""
    return _latency_percentile(c, 50)


@_metric("Latency p95", None, unit="ms", bootstrap=False)
def latency_p95_ms(c: Columns) -> float | None:
    """95th percentile (numpy linear interpolation) of the per-span latency defined for
    ``latency_p50_ms``, in milliseconds."""
    return _latency_percentile(c, 95)


@_metric("Tokens/s", None, unit="tok/s", bootstrap=False)
def tokens_per_s(c: Columns) -> float | None:
    """Generated tokens divided by the summed per-span latency, over all examples; undefined when no
    token was generated (identity, rule-based peers)."""
    tokens, seconds = c.new_tokens.sum(), c.latency_s.sum()
    if np.isnan(tokens) or np.isnan(seconds) or tokens == 0 or seconds <= 0:
        return None
    return float(tokens / seconds)


def point_metrics(cols: Columns) -> dict[str, float | None]:
    """Every metric's value on ``cols``."""
    return {name: m(cols) for name, m in METRICS.items()}


def compute_metrics(examples: Sequence[SpanExample], predictions: Sequence[Any]) -> dict[str, float | None]:
    """Point estimates of every metric for ``predictions`` (str, PostResult or Prediction) on ``examples``.

    The light entry point for in-training evaluation; flag metrics are None for plain strings.
    """
    rows = [make_row(ex, p) for ex, p in zip(examples, predictions, strict=True)]
    return point_metrics(Columns.from_rows(rows))
