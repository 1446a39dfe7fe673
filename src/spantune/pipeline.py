"""``spantune demo``: the whole pipeline on the embedded offline model, each step cached by its inputs.

Steps: embedded model → dataset → eval untuned → train (CPU recipe) → eval tuned → eval identity and
Harper → export q4 ONNX with parity (+ eval of the q4 file) → Transformers.js (Node) on the export →
side-by-side table and ``REPORT.md``. Each model and baseline is evaluated on the golden set and on
real learner corrections held out of training (JFLEG), so the README can quote real-data numbers.

Caching: a step's key is the sha256 of its inputs (config values, input file hashes, and the keys of
the steps it depends on). ``runs/demo/state.json`` records each finished step's key and result; a re-run
skips a step whose key is unchanged and whose outputs still exist, so changing the training recipe
re-runs training and everything after it, but not the data build. A step interrupted mid-way resumes
where it can (training from its last checkpoint, evaluations from their last prediction) when its key
is unchanged, and otherwise starts from an empty output folder. ``--force`` redoes every step.

Every stage is called in-process through its library function (or, where a stage is only a command,
through its own argument parser), never as a subprocess — except the Node harness, which is JavaScript.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError

DEFAULT_CONFIG = "configs/demo.yaml"
STATE_FILE = "state.json"
REPORT_FILE = "REPORT.md"
STATE_VERSION = 1


@dataclass
class DataPart:
    config: str = "configs/data/default.yaml"  #: the data builder's config
    overrides: list[str] = field(default_factory=list)  #: ``--section.key value`` tokens for it
    out: str = "runs/demo/data"  #: train.jsonl, eval.jsonl (real dev: FCE dev + held-out JFLEG), eval_synth.jsonl


@dataclass
class TrainPart:
    config: str = "configs/train/smollm2-135m_lora_cpu-demo.yaml"
    overrides: list[str] = field(default_factory=list)  #: ``--section.key value`` tokens for the recipe


@dataclass
class EvalPart:
    golden: str = "fixtures/span_eval.jsonl"
    real: bool = True  #: also evaluate on the data build's eval.jsonl (real dev: never trained on)
    real_sample: int | None = 400  #: seeded sample of that file (it has ~4,600 spans); null = all of it
    untuned_real: bool = False  #: also score the untuned model on the real sample (~3 s/span on 2 CPU cores)
    seed: int = 0
    limit: int | None = None  #: first N examples of each set only (quick runs)
    max_new_tokens: int = 32


@dataclass
class ExportPart:
    dtypes: list[str] = field(default_factory=lambda: ["fp32", "q4", "q8"])
    verify_limit: int | None = 40


@dataclass
class NodePart:
    enabled: bool = True
    limit: int | None = None  #: first N golden spans only; None = all (comparable with the other rows)


@dataclass
class DemoConfig:
    model: str = "embedded"
    run_dir: str = "runs/demo"
    data: DataPart = field(default_factory=DataPart)
    train: TrainPart = field(default_factory=TrainPart)
    eval: EvalPart = field(default_factory=EvalPart)
    export: ExportPart = field(default_factory=ExportPart)
    node: NodePart = field(default_factory=NodePart)


# ---------------------------------------------------------------- step cache


def fingerprint(inputs: Any) -> str:
    """Stable hash of a JSON-able description of a step's inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of an input file; a missing file is a one-line error naming it."""
    from spantune.io import sha256_file

    p = Path(path)
    if not p.is_file():
        raise SpantuneError(f"{p}: input file not found")
    return sha256_file(p)


@dataclass
class Done:
    """A finished (or cached) step: its key, for the steps that depend on it, and its result."""

    key: str
    result: dict[str, Any]


