"""The keep margin: leave the span alone unless the model prefers its edit by a margin (docs/keep-margin.md).

A generative editor's greedy answer can be a coin toss between editing and keeping. Scoring both replies
under the same prompt — teacher-forced, summed log-probabilities of the reply tokens and the end-of-turn
token — turns that into a precision knob, like GECToR's confidence bias. The margin is per reply token
(:func:`edit_preference`): a whole-reply margin asks a six-token rewrite and a one-token fix for the same
number of nats, and calibrated the same way it scored lower real-dev exact match on all three models measured
(benchmarks/RESULTS.md, run 10). Every backend (PyTorch, onnxruntime, ``js/src/keep.js``) builds the same two
token sequences with :func:`scored_sequences`'s rules and decides with :func:`keeps_span`; only the forward pass
differs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spantune.errors import InputError, SpantuneError
from spantune.infer.base import Prediction
from spantune.infer.decode import encode_answer, stop_token_ids
from spantune.models import EMBEDDED, EXPORT_PREFIXES, adapter_dir, run_folder
from spantune.postprocess import PostResult
from spantune.schema import SpanExample

#: Logits of a token sequence from row ``start`` on: ``forward(ids, start)[j]`` predicts token ``start + j + 1``
#: (float array [len - start, vocab]); the rows before are never needed, so a backend may run them from a cache.
Forward = Callable[[list[int], int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scored:
    """The two teacher-forced sequences: shared prompt ids, then each reply (end-of-turn included)."""

    prompt_ids: list[int]
    keep_reply: list[int]
    answer_reply: list[int]


def scored_sequences(tokenizer: Any, example: SpanExample, answer_ids: Sequence[int]) -> Scored:
    """The keep reply exactly as training encodes ``span_in`` as the answer (:func:`encode_answer`), and the
    model's raw answer ids followed by that same end-of-turn token."""
    keep = encode_answer(tokenizer, dataclasses.replace(example, span_out=example.span_in), stop_token_ids(tokenizer))
    return Scored(keep.prompt, keep.reply, [*answer_ids, keep.reply[-1]])


def reply_logprob(logits: np.ndarray, ids: Sequence[int], prompt_len: int) -> float:
    """Sum over the reply tokens ``ids[prompt_len:]`` of their log-softmax under the previous position's
    logits, in float64 (the formula of js/src/keep.js's ``replyLogprob``)."""
    rows = np.asarray(logits[prompt_len - 1:len(ids) - 1], dtype=np.float64)
    top = rows.max(axis=1)
    log_norm = top + np.log(np.exp(rows - top[:, None]).sum(axis=1))
    targets = np.asarray(ids[prompt_len:])
    return float((rows[np.arange(len(targets)), targets] - log_norm).sum())


#: What a keep margin counts (keep_margin.json's ``unit``, config.json's ``spantune.keep_margin_unit``).
KEEP_MARGIN_UNIT = "nats/token"


def edit_preference(answer_logprob: float, keep_logprob: float, answer_tokens: int, keep_tokens: int) -> float:
    """How much the model prefers its answer to the unchanged span, in nats per reply token: the log-probability
    difference of the two replies over their mean length (end-of-turn tokens counted)."""
    return (answer_logprob - keep_logprob) / ((answer_tokens + keep_tokens) / 2)


def keeps_span(answer: str, span_in: str, preference: float, margin: float) -> bool:
    """True when the margin is on (> 0), the answer edits the span, and the model prefers the edit by less
    than ``margin`` nats per token (:func:`edit_preference`)."""
    return margin > 0 and answer != span_in and preference < margin


