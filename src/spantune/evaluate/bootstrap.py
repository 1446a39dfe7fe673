"""Uncertainty and slices of the metrics: bootstrap 95 % intervals, paired comparisons against a baseline,
and per-tag / length / language / source breakdowns (each metric itself is defined once in ``metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spantune.data.tags import LENGTH_BUCKETS
from spantune.evaluate.metrics import METRICS, Columns, EvalRow, exact_match, point_metrics, span_length_bucket
from spantune.schema import SpanExample


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples (with replacement) of ``n`` example positions, from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(values: list[float | None]) -> list[float] | None:
    """Percentile 95 % interval of bootstrap values; None when most resamples left it undefined."""
    kept = np.array([v for v in values if v is not None], dtype=float)
    if kept.size == 0 or kept.size < len(values) / 2:
        return None
    return [float(np.percentile(kept, 2.5)), float(np.percentile(kept, 97.5))]


def summarize(cols: Columns, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every metric's value with its bootstrap 95 % CI (None for machine-dependent metrics)."""
    samples = [cols.take(idx) for idx in bootstrap_indices(len(cols), n_boot, seed)] if len(cols) else []
    out: dict[str, dict[str, Any]] = {}
    for name, m in METRICS.items():
        ci = _interval([m(s) for s in samples]) if m.bootstrap and samples else None
        out[name] = {"value": m(cols), "ci": ci}
    return out


def compare(cols: Columns, base: Columns, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of ``cols`` minus ``base`` (same examples, same order) for every metric.

    A delta is significant when its 95 % CI excludes zero; machine-dependent metrics get no CI.
    """
    if len(cols) != len(base):
        raise ValueError("paired comparison needs the same examples in the same order")
    idxs = bootstrap_indices(len(cols), n_boot, seed) if len(cols) else []
    pairs = [(cols.take(i), base.take(i)) for i in idxs]
    out: dict[str, dict[str, Any]] = {}
    for name, m in METRICS.items():
        value, baseline = m(cols), m(base)
        delta = None if value is None or baseline is None else value - baseline
        ci = None
        if m.bootstrap and pairs and delta is not None:
            ci = _interval([None if (a := m(s)) is None or (b := m(t)) is None else a - b for s, t in pairs])
        significant = bool(ci is not None and (ci[0] > 0 or ci[1] < 0))
        out[name] = {"value": value, "baseline": baseline, "delta": delta, "ci": ci, "significant": significant}
    return out


# ---------------------------------------------------------------- breakdowns


GROUPINGS: dict[str, Callable[[SpanExample], list[str]]] = {
    "tag": lambda ex: list(ex.tags) or ["(untagged)"],
    "length": lambda ex: [span_length_bucket(ex.span_in)],
    "language": lambda ex: [ex.language or "(unknown)"],
    "source": lambda ex: [ex.source or "(unknown)"],
}


def group_positions(rows: Sequence[EvalRow], by: str) -> dict[str, np.ndarray]:
    """Positions of the rows in each group of ``by`` (an example with two tags is in both groups)."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        for g in GROUPINGS[by](row.example):
            groups.setdefault(g, []).append(i)
    if by == "length":
        return {g: np.array(groups[g]) for g in LENGTH_BUCKETS if g in groups}
    return {g: np.array(groups[g]) for g in sorted(groups)}


def breakdowns(rows: Sequence[EvalRow], cols: Columns, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per tag, length bucket, language and source: size, every metric, and exact match's 95 % CI."""
    out: dict[str, Any] = {}
    for by in GROUPINGS:
        out[by] = {}
        for group, pos in group_positions(rows, by).items():
            sub = cols.take(pos)
            samples = [sub.take(i) for i in bootstrap_indices(len(sub), n_boot, seed)]
            out[by][group] = {"n": len(sub), "metrics": point_metrics(sub),
                              "exact_match_ci": _interval([exact_match(s) for s in samples])}
    return out
