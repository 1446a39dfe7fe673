"""Evaluation: metrics defined once, reports, gates and ``spantune eval`` (see docs/metrics.md).

:func:`run_eval` is the one evaluation every caller runs (the CLI, calibration, the demo)."""

from spantune.evaluate.evaluation import EvalInterrupted, Report, run_eval

__all__ = ["EvalInterrupted", "Report", "run_eval"]
