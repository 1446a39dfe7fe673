"""The calibrated keep margin (docs/keep-margin.md): `spantune calibrate` writes it into the model's folder, and
`spantune fix`, `spantune eval` (torch and onnx) and `spantune export` use it by default."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from spantune.cli import main
from spantune.errors import SpantuneError
from spantune.evaluate.margin import calibration, kept_lower_bound, margin_grid, smallest_margin
from spantune.evaluate.runner import read_predictions
from spantune.infer.keep import KEEP_MARGIN_FILE, keeps_span, margin_folder, resolve_keep
from spantune.postprocess import postprocess
from spantune.schema import write_jsonl
from support.export_fixture import e2e_examples, lively_tiny_model

TARGET = 0.85
#: The random tiny model prefers its edits by several nats per token, far beyond a trained model's ~0.3.
GRID = ["--max-margin", "60", "--step", "0.5"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A lively tiny model calibrated on the e2e examples (mostly spans that need no fix)."""
    root = tmp_path_factory.mktemp("calibrate")
    model = lively_tiny_model(root / "model")
    data = root / "spans.jsonl"
    write_jsonl(data, [dataclasses.replace(ex, id=f"e{i}") for i, ex in enumerate(e2e_examples())])
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--target", str(TARGET),
                 "--confidence", "0", "--device", "cpu", *GRID]) == 0
    return model, data, json.loads((model / KEEP_MARGIN_FILE).read_text(encoding="utf-8"))


def noop_kept_share(rows: list, margin: float) -> float:
    """Recomputed from the recorded predictions: the share of no-fix spans left unchanged at ``margin``."""
    noop = [r for r in rows if r.example.span_out == r.example.span_in]
    unchanged = 0
    for r in noop:
        answer = postprocess(r.raw or "", r.example.span_in).text
        scored = r.edit_preference is not None
        kept = scored and keeps_span(answer, r.example.span_in, r.edit_preference, margin)
        unchanged += kept or answer == r.example.span_in
    return unchanged / len(noop)


def test_calibrate_writes_the_smallest_margin_that_reaches_the_target(calibrated: tuple[Path, Path, dict]):
    model, data, record = calibrated
    rows = read_predictions(record["predictions"])
    assert record["data"]["path"] == str(data) and len(record["data"]["sha256"]) == 64
    assert record["n"] == len(rows) == len(e2e_examples())
    assert record["reached"] and record["target"] == TARGET
    assert noop_kept_share(rows, 0.0) < TARGET, "the tiny model must edit some no-fix spans, or 0 is trivial"
    assert record["margin"] > 0
    assert noop_kept_share(rows, record["margin"]) == pytest.approx(record["noop_kept"])
    assert record["noop_kept"] >= TARGET
    smaller = [m for m in margin_grid(60, 0.5) if m < record["margin"]]
    assert noop_kept_share(rows, smaller[-1]) < TARGET
    assert record["at_zero"]["noop_kept"] == pytest.approx(noop_kept_share(rows, 0.0))
    assert (model / "keep_margin.md").is_file() and (model / "keep_margin.png").stat().st_size > 0


def test_fix_uses_the_calibrated_margin_and_zero_turns_it_off(calibrated: tuple[Path, Path, dict],
                                                               tmp_path: Path, capsys):
    model, data, record = calibrated
    by_default, off = tmp_path / "default.jsonl", tmp_path / "off.jsonl"
    assert main(["fix", "--model", str(model), "--device", "cpu", "--jsonl", str(data), "--out", str(by_default)]) == 0
    err = capsys.readouterr().err
    assert f"keep margin: {record['margin']:g} nats/token (calibrated: {model / KEEP_MARGIN_FILE})" in err
    assert main(["fix", "--model", str(model), "--device", "cpu", "--jsonl", str(data), "--out", str(off),
                 "--keep-margin", "0"]) == 0
    default_lines = [json.loads(line) for line in by_default.read_text(encoding="utf-8").splitlines()]
    off_lines = [json.loads(line) for line in off.read_text(encoding="utf-8").splitlines()]
    assert not any("kept" in d for d in off_lines)
    assert any(d.get("kept") for d in default_lines)
    for d, o in zip(default_lines, off_lines):
        assert d["prediction"] == (d["span_in"] if d.get("kept") else o["prediction"])


