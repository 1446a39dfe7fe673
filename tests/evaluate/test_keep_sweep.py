"""Keep-margin sweep: hand-counted metrics per margin and source, and benchmarks/keep_margin.py on a tiny model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spantune.errors import InputError
from spantune.evaluate.margin import at_margin, check_scored, smallest_margin, sweep
from spantune.evaluate.metrics import EvalRow
from spantune.schema import SpanExample, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _row(span_in: str, span_out: str, source: str, prediction: str, raw: str, kept: bool | None,
         preference: float | None) -> EvalRow:
    ex = SpanExample(ctx_before="A ", span_in=span_in, ctx_after=" b.", span_out=span_out, source=source)
    return EvalRow(ex, prediction, raw=raw, overrun=False, verbose=False, fallback=False, kept=kept,
                   edit_preference=preference)


ROWS = [
    _row("teh", "the", "fce", "the", "the", False, 2.0),            # edit preferred by 2 nats per token
    _row("fine", "fine", "fce", "fine!", "fine!", False, 0.5),      # false edit, preferred by 0.5
    _row("good", "good", "synthetic", "good", "good", None, None),  # left alone: never scored
    _row("it are", "it is", "synthetic", "it are", "it is", True, 4.0),  # kept in the run; by 4
]


def test_at_margin_restores_or_keeps_answers():
    assert [at_margin(r, 0.0).prediction for r in ROWS] == ["the", "fine!", "good", "it is"]
    assert [at_margin(r, 3.0).prediction for r in ROWS] == ["teh", "fine", "good", "it is"]
    assert [at_margin(r, 3.0).kept for r in ROWS] == [True, True, None, False]


def test_sweep_hand_counted_per_source():
    result = sweep(ROWS, [0.0, 1.0, 3.0, 5.0])
    em = [p["exact_match"] for p in result["(all)"]]
    assert em == pytest.approx([3 / 4, 4 / 4, 3 / 4, 2 / 4])
    # changed at 0: the, fine!, it is -> right: the, it is; at 5 nothing is changed
    assert [p["edit_precision"] for p in result["(all)"]] == pytest.approx([2 / 3, 1.0, 1.0, None])
    assert [p["edit_recall"] for p in result["(all)"]] == pytest.approx([1.0, 1.0, 1 / 2, 0.0])
    assert [p["noop_false_edit_rate"] for p in result["(all)"]] == pytest.approx([1 / 2, 0.0, 0.0, 0.0])
    assert [p["noop_false_edit_rate"] for p in result["fce"]] == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert [p["edit_recall"] for p in result["synthetic"]] == pytest.approx([1.0, 1.0, 1.0, 0.0])
    assert {g: pts[0]["n"] for g, pts in result.items()} == {"(all)": 4, "fce": 2, "synthetic": 2}
    assert smallest_margin(result["(all)"]) == 1.0
    assert smallest_margin(result["synthetic"]) == 0.0
    assert smallest_margin(result["fce"][:1]) is None


def test_unscored_edit_is_a_clear_error():
    bad = dataclasses.replace(ROWS[0], edit_preference=None, kept=None)
    with pytest.raises(InputError, match=r"^p\.jsonl:2: edit_preference: missing"):
        check_scored([ROWS[2], bad], "p.jsonl")


def test_benchmark_sweeps_one_decoding_pass(tmp_path: Path):
    from support.export_fixture import e2e_examples, lively_tiny_model

    model = lively_tiny_model(tmp_path / "model")
    data = tmp_path / "spans.jsonl"
    write_jsonl(data, [dataclasses.replace(ex, id=f"e{i}", source=("fce", "synthetic")[i % 2])
                       for i, ex in enumerate(e2e_examples())])
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "keep_margin.py"), "--system", str(model),
                           "--data", str(data), "--out", str(out), "--max-margin", "40", "--step", "10"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "keep_margin.json").read_text())
    assert set(result["sweep"]) == {"(all)", "fce", "synthetic"}
    points = result["sweep"]["(all)"]
    assert [p["margin"] for p in points] == [0, 10, 20, 30, 40]
    report = json.loads((out / "eval" / "report.json").read_text())
    assert points[0]["noop_false_edit_rate"] == report["metrics"]["noop_false_edit_rate"]["value"] > 0
    # every example is a no-op here, so the false-edit rate can only fall as the margin grows
    rates = [p["noop_false_edit_rate"] for p in points]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    assert "smallest margin keeping >= 95% of no-fix spans unchanged, (all):" in proc.stdout
    assert (out / "keep_margin.png").stat().st_size > 0
    assert "| margin (nats/token) |" in (out / "keep_margin.md").read_text()
