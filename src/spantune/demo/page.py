"""The demo page timed in Chromium: spans as page inputs, and the latency summary of one run of the page driver
(js/demo/test/e2e.mjs through :func:`spantune.demo.server.drive_browser`: the page in Chromium and the Node
harness answer the same spans from the same file). Used by the demo's page step and benchmarks/browser_latency.py."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

#: The browser the page driver launches (js/demo/test/e2e.mjs reads the same variable).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation between spans)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def page_cases(data: Path, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` examples of ``data`` as page inputs: the whole text, with the span selected
    (code-point offsets); the first one also asks for a screenshot."""
    from spantune.schema import read_jsonl

    cases = []
    for ex in read_jsonl(data, clip=True)[:limit]:
        start = len(ex.ctx_before)
        cases.append({"text": ex.ctx_before + ex.span_in + ex.ctx_after, "start": start,
                      "end": start + len(ex.span_in)})
    cases[0]["screenshot"] = True
    return cases


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """One driver run: per-span latency of the page (worker, click → shown) and of Node, passes, agreement."""
    browser, node = result["browser"]["answers"], result["node"]

    def stats(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "mean_ms": statistics.fmean(ms)}

    return {
        "spans": len(node),
        "dtype": result["browser"].get("dtype"),
        "browser_worker": stats([a["latencyMs"] for a in browser]),
        "browser_click_to_shown": stats([a["wallMs"] for a in browser]),
        "node": stats([a["latencyMs"] for a in node]),
        "mean_new_tokens": statistics.fmean(a["tokens"] for a in node),
        "passes_per_span": statistics.fmean(a["passes"] for a in node),
        "browser_equals_node": sum(a["raw"] == b["raw"] for a, b in zip(browser, node)) / len(node),
        "browser_load_s": result["browser"]["loadMs"] / 1000,
        "wasm_threads": result["browser"]["threads"],
        "chromium": result["browser"]["userAgent"],
        "webgpu_adapter": result["browser"]["webgpu"],
    }