@dataclasses.dataclass(frozen=True)
class KeepMargin:
    """A backend's keep-margin setting: ``margin`` in nats per reply token (0 = off: today's answers), and
    ``score`` to record the scores even at margin 0, so one decoding pass serves a whole margin sweep."""

    margin: float = 0.0
    score: bool = False

    def __post_init__(self) -> None:
        if not (self.margin >= 0 and np.isfinite(self.margin)):
            raise SpantuneError(f"keep_margin: {self.margin!r} is not a finite number of {KEEP_MARGIN_UNIT} >= 0")

    @property
    def active(self) -> bool:
        return self.margin > 0 or self.score

    def apply(self, pred: Prediction, example: SpanExample, answer_ids: Sequence[int], tokenizer: Any,
              forward: Forward) -> Prediction:
        """``pred`` scored (when active and it edits the span), and replaced by ``span_in`` when
        :func:`keeps_span` says so. An answer that leaves the span unchanged is not scored (nothing to
        keep): its log-probabilities stay None."""
        if not self.active or pred.text == example.span_in:
            return pred
        seqs = scored_sequences(tokenizer, example, answer_ids)
        n = len(seqs.prompt_ids)
        keep_ids, answer_full = seqs.prompt_ids + seqs.keep_reply, seqs.prompt_ids + seqs.answer_reply
        keep_lp = reply_logprob(forward(keep_ids, n - 1), keep_ids[n - 1:], 1)
        answer_lp = reply_logprob(forward(answer_full, n - 1), answer_full[n - 1:], 1)
        preference = edit_preference(answer_lp, keep_lp, len(seqs.answer_reply), len(seqs.keep_reply))
        kept = keeps_span(pred.text, example.span_in, preference, self.margin)
        result = PostResult(example.span_in, verbose=pred.result.verbose) if kept else pred.result
        return dataclasses.replace(pred, result=result, kept=kept, keep_logprob=keep_lp, answer_logprob=answer_lp,
                                   edit_preference=preference)


#: The calibration ``spantune calibrate`` writes into a model's folder (docs/keep-margin.md).
KEEP_MARGIN_FILE = "keep_margin.json"
#: Systems without a model: no folder, no calibration, margin 0.
NO_MODEL_SYSTEMS = ("identity", "harper")


def margin_folder(spec: str) -> Path | None:
    """Where ``spec``'s calibration lives: a training run's folder (beside its adapter; the adapter folder for
    a bare adapter), a model or export folder (``onnx:DIR`` and ``node:DIR`` too); None for identity/harper,
    ``embedded`` and hub ids, which have no folder of their own."""
    if spec in (*NO_MODEL_SYSTEMS, EMBEDDED):
        return None
    prefix = next((p for p in EXPORT_PREFIXES if spec.startswith(p)), "")
    path = Path(spec[len(prefix):]).expanduser()
    if not path.is_dir():
        return None
    adapter = adapter_dir(path)
    return path if adapter is None else run_folder(adapter) or path


def calibration_file(spec: str) -> Path | None:
    """``spec``'s keep_margin.json, if its folder (:func:`margin_folder`) holds one."""
    folder = margin_folder(spec)
    path = folder / KEEP_MARGIN_FILE if folder is not None else None
    return path if path is not None and path.is_file() else None


def read_calibration(path: Path) -> dict[str, Any]:
    """A keep_margin.json, checked: its ``unit`` must be :data:`KEEP_MARGIN_UNIT` (files from before the per-token
    margin count whole-reply nats) and its ``margin`` a finite number >= 0."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpantuneError(f"{path}: cannot read the keep-margin calibration: {exc}") from None
    margin = record.get("margin") if isinstance(record, dict) else None
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (margin >= 0 and math.isfinite(margin)):
        raise InputError(path, None, "margin", f"{margin!r} is not a finite number of {KEEP_MARGIN_UNIT} >= 0")
    if record.get("unit") != KEEP_MARGIN_UNIT:
        raise InputError(path, None, "unit", f"{record.get('unit')!r}, not {KEEP_MARGIN_UNIT!r}: a margin in "
                         "whole-reply nats from an older spantune; run `spantune calibrate` again")
    return record


def resolve_keep(spec: str, explicit: float | None, score: bool = False) -> tuple[KeepMargin, str]:
    """The keep margin a command uses, and where it came from: ``explicit`` (``--keep-margin``, 0 = off) when
    given, else the model's calibrated margin (its folder's keep_margin.json), else 0."""
    if explicit is not None:
        return KeepMargin(explicit, score), "--keep-margin"
    path = calibration_file(spec)
    if path is None:
        return KeepMargin(0.0, score), f"off: no {KEEP_MARGIN_FILE} for {spec}"
    return KeepMargin(float(read_calibration(path)["margin"]), score), f"calibrated: {path}"
