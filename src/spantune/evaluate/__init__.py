"""Evaluation: metrics defined once, reports, gates and ``spantune eval`` (see docs/metrics.md)."""
