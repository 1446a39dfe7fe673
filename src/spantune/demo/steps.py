"""The demo's steps, in order (:func:`run_demo`): each calls its stage's library function inside one cached step."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spantune.demo.cache import Done, StepCache, fresh_dir, file_digest
from spantune.demo.config import DemoConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from spantune.schema import SpanExample


@dataclass
class SystemRow:
    """A row of the final table: the system :func:`~spantune.evaluate.run_eval` gets, and what it depends on."""

    label: str
    spec: str
    upstream: str | None = None  #: key of the step that produced the model (None: no model)
    dtype: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  #: what else its evals read (file digests), for the key


def sample_jsonl(src: Path, n: int | None, seed: int, dst: Path, exclude: Path | None = None,
                 where: Callable[[SpanExample], bool] | None = None) -> Path:
    """``n`` examples of ``src`` drawn with ``seed``, in file order, written to ``dst`` (``src`` itself if n
    is None or covers the file and nothing is filtered out); none whose id is in ``exclude`` (a JSONL file),
    only those ``where`` accepts. Deterministic, so the eval steps that read it stay cached."""
    from spantune.schema import read_jsonl, write_jsonl
    from spantune.train import seeded_subset

    examples = read_jsonl(src)
    if exclude is None and where is None and (n is None or n >= len(examples)):
        return src
    taken = set() if exclude is None else {e.id for e in read_jsonl(exclude)}
    examples = [e for e in examples if e.id not in taken and (where is None or where(e))]
    if n is not None and n < len(examples):
        examples = [examples[i] for i in seeded_subset(len(examples), n, seed)]
    if not dst.is_file() or read_jsonl(dst) != examples:
        write_jsonl(dst, examples)
    return dst


class Demo:
    """The demo's steps, in order; each returns the :class:`~spantune.demo.cache.Done` later steps depend on."""

    TOTAL = 10

    def __init__(self, cfg: DemoConfig, force: bool, console: Any) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.console = console
        self.cache = StepCache(self.run_dir, force, console)
        self.evals: dict[tuple[str, str], dict[str, Any]] = {}  # (system label, dataset) -> eval result
        self.node_facts: dict[str, Any] | None = None  # Transformers.js vs onnxruntime q4, once the Node row ran
        self.page_facts: dict[str, Any] | None = None  # the page's latency against Node's, once the page step ran

    def title(self, n: int, what: str) -> str:
        return f"[{n}/{self.TOTAL}] {what}"

    def model(self) -> Done:
        from spantune.embedded import FORMAT_VERSION, installed_version
        from spantune.models import EMBEDDED, resolve_model_path

        inputs: dict[str, Any] = {"model": self.cfg.model}
        if self.cfg.model == EMBEDDED:
            inputs.update(format=FORMAT_VERSION, wheel=installed_version())

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

    def evaluate(self, n: int, system: SystemRow, sets: dict[str, tuple[str, str]], limit: int | None = None) -> None:
        """Evaluate ``system`` on every eval set (one cached step each): the first ``limit`` examples of each,
        or fewer when ``eval.limit`` (quick runs) says so."""
        limits = [x for x in (limit, self.cfg.eval.limit) if x is not None]
        for set_name, (path, digest) in sets.items():
            self._eval(n, system, set_name, path, digest, min(limits, default=None))

    def _eval(self, n: int, system: SystemRow, set_name: str, path: str, digest: str, limit: int | None) -> None:
        """One cached :func:`~spantune.evaluate.run_eval` of ``system`` on the first ``limit`` examples of ``path``
        (all when None), resumed after its last prediction when interrupted."""
        slug = f"{re.sub(r'[^a-z0-9]+', '-', system.label.lower()).strip('-')}__{set_name}"
        out = self.run_dir / "eval" / slug
        inputs = {"system": system.spec, "upstream": system.upstream, "dtype": system.dtype, "data": path,
                  "data_sha256": digest, "limit": limit, "max_new_tokens": self.cfg.eval.max_new_tokens,
                  **system.inputs}

        def run(resume: bool) -> dict[str, Any]:
            from spantune.evaluate import run_eval
            from spantune.evaluate.report import print_summary

            resume = resume and (out / "run.json").is_file()
            fresh_dir(out, resume)  # a changed key (a new model, other data) starts from an empty folder
            report = run_eval(system.spec, path, out=out, limit=limit, dtype=system.dtype,
                              max_new_tokens=self.cfg.eval.max_new_tokens, resume=resume)
            print_summary(report.content)
            return {"report": str(out / "report.md"), "n": report.content["run"]["n_evaluated"],
                    "metrics": report.metrics, "outputs": [str(out / "report.json")]}

        done = self.cache.run(f"eval:{slug}", self.title(n, f"eval {system.label} on {set_name} ({path})"), inputs, run)
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

    def calibrate(self, trained: Done, data: Done, sets: dict[str, tuple[str, str]]) -> Done:
        """The tuned model's keep margin (keep_margin.json in its run folder, carried by the export), calibrated
        on real-dev spans that need no fix, outside the reported sample: only they decide the margin, so the
        sample holds nothing else; the ``trained`` step itself when calibration is off."""
        ecfg = self.cfg.eval
        if not ecfg.calibration_sample or not ecfg.real:
            return trained
        from spantune.schema import read_jsonl

        path = sample_jsonl(Path(data.result["files"]["eval"]), ecfg.calibration_sample, ecfg.seed,
                            self.run_dir / "data-calibration-sample.jsonl", exclude=Path(sets["real"][0]),
                            where=lambda e: e.is_noop)
        if not read_jsonl(path):
            self.console.print(f"[yellow]-[/] {self.title(4, 'keep margin')}: not calibrated ({path} is empty: no "
                               "span needing no fix is left outside the reported sample): margin 0")
            return trained
        from spantune.infer.keep import KEEP_MARGIN_FILE, KEEP_MARGIN_UNIT

        inputs = {"train": trained.key, "data": str(path), "data_sha256": file_digest(path), "unit": KEEP_MARGIN_UNIT,
                  "target": ecfg.keep_target, "confidence": ecfg.keep_confidence, "max_new_tokens": ecfg.max_new_tokens}

        def run(resume: bool) -> dict[str, Any]:
            from spantune.evaluate.margin import calibrate, margin_grid
            from spantune.evaluate.report import fmt

            folder, record = calibrate(trained.result["run_dir"], path, margin_grid(), target=ecfg.keep_target,
                                       confidence=ecfg.keep_confidence, seed=ecfg.seed)
            kept, bound, at_zero = (fmt("noop_false_edit_rate", v) for v in
                                    (record["noop_kept"], record["noop_kept_bound"], record["at_zero"]["noop_kept"]))
            self.console.print(f"keep margin {record['margin']:g} {record['unit']} leaves {kept} of {record['n']} "
                               f"spans needing no fix unchanged (lower bound {bound} at "
                               f"{100 * ecfg.keep_confidence:g} % confidence; {at_zero} at 0)")
            return {**trained.result, "keep_margin": record["margin"], "noop_kept": record["noop_kept"],
                    "outputs": [str(folder / KEEP_MARGIN_FILE)]}

        return self.cache.run("calibrate", self.title(4, f"keep margin, calibrated on {path}"), inputs, run)

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

    def node(self, exported: Done, reference: SystemRow, golden: tuple[str, str]) -> None:
        """The export's small file in Transformers.js (Node) on the golden set: an eval of the ``node:`` system like
        any other row, then compared with ``reference`` (onnxruntime, the same file) on the same spans."""
        from spantune.demo.report import node_facts
        from spantune.evaluate.systems import NODE_PREFIX
        from spantune.infer.node_backend import DEFAULT_JS_DIR, harness_path

        if not self.cfg.node.enabled:
            self.console.print(f"[yellow]-[/] {self.title(8, 'Transformers.js (Node)')}: skipped (node.enabled: false)")
            return
        small = self.cfg.export.small
        system = SystemRow(f"tuned {small} (Transformers.js)", f"{NODE_PREFIX}{exported.result['dir']}", exported.key,
                           small,
                           inputs={"js_lock_sha256": file_digest(DEFAULT_JS_DIR / "package-lock.json"),
                                   "harness_sha256": file_digest(harness_path(DEFAULT_JS_DIR))})
        self._eval(8, system, "golden", *golden, self.cfg.node.limit)
        run, ref = (Path(self.evals[(c.label, "golden")]["report"]).parent for c in (system, reference))
        self.node_facts = node_facts(run, ref)

    def page(self, exported: Done, golden: tuple[str, str]) -> None:
        """The export's browser file timed in the demo page (Chromium, WASM) against Node on the same file and
        spans: what a user's browser would wait per suggestion. Skipped, saying why, without Chromium."""
        from spantune.demo.page import CHROMIUM, page_cases, summarize
        from spantune.demo.server import drive_browser
        from spantune.infer.node_backend import DEFAULT_JS_DIR
        from spantune.io import write_json

        pcfg, title = self.cfg.page, self.title(9, "the page in Chromium (WASM)")
        if not pcfg.enabled or not CHROMIUM.is_file():
            why = "page.enabled: false" if not pcfg.enabled else f"no Chromium at {CHROMIUM} (`make browser`)"
            self.console.print(f"[yellow]-[/] {title}: skipped ({why})")
            return
        out = self.run_dir / "page"
        page_files = sorted((DEFAULT_JS_DIR / "demo").glob("*.*")) + [DEFAULT_JS_DIR / "src" / "corrector.js"]
        dtype = self.cfg.export.small
        inputs = {"export": exported.key, "data_sha256": golden[1], "dtype": dtype, "spans": pcfg.spans,
                  "threads": pcfg.threads, "js_lock_sha256": file_digest(DEFAULT_JS_DIR / "package-lock.json"),
                  "page_sha256": {p.name: file_digest(p) for p in page_files}}

        def run(resume: bool) -> dict[str, Any]:
            result = drive_browser(Path(exported.result["dir"]), page_cases(Path(golden[0]), pcfg.spans),
                                   fresh_dir(out, False), screenshot=out / "demo.png", warmup=1, dtype=dtype,
                                   threads=pcfg.threads)
            summary = summarize(result)
            write_json(out / "summary.json", summary)
            w, n = summary["browser_worker"], summary["node"]
            self.console.print(f"page {summary['dtype']}: p50 {w['p50_ms']:.0f} ms per span (Node {n['p50_ms']:.0f} ms), "
                               f"same answer as Node on {summary['browser_equals_node']:.0%}")
            return {**summary, "outputs": [str(out / "summary.json")]}

        self.page_facts = self.cache.run("page", f"{title}: {dtype}, {pcfg.threads} thread(s)", inputs, run).result


