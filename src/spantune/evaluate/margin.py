"""Keep-margin sweep from one scored decoding pass (``spantune eval --score-keep``): every margin's rows,
metrics per source, and the smallest margin that leaves enough correct spans alone (docs/keep-margin.md)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist
from pathlib import Path
from typing import Any

import numpy as np

from spantune.errors import InputError, SpantuneError
from spantune.evaluate.bootstrap import group_positions
from spantune.evaluate.metrics import METRICS, Columns, EvalRow, point_metrics
from spantune.evaluate.report import fmt, markdown_table
from spantune.io import atomic_write
from spantune.infer.keep import KEEP_MARGIN_UNIT, keeps_span
from spantune.postprocess import postprocess

#: What the sweep reports per margin and source.
SWEEP_METRICS = ("exact_match", "edit_precision", "edit_recall", "noop_false_edit_rate")
ALL = "(all)"
#: The default grid: 0 to 2 nats per token by 0.025 (the benchmark's and ``spantune calibrate``'s); trained
#: models calibrated to 0.275-0.45 (benchmarks/RESULTS.md, run 10).
DEFAULT_MAX_MARGIN = 2.0
DEFAULT_STEP = 0.025


def answer_of(row: EvalRow) -> str:
    """The post-processed greedy answer before any keep decision (a kept row stored ``span_in``)."""
    return postprocess(row.raw or "", row.example.span_in).text if row.kept else row.prediction


def check_scored(rows: Sequence[EvalRow], path: str) -> None:
    """Every row whose answer edits the span must carry its edit preference."""
    for i, row in enumerate(rows, 1):
        if answer_of(row) != row.example.span_in and row.edit_preference is None:
            raise InputError(path, i, "edit_preference", "missing on an edited span: run `spantune eval` "
                             "with --score-keep (or --keep-margin)")


def at_margin(row: EvalRow, margin: float) -> EvalRow:
    """``row`` as the keep margin ``margin`` would have answered it."""
    answer, span_in = answer_of(row), row.example.span_in
    scored = row.edit_preference is not None
    kept = scored and keeps_span(answer, span_in, row.edit_preference, margin)
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
            out[group].append({"margin": m, "n": len(sub), "n_noop": int(sub.noop.sum()),
                               **{k: values[k] for k in SWEEP_METRICS}})
    return out


def kept_lower_bound(point: dict[str, Any], confidence: float) -> float:
    """The share of no-fix spans a swept point keeps unchanged, or with ``confidence`` > 0 its one-sided lower
    confidence bound (Wilson score): the share the margin keeps on spans the sample never saw, at that confidence.
    A margin chosen on the observed share alone kept 95.0 % of 200 calibration spans and 93.9 % of 423 others
    (benchmarks/RESULTS.md, runs 8 and 9)."""
    share = 1 - point["noop_false_edit_rate"]
    if confidence <= 0:
        return share
    n, z = point["n_noop"], NormalDist().inv_cdf(confidence)
    centre, spread = share + z * z / (2 * n), z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def smallest_margin(points: Sequence[dict[str, Any]], keep_share: float = 0.95,
                    confidence: float = 0.0) -> float | None:
    """The smallest swept margin that leaves at least ``keep_share`` of the spans that need no fix unchanged
    (its lower confidence bound, with ``confidence`` > 0: :func:`kept_lower_bound`); None when no swept margin
    does (or the data has no such span)."""
    ok = [p["margin"] for p in points
          if p["noop_false_edit_rate"] is not None and kept_lower_bound(p, confidence) >= keep_share]
    return min(ok, default=None)


def margin_grid(max_margin: float = DEFAULT_MAX_MARGIN, step: float = DEFAULT_STEP) -> list[float]:
    """0 to ``max_margin`` by ``step``, rounded so that grid points print and compare exactly."""
    if step <= 0 or max_margin < 0:
        raise SpantuneError("the margin grid needs a step > 0 and a maximum >= 0")
    return [round(float(m), 6) for m in np.arange(0.0, max_margin + step / 2, step)]


def _calibration_metrics(point: dict[str, Any], confidence: float) -> dict[str, Any]:
    """One swept point as calibration records it: the share of no-fix spans kept unchanged (and its lower
    bound), and the rest."""
    return {"noop_kept": 1 - point["noop_false_edit_rate"], "noop_kept_bound": kept_lower_bound(point, confidence),
            "exact_match": point["exact_match"], "edit_precision": point["edit_precision"],
            "edit_recall": point["edit_recall"]}


def calibration(points: Sequence[dict[str, Any]], target: float, confidence: float = 0.0) -> dict[str, Any]:
    """The calibrated margin from a sweep's ``(all)`` points (margin 0 first): the smallest that keeps at least
    ``target`` of the spans needing no fix unchanged (at ``confidence``: :func:`kept_lower_bound`), else the
    largest swept (``reached`` False); its metrics and margin 0's."""
    if points[0]["noop_false_edit_rate"] is None:
        raise SpantuneError("the data has no span that needs no fix (span_out == span_in): nothing to calibrate on")
    found = smallest_margin(points, target, confidence)
    chosen = next(p for p in points if p["margin"] == (points[-1]["margin"] if found is None else found))
    return {"margin": chosen["margin"], "target": target, "confidence": confidence, "reached": found is not None,
            **_calibration_metrics(chosen, confidence), "at_zero": _calibration_metrics(points[0], confidence),
            "n": chosen["n"], "n_noop": chosen["n_noop"]}