def test_eval_records_the_default_and_identity_is_unaffected(calibrated: tuple[Path, Path, dict], tmp_path: Path):
    model, data, record = calibrated
    assert main(["eval", "--system", str(model), "--device", "cpu", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--bootstrap", "10"]) == 0
    run_meta = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    for where in (run_meta, report["system"]):
        assert where["keep_margin"] == record["margin"]
        assert where["keep_margin_from"] == f"calibrated: {model / KEEP_MARGIN_FILE}"
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert [r.prediction == r.example.span_in for r in rows if r.example.is_noop].count(True) / \
        sum(r.example.is_noop for r in rows) == pytest.approx(record["noop_kept"])
    assert main(["eval", "--system", "identity", "--data", str(data), "--out", str(tmp_path / "id"),
                 "--bootstrap", "10"]) == 0
    assert json.loads((tmp_path / "id" / "run.json").read_text(encoding="utf-8"))["keep_margin"] == 0


def test_export_carries_the_margin_and_onnx_eval_uses_it(calibrated: tuple[Path, Path, dict], tmp_path: Path):
    from spantune.export import ExportOptions, export_model

    model, data, record = calibrated
    out = tmp_path / "export"
    manifest = export_model(ExportOptions(model=str(model), out=out, dtypes=("fp32",), verify=False))
    assert manifest["keep_margin"] == record
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["spantune"] == {"keep_margin": record["margin"], "keep_margin_unit": "nats/token"}
    assert json.loads((out / KEEP_MARGIN_FILE).read_text(encoding="utf-8")) == record
    assert KEEP_MARGIN_FILE in manifest["files"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"Keep margin: {record['margin']:g} nats/token, calibrated on `{data}`" in card
    assert f"to keep ≥ {100 * TARGET:g} % of correct spans" in card
    assert main(["eval", "--system", f"onnx:{out}", "--dtype", "fp32", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--bootstrap", "10"]) == 0
    system = json.loads((tmp_path / "run" / "system.json").read_text(encoding="utf-8"))
    assert (system["keep_margin"], system["keep_margin_from"]) == (record["margin"],
                                                                   f"calibrated: {out / KEEP_MARGIN_FILE}")


def test_calibration_says_when_no_margin_reaches_the_target():
    points = [{"margin": m, "n": 4, "n_noop": 4, "noop_false_edit_rate": rate, "exact_match": 0.5, "edit_precision": p,
               "edit_recall": 0.5} for m, rate, p in ((0.0, 0.5, 0.2), (1.0, 0.25, 0.4), (2.0, 0.25, 0.5))]
    record = calibration(points, 0.95)
    assert (record["margin"], record["reached"], record["noop_kept"]) == (2.0, False, 0.75)
    assert record["edit_precision"] == 0.5
    assert record["at_zero"]["noop_kept"] == 0.5
    assert calibration(points, 0.75)["margin"] == 1.0
    with pytest.raises(SpantuneError, match="no span that needs no fix"):
        calibration([{**points[0], "noop_false_edit_rate": None}], 0.95)


def test_calibration_at_a_confidence_asks_the_lower_bound_to_reach_the_target():
    """400 no-fix spans: a margin keeping 387 (96.75 %) reaches 95 % observed but not at 95 % confidence (its Wilson
    lower bound is 94.95 %); one keeping 390 (97.5 %) does. More spans, a tighter bound."""
    def point(margin: float, kept: int, n: int = 400) -> dict:
        return {"margin": margin, "n": n, "n_noop": n, "noop_false_edit_rate": 1 - kept / n, "exact_match": kept / n,
                "edit_precision": 0.0, "edit_recall": None}

    points = [point(0.0, 354), point(1.0, 378), point(1.25, 387), point(1.5, 390)]
    assert kept_lower_bound(points[2], 0.95) == pytest.approx(0.9495, abs=1e-4)
    assert kept_lower_bound(points[2], 0.0) == pytest.approx(0.9675)
    assert smallest_margin(points, 0.95) == 1.25
    record = calibration(points, 0.95, confidence=0.95)
    assert (record["margin"], record["reached"], record["confidence"], record["n_noop"]) == (1.5, True, 0.95, 400)
    assert record["noop_kept"] == pytest.approx(0.975) and 0.95 <= record["noop_kept_bound"] < 0.975
    assert kept_lower_bound(point(1.25, 3870, 4000), 0.95) > 0.96  # the same share on 10x the spans


def test_margin_folder_of_a_run_is_beside_its_adapter(tmp_path: Path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "adapter_config.json").write_text("{}", encoding="utf-8")
    (run / "run_info.json").write_text("{}", encoding="utf-8")
    assert margin_folder(str(run)) == margin_folder(str(run / "best")) == run
    assert margin_folder(f"onnx:{tmp_path}") == tmp_path
    assert margin_folder("embedded") is None and margin_folder("Org/model") is None
    (run / KEEP_MARGIN_FILE).write_text('{"margin": -1, "unit": "nats/token"}', encoding="utf-8")
    with pytest.raises(SpantuneError, match=f"{run / KEEP_MARGIN_FILE}: margin: -1 is not"):
        resolve_keep(str(run / "best"), None)
    (run / KEEP_MARGIN_FILE).write_text('{"margin": 1.25}', encoding="utf-8")  # before the per-token margin
    with pytest.raises(SpantuneError, match=f"{run / KEEP_MARGIN_FILE}: unit: None, not 'nats/token': a margin in "
                                            "whole-reply nats from an older spantune; run `spantune calibrate` again"):
        resolve_keep(str(run), None)
    assert resolve_keep(str(run), 0.0)[0].margin == 0.0  # an explicit margin never reads the file


def test_calibrate_refuses_a_model_without_a_folder(tmp_path: Path, capsys):
    assert main(["calibrate", "--model", "embedded", "--data", str(tmp_path / "x.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "--model embedded" in err and "pass --out DIR" in err and len(err.strip().splitlines()) == 1
