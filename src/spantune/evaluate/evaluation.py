"""One evaluation of a system on span data, as a library call: ``spantune eval``, ``spantune calibrate`` and
the demo all run :func:`run_eval`, so they pick examples, resume, record and gate the same way.

Top-level imports stay light (this module is re-exported by :mod:`spantune.evaluate`); the backends, numpy
and the charts load when an evaluation runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError


@dataclass(frozen=True)
class Report:
    """A finished evaluation: its run folder (report.md, report.json, charts, predictions.jsonl) and what
    report.json holds."""

    out: Path
    content: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float | None]:
        """Each metric's value (report.json keeps its CI and unit beside it)."""
        return {name: m["value"] for name, m in self.content["metrics"].items()}

    @property
    def failed_gates(self) -> list[dict[str, Any]]:
        gates = self.content.get("gates")
        return [r for r in gates["results"] if not r["passed"]] if gates else []


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped decoding; every finished prediction is kept, so ``resume=True`` continues the run. A
    KeyboardInterrupt, so every caller's Ctrl-C path (exit 130, the demo's resumable step) still applies."""


def subsets_of(extra: dict[str, Any]) -> list[str]:
    """Subset names an example is marked with: ``"subsets": [...]`` or ``"subset": "..."``."""
    value = extra.get("subsets", extra.get("subset"))
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def select_examples(path: str | Path, subset: str | None, limit: int | None) -> tuple[list[Any], dict[str, Any]]:
    """The examples to evaluate (file order) and the data facts report.json records."""
    from spantune.errors import InputError
    from spantune.evaluate.metrics import REFERENCES_FIELD, accepted_outputs, example_key
    from spantune.io import sha256_file
    from spantune.schema import check_jsonl

    checked = check_jsonl(path)
    if checked.bad:
        raise checked.bad[0][1]
    for lineno, ex, _ in checked.good:
        try:
            accepted_outputs(ex)
        except ValueError as exc:
            raise InputError(path, lineno, REFERENCES_FIELD, str(exc)) from None
    examples = [ex for _, ex, _ in checked.good]
    n_file = len(examples)
    if not examples:
        raise SpantuneError(f"{path}: no examples to evaluate")
    if subset:
        examples = [ex for ex in examples if subset in subsets_of(ex.extra)]
        if not examples:
            raise SpantuneError(f"{path}: no example is marked with subset {subset!r} "
                                f"(field \"subsets\": [\"{subset}\"]); or pass the subset's own file to --data")
    if limit is not None:
        if limit < 1:
            raise SpantuneError("--limit must be at least 1")
        examples = examples[:limit]
    seen: set[str] = set()
    for ex in examples:
        key = example_key(ex)
        if key in seen:
            raise SpantuneError(f"{path}: two examples share the key {key!r} (give them distinct ids)")
        seen.add(key)
    data = {"path": str(path), "sha256": sha256_file(path), "subset": subset, "limit": limit,
            "n_file": n_file, "n_selected": len(examples)}
    return examples, data


def load_run(path: str | Path) -> tuple[dict[str, Any], list[Any]]:
    """A stored eval run (its folder or its report.json): the report and its predictions."""
    from spantune.evaluate.runner import PREDICTIONS, read_predictions

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    report_path = folder / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpantuneError(f"{report_path}: cannot read the report: {exc}") from None
    return report, read_predictions(folder / PREDICTIONS)


def _finish(out: Path, content: dict[str, Any], gates: str | Path | None) -> Report:
    """Check ``gates`` (a gates YAML, if any) into the report, then write report.json, report.md and charts."""
    from spantune.evaluate.gates import check_gates, load_gates
    from spantune.evaluate.report import write_report

    if gates:
        results = check_gates(load_gates(gates), content)
        content["gates"] = {"file": str(gates), "passed": all(r.passed for r in results),
                            "results": [r.to_dict() for r in results]}
    write_report(out, content)
    return Report(out, content)


def regate(run: str | Path, gates: str | Path) -> Report:
    """Re-check ``gates`` on a stored run (its folder or report.json), rewriting its report with the results."""
    content, _ = load_run(run)
    return _finish(Path(run) if Path(run).is_dir() else Path(run).parent, content, gates)


def run_eval(system: str, data: str | Path, *, out: Path, subset: str | None = None, limit: int | None = None,
             dtype: str | None = None, device: str = "auto", max_new_tokens: int = 32,
             keep_margin: float | None = None, score_keep: bool = False, js_dir: Path | None = None,
             baseline: str | Path | None = None, gates: str | Path | None = None, n_boot: int = 1000,
             seed: int = 0, resume: bool = False) -> Report:
    """Evaluate ``system`` (a spec of :func:`~spantune.evaluate.systems.load_system`) on the span JSONL ``data``
    into the run folder ``out``, and return its report.

    Every prediction is appended to ``out`` as it comes: Ctrl-C raises :class:`EvalInterrupted` with the rows so
    far kept, and ``resume`` continues a run started with the same settings. ``keep_margin`` None uses the
    model's calibrated margin (printed with its source before the model loads); ``js_dir`` is the js/ folder a
    ``node:`` system runs (None: this checkout's). ``baseline`` (an earlier run) adds paired deltas; ``gates``
    (a gates YAML) is checked into the report, its failures in :attr:`Report.failed_gates`.
    """
    from spantune.evaluate.gates import load_gates
    from spantune.evaluate.metrics import example_key
    from spantune.evaluate.report import baseline_section, build_report
    from spantune.evaluate.runner import PREDICTIONS, open_run, run_corrector
    from spantune.evaluate.systems import keep_info, load_system
    from spantune.infer.keep import KEEP_MARGIN_UNIT, NO_MODEL_SYSTEMS, resolve_keep
    from spantune.io import write_json

    if dtype and system in NO_MODEL_SYSTEMS:
        raise SpantuneError(f"--dtype does not apply to the {system} system")
    if n_boot < 1:
        raise SpantuneError("--bootstrap must be at least 1")
    examples, data_info = select_examples(data, subset, limit)
    if gates:
        load_gates(gates)  # fail on a bad gates file before any model is loaded
    base_run = load_run(baseline) if baseline else None
    keep, keep_from = resolve_keep(system, keep_margin, score_keep)
    print(f"keep margin: {keep.margin:g} {KEEP_MARGIN_UNIT} ({keep_from})")
    keep_record = {**keep_info(keep), "keep_margin": keep.margin, "keep_margin_from": keep_from}
    meta = {"system": system, "dtype": dtype, "max_new_tokens": max_new_tokens,
            "data_sha256": data_info["sha256"], "subset": subset, "limit": limit, **keep_record}
    done = open_run(out, meta, resume)
    todo = [ex for ex in examples if example_key(ex) not in done]
    system_file = out / "system.json"
    if todo or not system_file.is_file():
        loaded = load_system(system, dtype=dtype, device=device, max_new_tokens=max_new_tokens, keep=keep,
                             js_dir=js_dir)
        write_json(system_file, {**loaded.info, **keep_record})
        new_rows, interrupted = run_corrector(loaded.corrector, todo, out, already=len(examples) - len(todo))
        done.update((row.key, row) for row in new_rows)
        if interrupted:
            raise EvalInterrupted(f"{len(done)} of {len(examples)} predictions kept in {out / PREDICTIONS}")
    info = json.loads(system_file.read_text(encoding="utf-8"))
    rows = [done[example_key(ex)] for ex in examples]
    base = None
    if base_run is not None:
        base = baseline_section(rows, base_run[1], base_run[0], str(baseline), n_boot, seed)
    content = build_report(rows, system=info, data=data_info, n_selected=len(examples), baseline=base,
                           n_boot=n_boot, seed=seed)
    return _finish(out, content, gates)
