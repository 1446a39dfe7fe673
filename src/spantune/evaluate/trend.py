"""``spantune eval trend DIR``: metrics across stored reports over time (nightly runs)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.evaluate.metrics import METRICS
from spantune.evaluate.report import fmt
from spantune.io import atomic_write

TREND_METRICS = ("exact_match", "chrf", "noop_false_edit_rate", "missed_fix_rate", "verbose_rate",
                 "overrun_rate", "fallback_rate", "latency_p50_ms")


def series_name(report: dict[str, Any]) -> str:
    """Reports are comparable when system, data file and subset agree: one line per such series."""
    data = report["data"]
    subset = f"[{data['subset']}]" if data.get("subset") else ""
    return f"{report['system']['spec']} · {Path(data['path']).name}{subset}"


def load_reports(root: str | Path) -> list[dict[str, Any]]:
    """Every spantune report.json under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise SpantuneError(f"{root}: not a folder")
    reports = []
    for path in sorted(root.rglob("report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SpantuneError(f"{path}: unreadable report: {exc}") from None
        if isinstance(report, dict) and "report_version" in report:
            reports.append({**report, "_path": str(path)})
    if not reports:
        raise SpantuneError(f"{root}: no report.json from spantune eval found")
    return sorted(reports, key=lambda r: r["created"])


def plot_trend(reports: list[dict[str, Any]], path: Path) -> None:
    """One panel per metric, one line per series, x = report creation time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        series.setdefault(series_name(r), []).append(r)
    cols = 2
    rows = (len(TREND_METRICS) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3 * rows), sharex=True, squeeze=False)
    for ax, name in zip(axes.flat, TREND_METRICS):
        scale = 100.0 if METRICS[name].unit == "%" else 1.0
        for label, runs in series.items():
            points = [(datetime.fromisoformat(r["created"]), r["metrics"][name]["value"]) for r in runs]
            points = [(t, v * scale) for t, v in points if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        unit = METRICS[name].unit
        ax.set_title(METRICS[name].label + (f" ({unit})" if unit else ""))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(TREND_METRICS):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(len(labels), 1)), fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def print_trend(reports: list[dict[str, Any]]) -> None:
    """Per series: the latest value of each metric and its change since the previous report."""
    from rich.console import Console
    from rich.table import Table

    latest: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        latest.setdefault(series_name(r), []).append(r)
    table = Table(title=f"{len(reports)} report(s)")
    table.add_column("series")
    table.add_column("runs", justify="right")
    for name in TREND_METRICS:
        table.add_column(METRICS[name].label, justify="right")
    for label, runs in latest.items():
        cells = []
        for name in TREND_METRICS:
            now = runs[-1]["metrics"][name]["value"]
            before = runs[-2]["metrics"][name]["value"] if len(runs) > 1 else None
            change = f" ({fmt(name, now - before, delta=True)})" if now is not None and before is not None else ""
            cells.append(fmt(name, now) + change)
        table.add_row(label, str(len(runs)), *cells)
    Console(width=200).print(table)