def run_demo(cfg: DemoConfig, force: bool = False) -> Path:
    """Run (or resume) every step; returns the path of REPORT.md."""
    from rich.console import Console

    from spantune.config import dump_yaml
    from spantune.demo.report import render_tables, write_report
    from spantune.evaluate.systems import ONNX_PREFIX
    from spantune.io import atomic_write

    console = Console(stderr=True)
    demo = Demo(cfg, force, console)
    with atomic_write(demo.run_dir / "config.yaml") as fh:
        fh.write(dump_yaml(cfg))
    model = demo.model()
    data = demo.data()
    sets = demo.datasets(data)
    limit = cfg.eval.untuned_limit
    untuned = SystemRow("untuned" if limit is None else f"untuned (first {limit})", cfg.model, upstream=model.key)
    demo.evaluate(3, untuned, sets if cfg.eval.untuned_real else {"golden": sets["golden"]}, limit=limit)
    trained = demo.calibrate(demo.train(model, data), data, sets)
    demo.evaluate(5, SystemRow("tuned", trained.result["run_dir"], upstream=trained.key), sets)
    for system in (SystemRow("identity", "identity"), SystemRow("Harper", "harper")):
        demo.evaluate(6, system, sets)
    exported = demo.export(trained)
    small = SystemRow(f"tuned {cfg.export.small} (onnxruntime)", f"{ONNX_PREFIX}{exported.result['dir']}",
                      exported.key, cfg.export.small)
    demo.evaluate(7, small, {"golden": sets["golden"]})
    demo.node(exported, small, sets["golden"])
    demo.page(exported, sets["golden"])
    report = write_report(demo.run_dir, cfg.model, demo.cache.log, demo.evals, demo.node_facts, demo.page_facts,
                          sets, trained, exported)
    out = Console(width=120)
    out.rule(f"[bold]{demo.title(10, 'side by side')}[/]", align="left")
    for table in render_tables(demo.evals, sets):
        out.print(table)
    out.print(f"full report: {report}")
    return report
