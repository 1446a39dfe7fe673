"""``spantune demo`` orchestration: steps cached by input hash, resumed after interruption, honest tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from spantune.demo.cache import StepCache, fingerprint
from spantune.demo.config import DemoConfig
from spantune.demo.report import side_by_side
from spantune.demo.steps import SystemRow, Demo
from spantune.errors import SpantuneError
from spantune.schema import read_jsonl


def _cache(tmp_path: Path, force: bool = False) -> StepCache:
    return StepCache(tmp_path, force, Console(file=io.StringIO()))


class Recorder:
    """A step function that counts its calls and can fail once, like a killed step."""

    def __init__(self, out: Path, fail: bool = False) -> None:
        self.out, self.fail, self.calls = out, fail, []

    def __call__(self, resume: bool) -> dict:
        self.calls.append(resume)
        if self.fail:
            self.fail = False
            raise KeyboardInterrupt
        self.out.write_text("x")
        return {"value": len(self.calls), "outputs": [str(self.out)]}


def test_fingerprint_is_order_independent_and_sensitive() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_finished_step_is_skipped_until_its_inputs_change(tmp_path: Path) -> None:
    step = Recorder(tmp_path / "out.txt")
    first = _cache(tmp_path).run("s", "step", {"x": 1}, step)
    again = _cache(tmp_path).run("s", "step", {"x": 1}, step)  # a new process reads state.json
    assert step.calls == [False]
    assert again == first and again.result["value"] == 1
    changed = _cache(tmp_path).run("s", "step", {"x": 2}, step)
    assert step.calls == [False, False] and changed.key != first.key
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["steps"]["s"]["status"] == "done" and state["steps"]["s"]["inputs"] == {"x": 2}


def test_missing_outputs_or_force_rerun_the_step(tmp_path: Path) -> None:
    step = Recorder(tmp_path / "out.txt")
    _cache(tmp_path).run("s", "step", {"x": 1}, step)
    (tmp_path / "out.txt").unlink()
    _cache(tmp_path).run("s", "step", {"x": 1}, step)
    _cache(tmp_path, force=True).run("s", "step", {"x": 1}, step)
    assert step.calls == [False, False, False]


def test_interrupted_step_resumes_only_with_the_same_key(tmp_path: Path) -> None:
    step = Recorder(tmp_path / "out.txt", fail=True)
    with pytest.raises(KeyboardInterrupt):
        _cache(tmp_path).run("s", "step", {"x": 1}, step)
    assert json.loads((tmp_path / "state.json").read_text())["steps"]["s"]["status"] == "running"
    _cache(tmp_path).run("s", "step", {"x": 1}, step)
    assert step.calls == [False, True]

    other = Recorder(tmp_path / "other.txt", fail=True)
    with pytest.raises(KeyboardInterrupt):
        _cache(tmp_path).run("t", "step", {"x": 1}, other)
    _cache(tmp_path).run("t", "step", {"x": 9}, other)  # inputs changed meanwhile: start over
    assert other.calls == [False, False]


def test_bad_demo_config_names_the_key(tmp_path: Path) -> None:
    from spantune.cli import main  # noqa: F401  (the lead's CLI must list spantune.demo.commands)
    from spantune.demo.commands import cmd_demo

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("eval:\n  limt: 5\n")
    ns = type("Args", (), {"config": str(cfg), "set": [], "force": False})()
    with pytest.raises(SpantuneError, match="unknown config key eval.limt"):
        cmd_demo(ns)
    cfg.write_text("eval:\n  limit: five\n")
    with pytest.raises(SpantuneError, match="config key eval.limit"):
        cmd_demo(ns)


def test_identity_eval_is_real_and_cached(tmp_path: Path, golden_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The eval step runs `run_eval` in-process; the identity row's EM is the golden set's no-op share."""
    from spantune.schema import read_jsonl

    cfg = DemoConfig(run_dir=str(tmp_path / "run"))
    cfg.eval.golden = str(golden_path)
    cfg.eval.real = False
    sets = {"golden": (str(golden_path), "digest")}
    demo = Demo(cfg, force=False, console=Console(file=io.StringIO()))
    demo.evaluate(6, SystemRow("identity", "identity"), sets)
    examples = read_jsonl(golden_path)
    noop = sum(ex.span_in == ex.span_out for ex in examples) / len(examples)
    result = demo.evals[("identity", "golden")]
    assert result["n"] == len(examples)
    assert result["metrics"]["exact_match"] == pytest.approx(noop)
    assert Path(result["report"]).is_file()

    monkeypatch.setattr("spantune.evaluate.run_eval", lambda *a, **k: pytest.fail("cached step ran again"))
    again = Demo(cfg, force=False, console=Console(file=io.StringIO()))
    again.evaluate(6, SystemRow("identity", "identity"), sets)
    assert again.evals[("identity", "golden")] == result
    rows = side_by_side(again.evals, "golden")
    assert rows[0][0] == "identity" and rows[0][1] == f"{100 * noop:.1f}%"


def test_an_eval_whose_inputs_changed_starts_from_an_empty_folder(tmp_path: Path, golden_path: Path) -> None:
    """A new model (here: another limit) re-runs its evaluation into the folder the old one left."""
    cfg = DemoConfig(run_dir=str(tmp_path / "run"))
    sets = {"golden": (str(golden_path), "digest")}
    for limit in (5, 3):
        cfg.eval.limit = limit
        demo = Demo(cfg, force=False, console=Console(file=io.StringIO()))
        demo.evaluate(6, SystemRow("identity", "identity"), sets)
        assert demo.evals[("identity", "golden")]["n"] == limit


