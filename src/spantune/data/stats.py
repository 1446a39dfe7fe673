"""Dataset statistics: what a span dataset holds, as a dict (for manifests), a table and a chart."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from spantune.data.split import primary_tag, span_words
from spantune.data.tags import LENGTH_BUCKETS, length_bucket
from spantune.io import atomic_write
from spantune.schema import SpanExample


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": round(statistics.fmean(values), 1), "median": statistics.median(values), "max": max(values)}


def compute_stats(examples: list[SpanExample]) -> dict[str, Any]:
    """Counts per tag, language, source and span-length bucket; no-op share; context and span lengths."""
    n = len(examples)
    buckets = Counter(length_bucket(span_words(ex)) for ex in examples)
    return {
        "examples": n,
        "noop_share": round(sum(ex.is_noop for ex in examples) / n, 4) if n else 0.0,
        "tags": dict(Counter(primary_tag(ex) for ex in examples).most_common()),
        "languages": dict(Counter(ex.language or "unknown" for ex in examples).most_common()),
        "sources": dict(Counter(ex.source or "unknown" for ex in examples).most_common()),
        "span_words": {b: buckets[b] for b in LENGTH_BUCKETS if buckets[b]},
        "ctx_before_chars": _summary([len(ex.ctx_before) for ex in examples]),
        "ctx_after_chars": _summary([len(ex.ctx_after) for ex in examples]),
        "span_in_chars": _summary([len(ex.span_in) for ex in examples]),
    }


def render_table(stats: dict[str, Any], title: str) -> Any:
    """A rich table with one section per breakdown."""
    from rich.table import Table

    n = stats["examples"] or 1
    table = Table(title=f"{title}: {stats['examples']} examples, no-op share {stats['noop_share']:.1%}")
    table.add_column("breakdown")
    table.add_column("value")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for section in ("tags", "span_words", "sources", "languages"):
        for i, (key, count) in enumerate(stats[section].items()):
            table.add_row(section if i == 0 else "", key, str(count), f"{count / n:.1%}",
                          end_section=i == len(stats[section]) - 1)
    for section in ("ctx_before_chars", "ctx_after_chars", "span_in_chars"):
        s = stats[section]
        table.add_row(section, "mean / median / max", f"{s['mean']} / {s['median']} / {s['max']}", "")
    return table


def write_chart(stats: dict[str, Any], examples: list[SpanExample], path: str | Path, title: str) -> None:
    """PNG with tag, span-length, source and context-length panels (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = (("tags", "primary tag"), ("span_words", "span length (words)"), ("sources", "source"))
    for ax, (key, label) in zip(axes.flat, panels):
        items = list(stats[key].items())
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4c72b0")
        ax.set_title(label)
        ax.set_xlabel("examples")
    ax = axes.flat[3]
    ax.hist([len(ex.ctx_before) for ex in examples], bins=range(0, 62, 4), alpha=0.6, label="ctx_before")
    ax.hist([len(ex.ctx_after) for ex in examples], bins=range(0, 62, 4), alpha=0.6, label="ctx_after")
    ax.set_title("context length (characters)")
    ax.legend()
    fig.suptitle(f"{title}: {stats['examples']} examples, no-op share {stats['noop_share']:.1%}")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
