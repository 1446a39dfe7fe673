"""Turn evaluated rows into report.json, report.md and PNG charts, and print the summary table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from spantune.evaluate.bootstrap import breakdowns, compare, group_positions, summarize
from spantune.evaluate.metrics import METRICS, Columns, EvalRow, exact_match, flag_problem
from spantune.io import atomic_write, write_json
from spantune.runinfo import git_commit
from spantune.versions import package_versions

REPORT_VERSION = 1
WORST_N = 20
CHARTS = {"tag": "em_by_tag.png", "length": "em_by_length.png"}
_GROUP_TITLES = {"tag": "tag", "length": "span words", "language": "language", "source": "source"}


def fmt(name: str, value: float | None, delta: bool = False) -> str:
    """A metric value (or a delta of it) in its unit: rates in percent, chrF 0–100, latency in ms."""
    if value is None:
        return "—"
    unit = METRICS[name].unit
    sign = "+" if delta else ""
    if unit == "%":
        return f"{100 * value:{sign}.1f}" + (" pts" if delta else "%")
    if name == "levenshtein":
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.1f}" + (f" {unit}" if unit else "")


def fmt_ci(name: str, ci: list[float] | None, delta: bool = False) -> str:
    return "—" if ci is None else f"[{fmt(name, ci[0], delta)}, {fmt(name, ci[1], delta)}]"


def worst_errors(rows: Sequence[EvalRow], n: int = WORST_N) -> list[dict[str, Any]]:
    """The ``n`` wrong predictions furthest (normalized Levenshtein) from ``span_out``, for reading."""
    wrong = [r.to_dict() for r in rows if not r.exact]
    wrong.sort(key=lambda d: (-d["levenshtein"], d["key"]))
    keep = ("key", "prediction", "raw", "levenshtein", "overrun", "verbose", "fallback", "false_edit", "missed_fix")
    return [{**{k: d[k] for k in keep}, **{k: d["example"].get(k) for k in
             ("ctx_before", "span_in", "ctx_after", "span_out", "tags")}} for d in wrong[:n]]


def baseline_section(rows: Sequence[EvalRow], base_rows: Sequence[EvalRow], base_report: dict[str, Any],
                     path: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Paired comparison on the examples both runs share (matched by example key)."""
    from spantune.errors import SpantuneError

    by_key = {r.key: r for r in base_rows}
    shared = [r for r in rows if r.key in by_key]
    if not shared:
        raise SpantuneError(f"baseline {path} shares no example with this data (examples are matched by id "
                            "or by their four text fields)")
    cols = Columns.from_rows(shared)
    base = Columns.from_rows([by_key[r.key] for r in shared])
    groups: dict[str, Any] = {}
    for by in CHARTS:
        groups[by] = {g: {"n": len(pos), "value": exact_match(cols.take(pos)), "baseline": exact_match(base.take(pos))}
                      for g, pos in group_positions(shared, by).items()}
    return {"report": path, "system": base_report.get("system", {}).get("spec"), "n_shared": len(shared),
            "metrics": compare(cols, base, n_boot, seed), "exact_match_by": groups}


