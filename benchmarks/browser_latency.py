"""Per-span latency of the browser demo (Transformers.js WASM in Debian's headless Chromium) on an export.

    python benchmarks/browser_latency.py --model EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 20]
        [--dtype q4] [--threads N]

Each example becomes a text (ctx_before + span_in + ctx_after) with its span selected in the page; the page's
worker times ``correct()`` (prompt → greedy tokens → post-processed span) and the driver times click →
suggestion shown. The Node harness (onnxruntime-node, same corrector.js) answers the same spans in the same
run, so both latencies and their token-for-token agreement come from one machine state. Prints a Markdown
table for benchmarks/RESULTS.md and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from latency import percentile  # noqa: E402  (the same nearest-rank percentile as the other latency table)

ROOT = Path(__file__).resolve().parents[1]


def cases_from(data: Path, limit: int) -> list[dict[str, Any]]:
    """Golden examples as page inputs: the whole text, with the span selected (code-point offsets)."""
    from spantune.schema import read_jsonl

    cases = []
    for ex in read_jsonl(data, clip=True)[:limit]:
        start = len(ex.ctx_before)
        cases.append({"text": ex.ctx_before + ex.span_in + ex.ctx_after, "start": start,
                      "end": start + len(ex.span_in)})
    cases[0]["screenshot"] = True
    return cases


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    browser, node = result["browser"]["answers"], result["node"]

    def stats(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "mean_ms": statistics.fmean(ms)}

    return {
        "spans": len(node),
        "browser_worker": stats([a["latencyMs"] for a in browser]),
        "browser_click_to_shown": stats([a["wallMs"] for a in browser]),
        "node": stats([a["latencyMs"] for a in node]),
        "mean_new_tokens": statistics.fmean(a["tokens"] for a in node),
        "browser_equals_node": sum(a["raw"] == b["raw"] for a, b in zip(browser, node)) / len(node),
        "browser_load_s": result["browser"]["loadMs"] / 1000,
        "wasm_threads": result["browser"]["threads"],
        "chromium": result["browser"]["userAgent"],
    }


def markdown(summary: dict[str, Any], model: Path, dtype: str) -> str:
    rows = [(f"Transformers.js {dtype}, Chromium WASM (worker: correct())", summary["browser_worker"]),
            (f"Transformers.js {dtype}, Chromium WASM (click → suggestion shown)", summary["browser_click_to_shown"]),
            (f"Transformers.js {dtype}, Node (onnxruntime-node CPU, same run)", summary["node"])]
    lines = [f"Model `{model}`; {summary['spans']} spans, mean {summary['mean_new_tokens']:.1f} new tokens; "
             f"WASM threads {summary['wasm_threads']}; page load {summary['browser_load_s']:.1f} s; "
             f"browser output = Node output on {summary['browser_equals_node']:.0%} of spans.", "",
             "| runtime | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | {s['mean_ms']:.0f} |" for name, s in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from spantune.demo_server import DEFAULT_JS_DIR, drive_browser
    from spantune.errors import SpantuneError
    from spantune.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="export folder (onnx/model_q4.onnx)")
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "span_eval.jsonl", help="span JSONL")
    parser.add_argument("--limit", type=int, default=20, help="spans to time (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed spans first (default 1)")
    parser.add_argument("--dtype", default="q4", help="exported precision to load (default q4)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="WASM threads in the page and onnxruntime-node intra-op threads (default: CPU count)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "browser_latency",
                        help="folder for result.json, summary.json and a screenshot")
    parser.add_argument("--js-dir", type=Path, default=DEFAULT_JS_DIR, help="the spantune js/ folder")
    args = parser.parse_args(argv)
    try:
        result = drive_browser(args.model, cases_from(args.data, args.limit), args.out,
                               screenshot=args.out / "demo.png", warmup=args.warmup, dtype=args.dtype,
                               threads=args.threads, js_dir=args.js_dir)
    except SpantuneError as exc:
        print(f"browser_latency: error: {exc}", file=sys.stderr)
        return 1
    summary = summarize(result)
    write_json(args.out / "summary.json", summary)
    print(markdown(summary, args.model, args.dtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
