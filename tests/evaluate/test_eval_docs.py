"""docs/metrics.md states each metric exactly as its docstring in the code defines it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spantune.evaluate.metrics import METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _norm(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_definition_in_docs_matches_docstring(name):
    metric = METRICS[name]
    assert metric.definition, f"{name} has no docstring"
    doc = _norm(DOC.read_text(encoding="utf-8"))
    assert f"### {metric.label} (`{name}`)" in doc
    assert _norm(metric.definition) in doc