def sweep_markdown(result: dict[str, list[dict[str, Any]]], best: dict[str, float | None], keep_share: float,
                   confidence: float = 0.0) -> str:
    """One table per source: the :data:`SWEEP_METRICS` at each margin, under the smallest margin that keeps
    ``keep_share`` of the no-fix spans (at ``confidence``)."""
    bound = f" (the lower bound at {100 * confidence:g} % confidence)" if confidence > 0 else ""
    lines = []
    for group, points in result.items():
        found = best[group]
        lines += [f"### {group} (n = {points[0]['n']})", "",
                  f"Smallest margin leaving ≥ {100 * keep_share:.0f} % of no-fix spans unchanged{bound}: "
                  + ("none in the grid" if found is None else f"{found:g} {KEEP_MARGIN_UNIT}"), ""]
        lines += markdown_table([f"margin ({KEEP_MARGIN_UNIT})", *(METRICS[k].label for k in SWEEP_METRICS)],
                                [[f"{p['margin']:g}", *(fmt(k, p[k]) for k in SWEEP_METRICS)] for p in points])
        lines.append("")
    return "\n".join(lines)


def plot_sweep(result: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """One panel per source: the four metrics (percent) against the margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result), figsize=(4.5 * len(result), 3.8), squeeze=False, sharey=True)
    for ax, (group, points) in zip(axes[0], result.items()):
        margins = [p["margin"] for p in points]
        for key in SWEEP_METRICS:
            ax.plot(margins, [np.nan if p[key] is None else 100 * p[key] for p in points], label=METRICS[key].label)
        ax.set_title(f"{group} (n={points[0]['n']})")
        ax.set_xlabel(f"keep margin ({KEEP_MARGIN_UNIT})")
        ax.set_ylim(-2, 102)
    axes[0][0].set_ylabel("%")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def calibrate(model: str, data: str | Path, margins: Sequence[float], *, target: float = 0.95,
              confidence: float = 0.95, out: Path | None = None, limit: int | None = None, dtype: str | None = None, device: str = "auto",
              seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """Decode ``data`` once with keep scoring (margin 0), sweep ``margins``, and write the calibrated margin
    (keep_margin.json), the sweep table and its plot into the model's folder (``out`` when given), where
    ``spantune fix``, ``eval`` and ``export`` pick it up. Returns that folder and the record."""
    from spantune.evaluate.evaluation import run_eval
    from spantune.evaluate.runner import PREDICTIONS, read_predictions
    from spantune.infer.keep import KEEP_MARGIN_FILE, NO_MODEL_SYSTEMS, margin_folder
    from spantune.io import atomic_dir, sha256_file, write_json
    from spantune.models import EXPORT_PREFIXES

    if not 0 < target <= 1:
        raise SpantuneError(f"--target {target}: must be a share in (0, 1], e.g. 0.95")
    if not 0 <= confidence < 1:
        raise SpantuneError(f"--confidence {confidence}: must be in [0, 1), e.g. 0.95 (0: the observed share)")
    if model in NO_MODEL_SYSTEMS:
        raise SpantuneError(f"--model {model}: calibrate needs a model with log-probabilities")
    if model.startswith(EXPORT_PREFIXES) and out is None:
        raise SpantuneError(f"--model {model}: calibrate the model it was exported from and export again (the "
                            "export carries the margin to onnxruntime and JS), or pass --out DIR")
    folder = out if out is not None else margin_folder(model)
    if folder is None:
        raise SpantuneError(f"--model {model}: not a model or run folder, so there is no folder to keep its "
                            "calibration in; pass --out DIR (and later --keep-margin M explicitly)")
    with atomic_dir(folder / "keep_margin_eval") as run:
        run_eval(model, data, out=run, limit=limit, dtype=dtype, device=device, keep_margin=0, score_keep=True,
                 n_boot=100, seed=seed)
        rows = read_predictions(run / PREDICTIONS)
        check_scored(rows, str(run / PREDICTIONS))
    result = sweep(rows, margins)
    record = {**calibration(result[ALL], target, confidence), "unit": KEEP_MARGIN_UNIT, "model": model,
              "data": {"path": str(data), "sha256": sha256_file(data)}, "limit": limit,
              "predictions": str(folder / "keep_margin_eval" / PREDICTIONS)}
    best = {group: smallest_margin(points, target, confidence) for group, points in result.items()}
    with atomic_write(folder / "keep_margin.md") as fh:
        fh.write(sweep_markdown(result, best, target, confidence))
    plot_sweep(result, folder / "keep_margin.png")
    write_json(folder / KEEP_MARGIN_FILE, record)
    return folder, record
