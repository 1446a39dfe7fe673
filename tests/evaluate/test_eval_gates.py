"""Gate logic on fixture predictions, gate config errors, and the CLI's exit code and message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spantune.cli import main
from spantune.errors import SpantuneError
from spantune.evaluate.gates import Gates, check_gates, load_gates
from spantune.evaluate.report import build_report, write_report
from spantune.evaluate.runner import read_predictions

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
ROOT = HERE.parents[1]
PREDICTIONS = FIXTURES / "predictions.jsonl"


@pytest.fixture(scope="module")
def report() -> dict:
    """Report on the hand-made predictions: EM 5/10, verbose 2/10, overrun 1/10, fallback 2/10,
    no-op false edits 2/3, missed fixes 3/7, typo EM 1/2, noop-tag EM 1/2 (see fixtures/predictions.jsonl)."""
    rows = read_predictions(PREDICTIONS)
    return build_report(rows, system={"spec": "fixture", "kind": "fixture"},
                        data={"path": str(PREDICTIONS), "sha256": "-"}, n_selected=len(rows), n_boot=50)


def test_fixture_metrics_are_the_hand_computed_ones(report):
    m = {k: v["value"] for k, v in report["metrics"].items()}
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["verbose_rate"] == pytest.approx(0.2)
    assert m["overrun_rate"] == pytest.approx(0.1)
    assert m["fallback_rate"] == pytest.approx(0.2)
    assert m["noop_false_edit_rate"] == pytest.approx(2 / 3)
    assert m["missed_fix_rate"] == pytest.approx(3 / 7)
    assert report["breakdowns"]["tag"]["typo"]["metrics"]["exact_match"] == pytest.approx(0.5)
    assert report["breakdowns"]["tag"]["noop"]["metrics"]["exact_match"] == pytest.approx(0.5)
    assert report["run"]["flag_violations"] == 0


def test_failed_gates_say_which_and_by_how_much(report):
    gates = Gates(em_min=0.6, verbose_max=0.25, overrun_max=0.0, tag_em_min={"typo": 0.4, "noop": 0.9})
    results = {r.gate: r for r in check_gates(gates, report)}
    assert not results["em_min"].passed
    assert results["em_min"].message == "em_min: exact match 50.0% is 10.0 points below the minimum 60.0%"
    assert results["verbose_max"].passed
    assert not results["overrun_max"].passed
    assert results["overrun_max"].message == "overrun_max: overrun rate 10.0% is 10.0 points above the maximum 0.0%"
    assert results["tag_em_min.typo"].passed
    assert not results["tag_em_min.noop"].passed
    assert "50.0% is 40.0 points below the minimum 90.0%" in results["tag_em_min.noop"].message


def test_missing_tag_and_undefined_metric_fail(report):
    results = check_gates(Gates(tag_em_min={"word_order": 0.1}), report)
    assert [r.passed for r in results] == [False]
    assert "no example has tag 'word_order'" in results[0].message
    no_noops = {**report, "metrics": {**report["metrics"], "noop_false_edit_rate": {"value": None, "ci": None}}}
    (r,) = check_gates(Gates(noop_false_edit_max=0.1), no_noops)
    assert not r.passed and "undefined" in r.message


def test_structural_gates(report):
    gates = Gates(min_examples=10, require_consistent_flags=True)
    assert all(r.passed for r in check_gates(gates, report))
    broken = {**report, "run": {**report["run"], "flag_violations": 1}}
    failed = {r.gate: r.message for r in check_gates(Gates(min_examples=11, require_consistent_flags=True), broken)
              if not r.passed}
    assert failed == {
        "min_examples": "min_examples: 10 examples evaluated, fewer than 11",
        "require_consistent_flags": "require_consistent_flags: 1 prediction(s) with missing or inconsistent "
                                    "post-processing flags",
    }


def test_shipped_gate_files(report):
    strict = {r.gate for r in check_gates(load_gates(ROOT / "configs" / "gates.yaml"), report) if not r.passed}
    assert {"em_min", "verbose_max", "overrun_max", "noop_false_edit_max", "min_examples"} <= strict
    ci = check_gates(load_gates(ROOT / "configs" / "gates-ci.yaml"), report)
    assert ci and all(r.passed for r in ci)
    assert {r.gate for r in ci} == {"min_examples", "require_consistent_flags"}


@pytest.mark.parametrize("text, message", [
    ("em_mn: 0.5\n", "unknown config key em_mn"),
    ("em_min: 1.5\n", "config key em_min: expected a fraction in [0, 1], got 1.5"),
    ("verbose_max: lots\n", "config key verbose_max"),
    ("tag_em_min: {typo: high}\n", "config key tag_em_min.typo: expected a fraction"),
])
def test_bad_gate_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    with pytest.raises(SpantuneError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_gates(path)


def test_cli_gate_failure_exits_1_with_readable_lines(tmp_path, report, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(PREDICTIONS, run / "predictions.jsonl")
    write_report(run, report)
    gates = tmp_path / "gates.yaml"
    gates.write_text("em_min: 0.6\nmissed_fix_max: 0.5\n")
    assert main(["eval", "gate", str(run), "--gates", str(gates)]) == 1
    err = capsys.readouterr().err
    assert "gate failed: em_min: exact match 50.0% is 10.0 points below the minimum 60.0%" in err
    assert "missed_fix_max" not in err.replace("gates: 1/2 passed", "")
    assert "gates: 1/2 passed" in err
    assert "Traceback" not in err
    gates.write_text("em_min: 0.5\n")
    assert main(["eval", "gate", str(run), "--gates", str(gates)]) == 0
