"""Quality and structural gates read from YAML and checked against a report.json.

Quality gates bound metrics (exact match at least x, verbose at most y, ...); structural gates
check that the run itself is sound (enough examples, post-processing flags consistent). A report
exists only once every selected example has a prediction, so a crash or Ctrl-C fails CI by itself.
A gate left out (null) is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spantune.config import load_config
from spantune.errors import SpantuneError
from spantune.evaluate.metrics import METRICS


@dataclass
class Gates:
    """Thresholds; rates are fractions in [0, 1]. ``None`` turns a gate off."""

    em_min: float | None = None
    verbose_max: float | None = None
    overrun_max: float | None = None
    fallback_max: float | None = None
    noop_false_edit_max: float | None = None
    missed_fix_max: float | None = None
    #: Minimum exact match per tag; a tag missing from the data fails its floor.
    tag_em_min: dict[str, float] = field(default_factory=dict)
    #: Structural: at least this many examples evaluated.
    min_examples: int | None = None
    #: Structural: post-processing flags present and consistent on every prediction (see report.flag_violations).
    require_consistent_flags: bool = False


#: Metric gates: config key → (metric name, True for a lower bound).
METRIC_GATES = {
    "em_min": ("exact_match", True),
    "verbose_max": ("verbose_rate", False),
    "overrun_max": ("overrun_rate", False),
    "fallback_max": ("fallback_rate", False),
    "noop_false_edit_max": ("noop_false_edit_rate", False),
    "missed_fix_max": ("missed_fix_rate", False),
}


@dataclass
class GateResult:
    """One checked gate; ``message`` says what was measured against what, and by how much it missed."""

    gate: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "message": self.message}


def load_gates(path: str | Path) -> Gates:
    """Read a gates YAML file; unknown keys and bad values fail naming the key."""
    gates = load_config(Gates, path)
    for key in METRIC_GATES:
        value = getattr(gates, key)
        if value is not None and not 0.0 <= value <= 1.0:
            raise SpantuneError(f"{path}: config key {key}: expected a fraction in [0, 1], got {value}")
    for tag, value in gates.tag_em_min.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise SpantuneError(f"{path}: config key tag_em_min.{tag}: expected a fraction in [0, 1], got {value!r}")
    return gates


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _bound(gate: str, what: str, value: float | None, limit: float, lower: bool) -> GateResult:
    """Compare a rate with its limit; a missing value fails, since the gate cannot be shown to hold."""
    op = ">=" if lower else "<="
    if value is None:
        return GateResult(gate, False, f"{gate}: {what} is undefined on this data (needs {op} {_pct(limit)})")
    passed = value >= limit if lower else value <= limit
    if passed:
        return GateResult(gate, True, f"{gate}: {what} {_pct(value)} {op} {_pct(limit)}")
    miss = 100 * abs(value - limit)
    side = "below" if lower else "above"
    return GateResult(gate, False, f"{gate}: {what} {_pct(value)} is {miss:.1f} points {side} the "
                                   f"{'minimum' if lower else 'maximum'} {_pct(limit)}")


def check_gates(gates: Gates, report: dict[str, Any]) -> list[GateResult]:
    """Every enabled gate's result on ``report`` (the dict written to report.json)."""
    results: list[GateResult] = []
    metrics = report["metrics"]
    for key, (name, lower) in METRIC_GATES.items():
        limit = getattr(gates, key)
        if limit is not None:
            results.append(_bound(key, METRICS[name].label.lower(), metrics[name]["value"], limit, lower))
    by_tag = report["breakdowns"]["tag"]
    for tag, limit in sorted(gates.tag_em_min.items()):
        value = by_tag[tag]["metrics"]["exact_match"] if tag in by_tag else None
        gate = f"tag_em_min.{tag}"
        if tag not in by_tag:
            results.append(GateResult(gate, False, f"{gate}: no example has tag {tag!r}, so its floor "
                                                   f"{_pct(limit)} cannot be checked"))
        else:
            results.append(_bound(gate, f"exact match on tag {tag!r}", value, limit, True))
    run = report["run"]
    if gates.min_examples is not None:
        n = run["n_evaluated"]
        ok = n >= gates.min_examples
        results.append(GateResult("min_examples", ok, f"min_examples: {n} examples evaluated, "
                                                      f"{'at least' if ok else 'fewer than'} {gates.min_examples}"))
    if gates.require_consistent_flags:
        bad = run["flag_violations"]
        results.append(GateResult("require_consistent_flags", bad == 0,
                                  f"require_consistent_flags: {bad} prediction(s) with missing or inconsistent "
                                  "post-processing flags"))
    return results