@pytest.mark.slow
def test_demo_end_to_end_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path, golden_path: Path,
                                           jfleg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step on a tiny random model and a small data build; the second run is served from the cache."""
    import shutil

    from spantune.demo.page import CHROMIUM
    from spantune.demo.steps import run_demo
    from spantune.infer.node_backend import DEFAULT_JS_DIR

    cfg = DemoConfig(model=str(tiny_model_dir), run_dir=str(tmp_path / "run"))
    cfg.data.out = str(tmp_path / "run" / "data")
    cfg.data.overrides = ["--synthetic.examples", "300", "--aligner", "difflib"]
    cfg.train.overrides = ["--train.max_steps", "3", "--train.save_steps", "3", "--train.max_minutes", "null",
                           "--train.max_length", "512",
                           "--train.threads", "1", "--eval.steps", "0"]
    cfg.eval.golden = str(golden_path)
    cfg.eval.limit = 4
    cfg.eval.real_sample, cfg.eval.calibration_sample, cfg.eval.untuned_limit = 6, 12, 3
    cfg.export.verify_limit = 2
    cfg.node.limit = 3
    cfg.node.enabled = shutil.which("node") is not None and (DEFAULT_JS_DIR / "node_modules").is_dir()
    cfg.page.spans = 2
    cfg.page.enabled = cfg.node.enabled and CHROMIUM.is_file()

    report = run_demo(cfg)
    text = report.read_text()
    rows = ["untuned (first 3)", "tuned", "identity", "Harper", "tuned int8 (onnxruntime)"]
    rows += ["tuned int8 (Transformers.js)"] if cfg.node.enabled else []
    for label in rows:
        assert f"| {label} |" in text
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert all(step["status"] == "done" for step in state["steps"].values())
    assert (tmp_path / "run" / "train" / "adapter" / "adapter_config.json").is_file()
    assert all((tmp_path / "run" / "export" / "onnx" / f"model_{d}.onnx").is_file() for d in ("q4", "int8"))
    # The keep margin is calibrated on real-dev spans outside the reported sample, and the export carries it.
    calibration = read_jsonl(tmp_path / "run" / "data-calibration-sample.jsonl")
    reported = {e.id for e in read_jsonl(tmp_path / "run" / "data-real-sample.jsonl")}
    assert calibration and all(e.is_noop for e in calibration) and not {e.id for e in calibration} & reported
    margin = json.loads((tmp_path / "run" / "train" / "keep_margin.json").read_text())["margin"]
    assert json.loads((tmp_path / "run" / "export" / "keep_margin.json").read_text())["margin"] == margin
    assert f"- keep margin: {margin:g} nats/token" in text
    if cfg.page.enabled:  # the page step timed the int8 file in Chromium against Node on the same spans
        page = json.loads((tmp_path / "run" / "page" / "summary.json").read_text())
        assert page["spans"] == 2 and page["dtype"] == "int8" and page["browser_equals_node"] == 1.0
        assert "## The page in Chromium (WASM)" in text

    def refuse(*args, **kwargs):
        pytest.fail("a cached step ran again")

    monkeypatch.setattr("spantune.evaluate.run_eval", refuse)
    monkeypatch.setattr("spantune.train.run_training", refuse)
    monkeypatch.setattr("spantune.export.export_model", refuse)
    monkeypatch.setattr("spantune.data.build.run_build", refuse)
    monkeypatch.setattr("spantune.demo.server.drive_browser", refuse)
    def results(report: str) -> str:  # the tables and facts; the timing lines differ by design
        return report[report.index("## golden"):report.index("## Steps")]

    again = run_demo(cfg).read_text()
    assert results(again) == results(text)
    assert "- time: 0 s in this run" in again


def test_the_calibration_sample_never_holds_a_reported_span_and_can_hold_only_noop_spans(tmp_path: Path, golden_path: Path) -> None:
    from spantune.demo.steps import sample_jsonl

    reported = sample_jsonl(golden_path, 50, 0, tmp_path / "reported.jsonl")
    first = sample_jsonl(golden_path, 40, 0, tmp_path / "calibration.jsonl", exclude=reported)
    ids = [e.id for e in read_jsonl(first)]
    assert len(ids) == 40 and not set(ids) & {e.id for e in read_jsonl(reported)}
    assert [e.id for e in read_jsonl(sample_jsonl(golden_path, 40, 0, tmp_path / "again.jsonl", exclude=reported))] == ids
    rest = sample_jsonl(golden_path, 10_000, 0, tmp_path / "rest.jsonl", exclude=reported)
    assert len(read_jsonl(rest)) == len(read_jsonl(golden_path)) - 50
    noop = read_jsonl(sample_jsonl(golden_path, 10_000, 0, tmp_path / "noop.jsonl", exclude=reported,
                                   where=lambda e: e.is_noop))
    everything = read_jsonl(golden_path)
    assert noop and len(noop) < len(everything) - 50
    assert {e.id for e in noop} == {e.id for e in everything if e.is_noop} - {e.id for e in read_jsonl(reported)}
