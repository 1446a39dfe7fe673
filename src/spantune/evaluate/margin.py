"""Keep-margin sweep from one scored decoding pass (``spantune eval --score-keep``): every margin's rows,
metrics per source, and the smallest margin that leaves enough correct spans alone (docs/keep-margin.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from spantune.errors import InputError
from spantune.evaluate.metrics import Columns, EvalRow, group_positions, point_metrics
from spantune.infer.keep import keeps_span
from spantune.postprocess import postprocess

#: What the sweep reports per margin and source.
SWEEP_METRICS = ("exact_match", "edit_precision", "edit_recall", "noop_false_edit_rate")
ALL = "(all)"


def answer_of(row: EvalRow) -> str:
    """The post-processed greedy answer before any keep decision (a kept row stored ``span_in``)."""
    return postprocess(row.raw or "", row.example.span_in).text if row.kept else row.prediction


def check_scored(rows: Sequence[EvalRow], path: str) -> None:
    """Every row whose answer edits the span must carry both log-probabilities."""
    for i, row in enumerate(rows, 1):
        if answer_of(row) != row.example.span_in and None in (row.keep_logprob, row.answer_logprob):
            raise InputError(path, i, "keep_logprob", "missing on an edited span: run `spantune eval` "
                             "with --score-keep (or --keep-margin)")


def at_margin(row: EvalRow, margin: float) -> EvalRow:
    """``row`` as the keep margin ``margin`` would have answered it."""
    answer, span_in = answer_of(row), row.example.span_in
    scored = row.keep_logprob is not None and row.answer_logprob is not None
    kept = scored and keeps_span(answer, span_in, row.answer_logprob, row.keep_logprob, margin)
    return dataclasses.replace(row, prediction=span_in if kept else answer, kept=kept if scored else None)


def sweep(rows: Sequence[EvalRow], margins: Sequence[float]) -> dict[str, list[dict[str, Any]]]:
    """Per source (and ``(all)``): for each margin, the :data:`SWEEP_METRICS` and the group's size."""
    groups = {ALL: None, **group_positions(rows, "source")}
    out: dict[str, list[dict[str, Any]]] = {g: [] for g in groups}
    for m in margins:
        cols = Columns.from_rows([at_margin(r, m) for r in rows])
        for group, pos in groups.items():
            sub = cols if pos is None else cols.take(pos)
            values = point_metrics(sub)
            out[group].append({"margin": m, "n": len(sub), **{k: values[k] for k in SWEEP_METRICS}})
    return out


def smallest_margin(points: Sequence[dict[str, Any]], keep_share: float = 0.95) -> float | None:
    """The smallest swept margin whose no-op false edits leave at least ``keep_share`` of the spans that
    need no fix unchanged; None when no swept margin does (or the data has no such span)."""
    ok = [p["margin"] for p in points
          if p["noop_false_edit_rate"] is not None and 1 - p["noop_false_edit_rate"] >= keep_share]
    return min(ok, default=None)
