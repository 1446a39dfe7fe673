"""``spantune eval`` end to end: identity floor, tiny model on the PR subset with CI gates, garbage
outputs, Ctrl-C and --resume, baseline deltas, trend, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spantune.cli import main
from spantune.evaluate.evaluation import subsets_of
from spantune.evaluate.metrics import Columns, make_row
from spantune.evaluate.report import build_report, write_report
from spantune.evaluate.runner import open_run, read_predictions, run_corrector
from spantune.evaluate.systems import IdentityCorrector
from spantune.infer.base import Prediction
from spantune.postprocess import postprocess
from spantune.schema import SpanExample, read_jsonl

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SPANS = HERE / "fixtures" / "spans.jsonl"
GATES_CI = ROOT / "configs" / "gates-ci.yaml"


def run_eval(*args: str) -> int:
    return main(["eval", "--bootstrap", "100", *args])


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def noop_share(path: Path) -> float:
    examples = read_jsonl(path)
    return sum(e.span_in == e.span_out for e in examples) / len(examples)


@pytest.mark.parametrize("data", ["fixture", "golden"])
def test_identity_exact_match_equals_noop_share(data, tmp_path, request, capsys):
    path = request.getfixturevalue("golden_path") if data == "golden" else SPANS
    out = tmp_path / "identity"
    assert run_eval("--system", "identity", "--data", str(path), "--out", str(out)) == 0
    report = report_of(out)
    assert report["metrics"]["exact_match"]["value"] == noop_share(path)  # exactly, not approximately
    assert report["metrics"]["noop_false_edit_rate"]["value"] in (0.0, None)
    printed = capsys.readouterr().out
    assert "Exact match" in printed and f"{100 * noop_share(path):.1f}%" in printed
    for name in ("report.md", "predictions.jsonl", "em_by_tag.png", "em_by_length.png"):
        assert (out / name).is_file()
    assert (out / "em_by_tag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["data"]["sha256"] and report["system"]["kind"] == "identity"


def pr_subset(path: Path) -> list[SpanExample]:
    return [e for e in read_jsonl(path) if "pr" in subsets_of(e.extra)]


@pytest.mark.parametrize("data", ["fixture", "golden"])
def test_tiny_model_pr_subset_with_ci_gates(data, tiny_model_dir, tmp_path, request):
    path = request.getfixturevalue("golden_path") if data == "golden" else SPANS
    pr = pr_subset(path)
    if not pr:
        pytest.skip(f"{path} marks no example with the pr subset")
    out = tmp_path / "tiny"
    rc = run_eval("--system", str(tiny_model_dir), "--data", str(path), "--subset", "pr",
                  "--gates", str(GATES_CI), "--out", str(out), "--device", "cpu")
    assert rc == 0
    report = report_of(out)
    assert report["run"]["n_evaluated"] == report["run"]["n_selected"] == len(pr)
    assert report["gates"]["passed"] and len(report["gates"]["results"]) == 2
    assert len(report["system"]["sha256"]) == 64
    rows = read_predictions(out / "predictions.jsonl")
    assert [r.example.id for r in rows] == [e.id for e in pr]
    for row in rows:  # the production post-processing produced every prediction from the raw output
        assert row.prediction == postprocess(row.raw, row.example.span_in).text
        assert row.new_tokens is not None and row.latency_s > 0
    assert "# Evaluation of" in (out / "report.md").read_text()


class Garbage:
    """A corrector emitting the outputs a broken model produces, through the real post-processing."""

    name = "garbage"
    RAWS = ["", "\n\n\n", "Sure! Here is the corrected span:\n" + "blah " * 50, "«»", "x" * 500,
            "Span: «the»", "\x00\ufffd", "the"]

    def __init__(self) -> None:
        self.i = 0

    def correct(self, example: SpanExample) -> Prediction:
        raw = self.RAWS[self.i % len(self.RAWS)]
        self.i += 1
        return Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.001, new_tokens=len(raw))


def test_garbage_output_is_measured_not_crashed_on(tmp_path):
    examples = read_jsonl(SPANS)
    open_run(tmp_path, {"system": "garbage"}, resume=False)
    rows, interrupted = run_corrector(Garbage(), examples, tmp_path, progress=False)
    assert not interrupted and len(rows) == len(examples)
    report = build_report(rows, system={"spec": "garbage"}, data={"path": str(SPANS), "sha256": "-"},
                          n_selected=len(examples), n_boot=20)
    write_report(tmp_path, report)
    m = {k: v["value"] for k, v in report["metrics"].items()}
    assert m["fallback_rate"] > 0 and m["overrun_rate"] > 0 and m["verbose_rate"] > 0
    assert report["run"]["flag_violations"] == 0
    assert all(len(r.prediction) < 200 for r in rows)


class Interrupting(IdentityCorrector):
    """Identity that receives Ctrl-C while correcting its ``stop_at``-th example."""

    def __init__(self, stop_at: int) -> None:
        self.calls = 0
        self.stop_at = stop_at

    def correct(self, example):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().correct(example)


def test_ctrl_c_keeps_predictions_and_resume_continues(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["--system", "identity", "--data", str(SPANS), "--out", str(out)]
    monkeypatch.setattr("spantune.evaluate.systems.IdentityCorrector", lambda: Interrupting(stop_at=4))
    assert run_eval(*args) == 130
    assert "--resume" in capsys.readouterr().err
    assert len(read_predictions(out / "predictions.jsonl")) == 3
    assert not (out / "report.json").exists()
    # a kill mid-write leaves half a line: resume cuts it and carries on
    with open(out / "predictions.jsonl", "a") as fh:
        fh.write('{"key": "e04", "exam')
    monkeypatch.undo()
    assert run_eval(*args) == 1  # without --resume an existing run is never overwritten
    assert "--resume" in capsys.readouterr().err
    assert run_eval(*args, "--resume") == 0
    rows = read_predictions(out / "predictions.jsonl")
    assert [r.example.id for r in rows] == [e.id for e in read_jsonl(SPANS)]
    assert report_of(out)["metrics"]["exact_match"]["value"] == noop_share(SPANS)


def test_resume_refuses_a_different_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_eval("--system", "identity", "--data", str(SPANS), "--out", str(out), "--limit", "2") == 0
    assert run_eval("--system", "identity", "--data", str(SPANS), "--out", str(out), "--resume") == 1
    assert "was started with limit=2" in capsys.readouterr().err


def test_baseline_deltas_and_trend(tmp_path, capsys):
    base, cand = tmp_path / "runs" / "identity", tmp_path / "runs" / "oracle"
    assert run_eval("--system", "identity", "--data", str(SPANS), "--out", str(base)) == 0
    # an oracle run stored as predictions: every example corrected exactly
    examples = read_jsonl(SPANS)
    rows = [make_row(e, Prediction(e.span_out, postprocess(e.span_out, e.span_in), 0.01, 2)) for e in examples]
    open_run(cand, {"system": "oracle"}, resume=False)
    (cand / "predictions.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    write_report(cand, build_report(rows, system={"spec": "oracle"}, data={"path": str(SPANS), "sha256": "-"},
                                    n_selected=len(rows), n_boot=20))
    # compare identity against the oracle as baseline, through the CLI
    again = tmp_path / "runs" / "identity2"
    assert run_eval("--system", "identity", "--data", str(SPANS), "--out", str(again),
                    "--baseline", str(cand / "report.json")) == 0
    delta = report_of(again)["baseline"]["metrics"]["exact_match"]
    assert delta["delta"] == pytest.approx(noop_share(SPANS) - 1.0)
    assert delta["significant"]
    md = (again / "report.md").read_text()
    assert "Baseline: `oracle`" in md and "| * |" in md
    capsys.readouterr()
    assert main(["eval", "trend", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "trend.png").read_bytes()[:4] == b"\x89PNG"
    assert "identity" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--subset", "nightly"], "no example is marked with subset 'nightly'"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--dtype", "q4"], "--dtype does not apply to the identity system"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, extra, message):
    assert run_eval("--system", "identity", "--data", str(SPANS), "--out", str(tmp_path / "o"), *extra) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_data_line_is_reported_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SPANS.read_text().splitlines()[0] + "\n{not json\n")
    assert run_eval("--system", "identity", "--data", str(bad), "--out", str(tmp_path / "o")) == 1
    assert f"{bad}:2: <json>: malformed JSON" in capsys.readouterr().err


def test_identity_columns_match_noop_flags():
    examples = read_jsonl(SPANS)
    cols = Columns.from_rows([make_row(e, IdentityCorrector().correct(e)) for e in examples])
    assert (cols.exact == cols.noop).all() and not cols.changed.any()


def test_onnx_system_decodes_like_torch(tiny_model_dir, tmp_path):
    """``onnx:DIR`` loads the export's folder with the asked dtype; fp32 gives PyTorch's raw outputs.

    (The random tiny model answers every prompt alike, so this proves the wiring; the export's own
    parity tests prove the decoding.)"""
    from spantune.export import ExportOptions, export_model
    from spantune.infer.torch_backend import TorchCorrector

    folder = tmp_path / "export"
    export_model(ExportOptions(model=str(tiny_model_dir), out=folder, dtypes=("fp32",), verify=False))
    out = tmp_path / "onnx"
    assert run_eval("--system", f"onnx:{folder}", "--dtype", "fp32", "--data", str(SPANS), "--subset", "pr",
                    "--gates", str(GATES_CI), "--out", str(out)) == 0
    rows = read_predictions(out / "predictions.jsonl")
    torch_corrector = TorchCorrector.load(str(tiny_model_dir), device="cpu")
    assert [r.raw for r in rows] == [torch_corrector.correct(r.example).raw for r in rows]
    assert report_of(out)["system"]["dtype"] == "fp32"