def build_report(rows: Sequence[EvalRow], *, system: dict[str, Any], data: dict[str, Any], n_selected: int,
                 baseline: dict[str, Any] | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything report.md and the gates need, JSON-serializable. ``baseline`` from :func:`baseline_section`."""
    cols = Columns.from_rows(rows)
    problems = [(r.key, p) for r in rows if (p := flag_problem(r)) is not None]
    return {
        "report_version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "system": system,
        "data": data,
        "run": {"n_selected": n_selected, "n_evaluated": len(rows), "flag_violations": len(problems),
                "flag_violation_examples": [{"key": k, "problem": p} for k, p in problems[:5]]},
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "percentile 95%"},
        "metrics": summarize(cols, n_boot, seed),
        "breakdowns": breakdowns(rows, cols, n_boot, seed),
        "baseline": baseline,
        "gates": None,
        "worst_errors": worst_errors(rows),
        "versions": {**package_versions(("spantune", "torch", "transformers", "onnxruntime", "sacrebleu",
                                         "rapidfuzz", "harper-py")), "git_commit": git_commit()},
    }


# ---------------------------------------------------------------- markdown


def _cell(text: Any) -> str:
    """A markdown table cell: pipes escaped, line breaks visible."""
    return str(text).replace("|", "\\|").replace("\n", "⏎").replace("\r", "⏎")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The one markdown table writer (eval reports, the demo's REPORT.md, the keep-margin sweep)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _metrics_table(report: dict[str, Any]) -> list[str]:
    base = report.get("baseline")
    header = ["Metric", "Value", "95% CI"]
    if base:
        header += ["Baseline", "Δ", "Δ 95% CI", "Sig."]
    rows = []
    for name, m in report["metrics"].items():
        row = [METRICS[name].label, fmt(name, m["value"]), fmt_ci(name, m["ci"])]
        if base:
            d = base["metrics"][name]
            row += [fmt(name, d["baseline"]), fmt(name, d["delta"], delta=True), fmt_ci(name, d["ci"], delta=True),
                    "*" if d["significant"] else ""]
        rows.append(row)
    return markdown_table(header, rows)


_BREAKDOWN_COLUMNS = ("exact_match", "chrf", "levenshtein", "edit_precision", "edit_recall", "noop_false_edit_rate",
                      "missed_fix_rate", "verbose_rate", "fallback_rate")
#: Columns of the per-source table printed on the terminal (report.md has every breakdown column).
_SOURCE_COLUMNS = ("exact_match", "edit_precision", "edit_recall", "noop_false_edit_rate")


def _breakdown_table(by: str, groups: dict[str, Any]) -> list[str]:
    header = [_GROUP_TITLES[by], "n", "EM 95% CI", *(METRICS[c].label for c in _BREAKDOWN_COLUMNS)]
    rows = [[g, v["n"], fmt_ci("exact_match", v["exact_match_ci"]),
             *(fmt(c, v["metrics"][c]) for c in _BREAKDOWN_COLUMNS)] for g, v in groups.items()]
    return markdown_table(header, rows)


def _shown(text: str | None) -> str:
    """Text between «» so that leading and trailing spaces are visible."""
    return "—" if text is None else f"«{text}»"


def markdown(report: dict[str, Any]) -> str:
    """report.md: headline metrics (with baseline deltas), gates, breakdowns, charts, worst errors."""
    sysinfo, data, run = report["system"], report["data"], report["run"]
    lines = [f"# Evaluation of `{sysinfo['spec']}`", ""]
    digest = sysinfo.get("sha256") or sysinfo.get("commit")
    lines += [f"- System: {sysinfo.get('kind')} `{sysinfo['spec']}`" + (f", sha256/commit `{digest}`" if digest else ""),
              f"- Data: `{data['path']}` (sha256 `{data['sha256']}`)" + (f", subset `{data['subset']}`" if data.get("subset") else "")
              + (f", limit {data['limit']}" if data.get("limit") else ""),
              f"- Evaluated {run['n_evaluated']} of {run['n_selected']} selected examples; "
              f"{run['flag_violations']} post-processing flag violation(s)",
              f"- Created {report['created']}; bootstrap {report['bootstrap']['resamples']} resamples, "
              f"seed {report['bootstrap']['seed']}", ""]
    base = report.get("baseline")
    lines += ["## Metrics", ""]
    if base:
        lines += [f"Baseline: `{base['system']}` ({base['report']}), paired on {base['n_shared']} shared examples; "
                  "* marks a delta whose paired-bootstrap 95% CI excludes zero.", ""]
    lines += _metrics_table(report) + ["", "Metric definitions: docs/metrics.md.", ""]
    gates = report.get("gates")
    if gates:
        lines += [f"## Gates ({gates['file']}): {'PASSED' if gates['passed'] else 'FAILED'}", ""]
        lines += [f"- {'✅' if g['passed'] else '❌'} {g['message']}" for g in gates["results"]] + [""]
    lines += ["## Breakdowns", ""]
    for by, groups in report["breakdowns"].items():
        lines += [f"### By {_GROUP_TITLES[by]}", ""] + _breakdown_table(by, groups) + [""]
    lines += ["## Charts", ""] + [f"![exact match by {_GROUP_TITLES[by]}]({name})" for by, name in CHARTS.items()] + [""]
    lines += [f"## Worst errors (top {len(report['worst_errors'])} by normalized Levenshtein)", ""]
    lines += markdown_table(["key", "tags", "context", "expected", "got", "lev.", "flags"], [
        [e["key"], ",".join(e["tags"] or []), f"{e['ctx_before']}[{e['span_in']}]{e['ctx_after']}",
         _shown(e["span_out"]), _shown(e["prediction"]), f"{e['levenshtein']:.2f}",
         " ".join(k for k in ("overrun", "verbose", "fallback", "false_edit", "missed_fix") if e[k])]
        for e in report["worst_errors"]])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- charts


def plot_exact_match_by(report: dict[str, Any], by: str, path: Path) -> None:
    """Grouped bars of exact match per group, with the 95% CI, beside the baseline's when there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report["breakdowns"][by]
    names = list(groups)
    values = np.array([100 * (groups[g]["metrics"]["exact_match"] or 0.0) for g in names])
    cis = [groups[g]["exact_match_ci"] for g in names]
    err = np.array([[max(v - 100 * c[0], 0), max(100 * c[1] - v, 0)] if c else [0, 0] for v, c in zip(values, cis)]).T
    base = (report.get("baseline") or {}).get("exact_match_by", {}).get(by)
    width = 0.4 if base else 0.7
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names) + 2), 4))
    ax.bar(x - (width / 2 if base else 0), values, width, yerr=err,
           capsize=3, label=report["system"]["spec"])
    if base:
        bvals = [100 * (base[g]["baseline"] or 0.0) if g in base else np.nan for g in names]
        ax.bar(x + width / 2, bvals, width, label=f"baseline: {report['baseline']['system']}")
    labels = [f"{g}\nn={groups[g]['n']}" for g in names]
    ax.set_xticks(x, labels, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(0, 120)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(f"Exact match by {_GROUP_TITLES[by]} (whiskers: 95% CI)")
    ax.legend(loc="upper center", ncol=2, fontsize="small", frameon=False)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def write_report(out_dir: Path, report: dict[str, Any]) -> list[Path]:
    """Write report.json, report.md and the charts into ``out_dir`` (each file atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "report.json", report)
    with atomic_write(out_dir / "report.md") as fh:
        fh.write(markdown(report))
    for by, name in CHARTS.items():
        plot_exact_match_by(report, by, out_dir / name)
    return [out_dir / "report.json", out_dir / "report.md", *(out_dir / n for n in CHARTS.values())]


def print_summary(report: dict[str, Any], file: Any = None) -> None:
    """The headline metrics table on the terminal (rich), with baseline deltas when present, and a
    per-source table when the data mixes sources (their edit precision and recall differ most)."""
    from rich.console import Console
    from rich.table import Table

    base = report.get("baseline")
    table = Table(title=f"{report['system']['spec']} on {Path(report['data']['path']).name} "
                        f"({report['run']['n_evaluated']} examples)")
    for col in ("metric", "value", "95% CI", *(("baseline", "Δ", "sig.") if base else ())):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in report["metrics"].items():
        row = [METRICS[name].label, fmt(name, m["value"]), fmt_ci(name, m["ci"])]
        if base:
            d = base["metrics"][name]
            row += [fmt(name, d["baseline"]), fmt(name, d["delta"], delta=True), "*" if d["significant"] else ""]
        table.add_row(*row)
    if base:
        table.caption = (f"Δ = this run − baseline {base['system']}, paired on {base['n_shared']} shared examples; "
                         "* = 95% CI of Δ excludes 0")
    console = Console(file=file or sys.stdout, width=120)
    console.print(table)
    sources = report["breakdowns"]["source"]
    if len(sources) > 1:
        per_source = Table(title="by source")
        for col in ("source", "n", *(METRICS[c].label for c in _SOURCE_COLUMNS)):
            per_source.add_column(col, justify="left" if col == "source" else "right")
        for group, v in sources.items():
            per_source.add_row(group, str(v["n"]), *(fmt(c, v["metrics"][c]) for c in _SOURCE_COLUMNS))
        console.print(per_source)