class StepCache:
    """Runs each named step at most once per input key, recording results in ``state.json``.

    A step function gets ``resume`` (True when the same key was started and not finished) and returns
    a JSON-able dict; its ``"outputs"`` entry lists paths that must still exist for a cached result to
    count. The state is rewritten atomically after every step, so a kill loses at most the running step.
    """

    def __init__(self, run_dir: Path, force: bool, console: Any) -> None:
        self.path = run_dir / STATE_FILE
        self.force = force
        self.console = console
        self.log: list[tuple[str, str, float]] = []  # (title, "ran" | "cached", seconds)
        self.state: dict[str, Any] = {"version": STATE_VERSION, "steps": {}}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SpantuneError(f"{self.path}: unreadable step state ({exc}); delete it or pass --force") from None
            if loaded.get("version") == STATE_VERSION:
                self.state = loaded

    def _save(self) -> None:
        from spantune.io import write_json

        write_json(self.path, self.state)

    def cached(self, name: str, key: str) -> dict[str, Any] | None:
        prev = self.state["steps"].get(name, {})
        if self.force or prev.get("status") != "done" or prev.get("key") != key:
            return None
        if not all(Path(p).exists() for p in prev["result"].get("outputs", [])):
            return None
        return prev

    def run(self, name: str, title: str, inputs: dict[str, Any], fn: Callable[[bool], dict[str, Any]]) -> Done:
        key = fingerprint({"step": name, **inputs})
        prev = self.cached(name, key)
        if prev is not None:
            self.console.print(f"[green]✓[/] {title} [dim](cached, took {_duration(prev['seconds'])})[/]")
            self.log.append((title, "cached", prev["seconds"]))
            return Done(key, prev["result"])
        old = self.state["steps"].get(name, {})
        resume = not self.force and old.get("status") == "running" and old.get("key") == key
        self.console.rule(f"[bold]{title}[/]" + (" [yellow](resuming)[/]" if resume else ""), align="left")
        self.state["steps"][name] = {"key": key, "status": "running", "inputs": inputs,
                                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._save()
        t0 = time.perf_counter()
        result = fn(resume)
        seconds = round(time.perf_counter() - t0, 1)
        self.state["steps"][name].update(status="done", result=result, seconds=seconds,
                                         finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._save()
        self.console.print(f"[green]✓[/] {title} [dim]({_duration(seconds)})[/]")
        self.log.append((title, "ran", seconds))
        return Done(key, result)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def fresh_dir(path: Path, resume: bool) -> Path:
    """The step's output folder: kept for a resume, emptied otherwise (it belongs to the pipeline)."""
    if not resume and path.exists():
        shutil.rmtree(path)
    return path


def sample_jsonl(src: Path, n: int | None, seed: int, dst: Path) -> Path:
    """``n`` examples of ``src`` drawn with ``seed``, in file order, written to ``dst`` (``src`` itself if n
    is None or covers the file). Deterministic, so the eval steps that read it stay cached."""
    from spantune.schema import read_jsonl, write_jsonl
    from spantune.train import seeded_subset

    examples = read_jsonl(src)
    if n is None or n >= len(examples):
        return src
    sample = [examples[i] for i in seeded_subset(len(examples), n, seed)]
    if not dst.is_file() or read_jsonl(dst) != sample:
        write_jsonl(dst, sample)
    return dst


def invoke(register: Callable[[Any], None], argv: list[str]) -> None:
    """Run a stage command in this process through its own parser (same defaults and checks as the CLI)."""
    parser = argparse.ArgumentParser(prog="spantune", add_help=False)
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    rc = int(args.func(args) or 0)
    if rc == 130:
        raise KeyboardInterrupt
    if rc:
        raise SpantuneError(f"step `spantune {' '.join(argv)}` failed (exit {rc})")


# ---------------------------------------------------------------- steps


@dataclass
class Contender:
    """A row of the final table: what ``spantune eval --system`` gets, and what it depends on."""

    label: str
    spec: str
    upstream: str | None = None  #: key of the step that produced the model (None: no model)
    dtype: str | None = None


class Demo:
    """The demo's steps, in order; each returns the :class:`Done` later steps depend on."""

    TOTAL = 9

    def __init__(self, cfg: DemoConfig, force: bool, console: Any) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.console = console
        self.cache = StepCache(self.run_dir, force, console)
        self.evals: dict[tuple[str, str], dict[str, Any]] = {}  # (system label, dataset) -> eval result

    def title(self, n: int, what: str) -> str:
        return f"[{n}/{self.TOTAL}] {what}"

    def model(self) -> Done:
        from spantune.embedded import FORMAT_VERSION, _installed_version
        from spantune.models import EMBEDDED, resolve_model_path

        inputs: dict[str, Any] = {"model": self.cfg.model}
        if self.cfg.model == EMBEDDED:
            inputs.update(format=FORMAT_VERSION, wheel=_installed_version())

        def run(resume: bool) -> dict[str, Any]:
            base, _ = resolve_model_path(self.cfg.model)
            return {"path": base, "outputs": [base] if Path(base).is_dir() else []}

        return self.cache.run("model", self.title(1, f"model: {self.cfg.model}"), inputs, run)

    def data(self) -> Done:
        from spantune.data.build import run_build

        dcfg = self.cfg.data
        out = Path(dcfg.out)
        inputs = {"config": dcfg.config, "config_sha256": file_digest(dcfg.config), "overrides": dcfg.overrides,
                  "golden_sha256": file_digest(self.cfg.eval.golden), "out": str(out)}

        def run(resume: bool) -> dict[str, Any]:
            result, written = run_build(dcfg.config, dcfg.overrides, str(out))
            files = {name: out / f"{name}.jsonl" for name in ("train", "eval", "eval_synth")}
            self.console.print(f"train {len(result.train)}, real held-out eval {len(result.eval)}, "
                               f"synthetic eval {len(result.eval_synth)} examples → {out}/")
            return {"files": {k: str(p) for k, p in files.items()},
                    "sha256": {k: file_digest(p) for k, p in files.items()},
                    "counts": {"train": len(result.train), "eval": len(result.eval),
                               "eval_synth": len(result.eval_synth)},
                    "sources": [{k: v for k, v in src.items() if k != "files"} for src in result.sources],
                    "outputs": [str(p) for p in written]}

        return self.cache.run("data", self.title(2, f"dataset ({dcfg.config} → {out}/)"), inputs, run)

    def datasets(self, data: Done) -> dict[str, tuple[str, str]]:
        """Eval sets by name → (path, sha256): the golden set and a seeded sample of the real held-out split."""
        ecfg = self.cfg.eval
        sets = {"golden": (ecfg.golden, file_digest(ecfg.golden))}
        if ecfg.real:
            path = sample_jsonl(Path(data.result["files"]["eval"]), ecfg.real_sample, ecfg.seed,
                                self.run_dir / "data-real-sample.jsonl")
            sets["real"] = (str(path), file_digest(path))
        return sets

    def evaluate(self, n: int, system: Contender, sets: dict[str, tuple[str, str]]) -> None:
        """Evaluate ``system`` on every eval set (one cached step each) with ``spantune eval``."""
        from spantune.evaluate import commands

        for set_name, (path, digest) in sets.items():
            slug = f"{re.sub(r'[^a-z0-9]+', '-', system.label.lower()).strip('-')}__{set_name}"
            out = self.run_dir / "eval" / slug
            inputs = {"system": system.spec, "upstream": system.upstream, "dtype": system.dtype, "data": path,
                      "data_sha256": digest, "limit": self.cfg.eval.limit,
                      "max_new_tokens": self.cfg.eval.max_new_tokens}

            def run(resume: bool, path: str = path, out: Path = out) -> dict[str, Any]:
                argv = ["eval", "--system", system.spec, "--data", path, "--out", str(fresh_dir(out, resume)),
                        "--max-new-tokens", str(self.cfg.eval.max_new_tokens)]
                argv += ["--limit", str(self.cfg.eval.limit)] if self.cfg.eval.limit else []
                argv += ["--dtype", system.dtype] if system.dtype else []
                argv += ["--resume"] if resume and (out / "run.json").is_file() else []
                invoke(commands.register, argv)
                report = json.loads((out / "report.json").read_text(encoding="utf-8"))
                metrics = {k: v["value"] for k, v in report["metrics"].items()}
                return {"report": str(out / "report.md"), "n": report["run"]["n_evaluated"], "metrics": metrics,
                        "outputs": [str(out / "report.json")]}

            done = self.cache.run(f"eval:{slug}", self.title(n, f"eval {system.label} on {set_name} ({path})"),
                                  inputs, run)
            self.evals[(system.label, set_name)] = done.result

    def train(self, model: Done, data: Done) -> Done:
        from spantune import train

        tcfg = self.cfg.train
        out = self.run_dir / "train"
        files = data.result["files"]
        # Checkpoints are chosen on real dev (eval.jsonl: FCE dev + held-out JFLEG sentences), never on
        # synthetic errors: what wins there is what generalises to learner text.
        overrides = [*tcfg.overrides, "--model.name", self.cfg.model,
                     "--data.train", files["train"], "--data.eval", files["eval"]]
        inputs = {"model": model.key, "data": data.key, "config": tcfg.config,
                  "config_sha256": file_digest(tcfg.config), "overrides": overrides}

        def run(resume: bool) -> dict[str, Any]:
            from spantune.config import load_config

            started = time.time()
            cfg = load_config(train.TrainConfig, tcfg.config, overrides)
            resume = resume and (out / "checkpoints").is_dir() and not (out / "adapter").exists()
            prep = train.prepare(cfg, fresh_dir(out, resume), resume)
            summary = train.run_training(prep, started)
            if summary["interrupted"]:
                raise KeyboardInterrupt  # a checkpoint was saved; the next `spantune demo` resumes from it
            return {**summary, "run_dir": str(out), "outputs": [summary["adapter"]]}

        return self.cache.run("train", self.title(4, f"fine-tune ({tcfg.config})"), inputs, run)

    def export(self, trained: Done) -> Done:
        from spantune.export import ExportOptions, export_model, parse_dtypes

        ecfg = self.cfg.export
        out = self.run_dir / "export"
        inputs = {"train": trained.key, "dtypes": ecfg.dtypes, "verify_limit": ecfg.verify_limit,
                  "verify_data": self.cfg.eval.golden, "verify_sha256": file_digest(self.cfg.eval.golden)}

        def run(resume: bool) -> dict[str, Any]:
            manifest = export_model(ExportOptions(
                model=trained.result["run_dir"], out=out, dtypes=parse_dtypes(",".join(ecfg.dtypes)),
                verify_data=Path(self.cfg.eval.golden), verify_limit=ecfg.verify_limit,
                max_new_tokens=self.cfg.eval.max_new_tokens))
            return {"dir": str(out), "onnx_bytes": manifest["onnx_bytes"],
                    "size_ratio_vs_fp32": manifest["size_ratio_vs_fp32"], "parity": manifest["parity"],
                    "outputs": [str(out / "manifest.json")]}

        return self.cache.run("export", self.title(7, f"export ONNX {'+'.join(ecfg.dtypes)} with parity → {out}"),
                              inputs, run)

    def node(self, exported: Done, reference: Contender) -> None:
        """Transformers.js (Node) decodes the golden set from the q4 export; compared with onnxruntime q4."""
        ncfg = self.cfg.node
        if not ncfg.enabled:
            self.console.print(f"[yellow]-[/] {self.title(8, 'Transformers.js (Node)')}: skipped (node.enabled: false)")
            return
        ref = self.evals[(reference.label, "golden")]
        out = self.run_dir / "eval" / "transformers-js-q4__golden"
        inputs = {"export": exported.key, "reference": ref["report"], "limit": ncfg.limit,
                  "data_sha256": file_digest(self.cfg.eval.golden),
                  "js_lock_sha256": file_digest(JS_DIR / "package-lock.json"), "harness_sha256": file_digest(HARNESS)}

        def run(resume: bool) -> dict[str, Any]:
            return run_node_harness(Path(exported.result["dir"]), self.cfg.eval.golden, ncfg.limit,
                                    Path(ref["report"]).parent, fresh_dir(out, False))

        done = self.cache.run("node", self.title(8, "Transformers.js (Node) on the q4 export"), inputs, run)
        self.evals[("tuned q4 (Transformers.js)", "golden")] = done.result


# ---------------------------------------------------------------- Node harness


JS_DIR = Path("js")
HARNESS = Path(__file__).with_name("node_harness.mjs")


def run_node_harness(export_dir: Path, data: str, limit: int | None, reference_dir: Path, out: Path) -> dict[str, Any]:
    """Decode ``data`` with Transformers.js q4 (js/), report it like an eval, and measure its agreement
    with Python onnxruntime q4 (the eval in ``reference_dir``) on the same spans."""
    from spantune.evaluate.commands import select_examples
    from spantune.evaluate.metrics import make_row
    from spantune.evaluate.report import build_report, write_report
    from spantune.evaluate.runner import PREDICTIONS, read_predictions
    from spantune.infer.base import Prediction
    from spantune.io import atomic_write
    from spantune.postprocess import PostResult
    from spantune.schema import dumps, write_jsonl

    node = shutil.which("node")
    if node is None:
        raise SpantuneError("node not found on PATH: install Node.js ≥ 18 (or set node.enabled: false)")
    if not (JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir():
        raise SpantuneError(f"{JS_DIR}/node_modules lacks @huggingface/transformers: run `make js` (cd js && npm ci)")
    examples, data_info = select_examples(data, None, limit)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "examples.jsonl", examples)
    cmd = [node, str(HARNESS), str(JS_DIR.resolve()), str(export_dir.resolve()), str(out / "examples.jsonl"),
           str(out / "outputs.jsonl"), "q4"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # stderr: progress, errors
    if proc.returncode != 0:
        raise SpantuneError(f"the Transformers.js harness failed (exit {proc.returncode}); its messages are above")
    load_ms = json.loads(proc.stdout.strip().splitlines()[-1])["load_ms"]
    outputs = [json.loads(line) for line in (out / "outputs.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [make_row(ex, Prediction(o["raw"], PostResult(o["text"], o["overrun"], o["verbose"], o["fallback"]),
                                    o["latency_ms"] / 1000, len(o["tokens"])))
            for ex, o in zip(examples, outputs, strict=True)]
    with atomic_write(out / PREDICTIONS) as fh:
        fh.writelines(dumps(row.to_dict()) + "\n" for row in rows)
    ort = {row.key: row for row in read_predictions(reference_dir / PREDICTIONS)}
    shared = [(row, ort[row.key]) for row in rows if row.key in ort]
    if not shared:
        raise SpantuneError(f"{reference_dir / PREDICTIONS} holds none of the spans decoded by Transformers.js")
    system = {"spec": f"transformers.js:{export_dir}", "kind": "transformers.js", "dtype": "q4",
              "runtime": f"node {subprocess.run([node, '--version'], capture_output=True, text=True).stdout.strip()}"}
    report = build_report(rows, system=system, data=data_info, n_selected=len(examples))
    write_report(out, report)
    return {"report": str(out / "report.md"), "n": len(rows), "load_s": round(load_ms / 1000, 2),
            "metrics": {k: v["value"] for k, v in report["metrics"].items()},
            "agreement_with_onnxruntime_q4": {
                "n": len(shared), "raw": sum(a.raw == b.raw for a, b in shared) / len(shared),
                "inserted_text": sum(a.prediction == b.prediction for a, b in shared) / len(shared)},
            "outputs": [str(out / "report.json")]}


# ---------------------------------------------------------------- summary


#: Columns of the side-by-side table: (metric name in report.json, header).
TABLE_COLUMNS = (("exact_match", "EM"), ("chrf", "chrF"), ("edit_precision", "edit P"), ("edit_recall", "edit R"),
                 ("verbose_rate", "verbose"), ("noop_false_edit_rate", "no-op false edits"),
                 ("latency_p50_ms", "latency p50"))


def side_by_side(evals: dict[tuple[str, str], dict[str, Any]], set_name: str) -> list[list[str]]:
    """Rows (system, EM, chrF, verbose, no-op false edits, latency) for one eval set, in run order."""
    from spantune.evaluate.report import fmt

    rows = []
    for (label, name), result in evals.items():
        if name == set_name:
            rows.append([label, *(fmt(metric, result["metrics"].get(metric)) for metric, _ in TABLE_COLUMNS)])
    return rows


def render_tables(demo: Demo, sets: dict[str, tuple[str, str]]) -> list[Any]:
    from rich.table import Table

    tables = []
    for set_name, (path, _) in sets.items():
        table = Table(title=f"{set_name}: {path}")
        table.add_column("system")
        for _, header in TABLE_COLUMNS:
            table.add_column(header, justify="right")
        for row in side_by_side(demo.evals, set_name):
            table.add_row(*row)
        tables.append(table)
    return tables


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def write_report(demo: Demo, sets: dict[str, tuple[str, str]], trained: Done, exported: Done) -> Path:
    """REPORT.md: the side-by-side tables, training, export and Node facts, and links to every report."""
    from spantune.io import atomic_write

    import os
    import platform

    from spantune.runinfo import git_commit, package_versions

    header = ["system", *(h for _, h in TABLE_COLUMNS)]
    versions = package_versions(("torch", "transformers", "peft", "trl", "onnxruntime"))
    ran = sum(sec for _, status, sec in demo.cache.log if status == "ran")
    cached = sum(sec for _, status, sec in demo.cache.log if status == "cached")
    lines = ["# spantune demo report", "",
             f"- model: `{demo.cfg.model}`; config: `{demo.run_dir / 'config.yaml'}`; git {git_commit()}",
             f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores; "
             + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- time: {_duration(ran)} in this run, {_duration(ran + cached)} for all steps "
             "(cached steps counted at their original duration)", ""]
    for set_name, (path, _) in sets.items():
        lines += [f"## {set_name} (`{path}`)", "", *_md_table(header, side_by_side(demo.evals, set_name)), ""]
    t = trained.result
    lines += ["## Training", "", f"- run folder: `{t['run_dir']}` (model card: `{t['run_dir']}/README.md`)",
              f"- steps: {t.get('global_step')}, runtime {_duration(t.get('train_runtime_s') or 0)}, "
              f"{t.get('tokens_per_s')} tokens/s, last loss {t.get('last_loss')}",
              f"- best checkpoint: {t.get('best')}", ""]
    e = exported.result
    lines += ["## Export", "", f"- folder: `{e['dir']}`"]
    for dtype, size in e["onnx_bytes"].items():
        lines.append(f"- {dtype}: {size / 1e6:.1f} MB ({e['size_ratio_vs_fp32'][dtype]:.0%} of fp32)")
    for dtype, p in ((e.get("parity") or {}).get("dtypes") or {}).items():
        lines.append(f"- parity {dtype}: greedy agreement with PyTorch {p['agreement_torch']:.1%}, "
                     f"max |Δlogit| {p['max_abs_logit_diff']:.3g}")
    lines.append("")
    node = demo.evals.get(("tuned q4 (Transformers.js)", "golden"))
    if node is not None:
        agree = node["agreement_with_onnxruntime_q4"]
        lines += ["## Transformers.js (Node)", "",
                  f"- {node['n']} golden spans decoded by Transformers.js q4 in Node (model load {node['load_s']} s)",
                  f"- same raw output as Python onnxruntime q4 on {agree['raw']:.1%} of {agree['n']} spans "
                  f"(same inserted text: {agree['inserted_text']:.1%})", ""]
    lines += ["## Reports", "", *(f"- {label} on {name}: `{r['report']}`" for (label, name), r in demo.evals.items()),
              "", "## Steps", "", *_md_table(["step", "status", "time"],
                                               [[t_, s, _duration(sec)] for t_, s, sec in demo.cache.log]), ""]
    path = demo.run_dir / REPORT_FILE
    with atomic_write(path) as fh:
        fh.write("\n".join(lines))
    return path


# ---------------------------------------------------------------- command


def run_demo(cfg: DemoConfig, force: bool = False) -> Path:
    """Run (or resume) every step; returns the path of REPORT.md."""
    from rich.console import Console

    from spantune.config import dump_yaml
    from spantune.io import atomic_write

    console = Console(stderr=True)
    demo = Demo(cfg, force, console)
    with atomic_write(demo.run_dir / "config.yaml") as fh:
        fh.write(dump_yaml(cfg))
    model = demo.model()
    data = demo.data()
    sets = demo.datasets(data)
    untuned = Contender("untuned", cfg.model, upstream=model.key)
    demo.evaluate(3, untuned, sets if cfg.eval.untuned_real else {"golden": sets["golden"]})
    trained = demo.train(model, data)
    demo.evaluate(5, Contender("tuned", trained.result["run_dir"], upstream=trained.key), sets)
    for system in (Contender("identity", "identity"), Contender("Harper", "harper")):
        demo.evaluate(6, system, sets)
    exported = demo.export(trained)
    q4 = Contender("tuned q4 (onnxruntime)", f"onnx:{exported.result['dir']}", exported.key, "q4")
    demo.evaluate(7, q4, {"golden": sets["golden"]})
    demo.node(exported, q4)
    report = write_report(demo, sets, trained, exported)
    out = Console(width=120)
    out.rule(f"[bold]{demo.title(9, 'side by side')}[/]", align="left")
    for table in render_tables(demo, sets):
        out.print(table)
    out.print(f"full report: {report}")
    return report


def cmd_demo(args: argparse.Namespace) -> int:
    from spantune.config import load_config

    cfg = load_config(DemoConfig, args.config, [f"--{item}" for item in args.set])
    run_demo(cfg, force=args.force)
    return 0


def register(subparsers: Any) -> None:
    """``spantune demo [--config configs/demo.yaml] [--force] [--set SECTION.KEY=VALUE ...]``."""
    p = subparsers.add_parser(
        "demo", help="the whole pipeline on the embedded model: data, train, eval, export, Node",
        description="Build the data, evaluate the untuned model, fine-tune, evaluate the tuned model beside identity "
                    "and Harper, export q4 ONNX with parity, run it in Transformers.js, and print the side-by-side "
                    "table. Finished steps are cached by input hash (RUN_DIR/state.json) and skipped on a re-run.")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="demo config YAML (default %(default)s)")
    p.add_argument("--force", action="store_true", help="redo every step, ignoring the cache in RUN_DIR/state.json")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, e.g. --set eval.limit=20 (repeatable)")
    p.set_defaults(func=cmd_demo)
