"""The demo's results: the side-by-side tables (terminal and ``REPORT.md``), and the training, export and
Transformers.js facts beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spantune.demo.cache import Done, duration

REPORT_FILE = "REPORT.md"

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


def node_facts(run: Path, reference: Path) -> dict[str, Any]:
    """What REPORT.md says about the Transformers.js eval in ``run``: spans, model load time, and how often its
    answers equal those of the onnxruntime eval in ``reference`` on the spans both decoded."""
    from spantune.errors import SpantuneError
    from spantune.evaluate.evaluation import load_run

    report, rows = load_run(run)
    ort = {row.key: row for row in load_run(reference)[1]}
    shared = [(row, ort[row.key]) for row in rows if row.key in ort]
    if not shared:
        raise SpantuneError(f"{reference} holds none of the spans decoded by Transformers.js in {run}")
    return {"n": len(rows), "load_s": report["system"]["load_s"],
            "dtype": report["system"].get("dtype"), "agreement_with_onnxruntime": {
                "n": len(shared), "raw": sum(a.raw == b.raw for a, b in shared) / len(shared),
                "inserted_text": sum(a.prediction == b.prediction for a, b in shared) / len(shared)}}


def render_tables(evals: dict[tuple[str, str], dict[str, Any]], sets: dict[str, tuple[str, str]]) -> list[Any]:
    from rich.table import Table

    tables = []
    for set_name, (path, _) in sets.items():
        table = Table(title=f"{set_name}: {path}")
        table.add_column("system")
        for _, header in TABLE_COLUMNS:
            table.add_column(header, justify="right")
        for row in side_by_side(evals, set_name):
            table.add_row(*row)
        tables.append(table)
    return tables


def write_report(run_dir: Path, model: str, steps: list[tuple[str, str, float]],
                 evals: dict[tuple[str, str], dict[str, Any]], node: dict[str, Any] | None,
                 page: dict[str, Any] | None, sets: dict[str, tuple[str, str]], trained: Done,
                 exported: Done) -> Path:
    """REPORT.md: the side-by-side tables, training, export, Node and page facts, and links to every report.
    ``steps`` is the step cache's log: (step, ran or cached, seconds)."""
    import os
    import platform

    from spantune.evaluate.report import markdown_table
    from spantune.infer.keep import KEEP_MARGIN_UNIT
    from spantune.io import atomic_write
    from spantune.runinfo import git_commit
    from spantune.versions import package_versions

    header = ["system", *(h for _, h in TABLE_COLUMNS)]
    versions = package_versions(("torch", "transformers", "peft", "trl", "onnxruntime"))
    ran = sum(sec for _, status, sec in steps if status == "ran")
    cached = sum(sec for _, status, sec in steps if status == "cached")
    lines = ["# spantune demo report", "",
             f"- model: `{model}`; config: `{run_dir / 'config.yaml'}`; git {git_commit()}",
             f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores; "
             + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- time: {duration(ran)} in this run, {duration(ran + cached)} for all steps "
             "(cached steps counted at their original duration)", ""]
    for set_name, (path, _) in sets.items():
        lines += [f"## {set_name} (`{path}`)", "", *markdown_table(header, side_by_side(evals, set_name)), ""]
    t = trained.result
    lines += ["## Training", "", f"- run folder: `{t['run_dir']}` (model card: `{t['run_dir']}/README.md`)",
              f"- steps: {t.get('global_step')}, runtime {duration(t.get('train_runtime_s') or 0)}, "
              f"{t.get('tokens_per_s')} tokens/s, last loss {t.get('last_loss')}"
              + (f", stopped by {t['stopped_by']}" if t.get("stopped_by") else ""),
              f"- best checkpoint: {t.get('best')}"]
    if "keep_margin" in t:
        lines.append(f"- keep margin: {t['keep_margin']:g} {KEEP_MARGIN_UNIT}, calibrated to leave "
                     f"{100 * t['noop_kept']:.1f} % of correct real-dev spans unchanged "
                     f"(`{t['run_dir']}/keep_margin.md`); every tuned row uses it")
    lines.append("")
    e = exported.result
    lines += ["## Export", "", f"- folder: `{e['dir']}`"]
    for dtype, size in e["onnx_bytes"].items():
        lines.append(f"- {dtype}: {size / 1e6:.1f} MB ({e['size_ratio_vs_fp32'][dtype]:.0%} of fp32)")
    for dtype, p in ((e.get("parity") or {}).get("dtypes") or {}).items():
        lines.append(f"- parity {dtype}: greedy agreement with PyTorch {p['agreement_torch']:.1%}, "
                     f"max |Δlogit| {p['max_abs_logit_diff']:.3g}")
    lines.append("")
    if node is not None:
        agree, dtype = node["agreement_with_onnxruntime"], node["dtype"]
        lines += ["## Transformers.js (Node)", "",
                  f"- {node['n']} golden spans decoded by Transformers.js {dtype} in Node "
                  f"(model load {node['load_s']} s)",
                  f"- same raw output as Python onnxruntime {dtype} on {agree['raw']:.1%} of {agree['n']} spans "
                  f"(same inserted text: {agree['inserted_text']:.1%})", ""]
    if page is not None:
        w, c, n = page["browser_worker"], page["browser_click_to_shown"], page["node"]
        lines += ["## The page in Chromium (WASM)", "",
                  f"- {page['spans']} golden spans, {page['dtype']} file, {page['wasm_threads']} WASM thread(s), after "
                  f"one warm-up; {page['chromium']}",
                  f"- per span: page {w['p50_ms']:.0f} ms p50 / {w['p95_ms']:.0f} ms p95 (click → shown "
                  f"{c['p50_ms']:.0f} ms p50); Node on the same file {n['p50_ms']:.0f} / {n['p95_ms']:.0f} ms "
                  f"({w['p50_ms'] / n['p50_ms']:.2f}× Node at p50)",
                  f"- page load {page['browser_load_s']:.1f} s; {page['passes_per_span']:.1f} forward passes per span; "
                  f"same answer as Node on {page['browser_equals_node']:.0%} of the spans", ""]
    lines += ["## Reports", "", *(f"- {label} on {name}: `{r['report']}`" for (label, name), r in evals.items()),
              "", "## Steps", "", *markdown_table(["step", "status", "time"],
                                               [[t_, s, duration(sec)] for t_, s, sec in steps]), ""]
    path = run_dir / REPORT_FILE
    with atomic_write(path) as fh:
        fh.write("\n".join(lines))
    return path
