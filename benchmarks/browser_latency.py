"""Per-span latency of the browser demo (Transformers.js WASM in Debian's headless Chromium) on an export.

    python benchmarks/browser_latency.py --model EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 20]
        [--dtypes q4,q8] [--threads 1,2]

For each dtype and WASM thread count, each example becomes a text (ctx_before + span_in + ctx_after) with its
span selected in the page; the page's worker times ``correct()`` (prompt → greedy tokens with the prefix cache
and copy drafts → post-processed span) and the driver times click → suggestion shown. The Node harness
(onnxruntime-node, same corrector.js, the same file, as many intra-op threads) answers the same spans in the
same run, so both latencies and their agreement come from one machine state. Prints a Markdown table for
benchmarks/RESULTS.md (and whether this Chromium offers WebGPU) and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def markdown(summaries: dict[tuple[str, int], dict[str, Any]], model: Path) -> str:
    """One row per (dtype, threads): page worker, page click → shown, Node, in the same run."""
    first = next(iter(summaries.values()))
    lines = [f"Model `{model}`; {first['spans']} spans; {first['chromium']}; WebGPU adapter in this Chromium: "
             f"{'yes' if first['webgpu_adapter'] else 'no'}.", "",
             "| dtype | threads | page worker p50 / p95 ms | page click → shown p50 ms | Node p50 / p95 ms | "
             "page p50 / Node p50 | new tokens | passes / span | page = Node | page load s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (dtype, threads), s in summaries.items():
        w, c, n = s["browser_worker"], s["browser_click_to_shown"], s["node"]
        lines.append(f"| {dtype} | {threads} | {w['p50_ms']:.0f} / {w['p95_ms']:.0f} | {c['p50_ms']:.0f} | "
                     f"{n['p50_ms']:.0f} / {n['p95_ms']:.0f} | {w['p50_ms'] / n['p50_ms']:.2f} | "
                     f"{s['mean_new_tokens']:.1f} | {s['passes_per_span']:.1f} | {s['browser_equals_node']:.0%} | "
                     f"{s['browser_load_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from spantune.demo.page import page_cases, summarize
    from spantune.demo.server import DEFAULT_JS_DIR, drive_browser
    from spantune.errors import SpantuneError
    from spantune.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="export folder (onnx/model_q4.onnx)")
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "span_eval.jsonl", help="span JSONL")
    parser.add_argument("--limit", type=int, default=20, help="spans to time (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed spans first (default 1)")
    parser.add_argument("--dtypes", default="int8,q4",
                        help="exported precisions to load, comma-separated (default int8,q4)")
    parser.add_argument("--threads", default="1,2",
                        help="WASM threads in the page and onnxruntime-node intra-op threads, comma-separated "
                             "(default 1,2)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "browser_latency",
                        help="folder for result.json, summary.json and a screenshot")
    parser.add_argument("--js-dir", type=Path, default=DEFAULT_JS_DIR, help="the spantune js/ folder")
    args = parser.parse_args(argv)
    summaries: dict[tuple[str, int], dict[str, Any]] = {}
    for dtype in args.dtypes.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            out = args.out / f"{dtype}-{threads}t"
            try:
                result = drive_browser(args.model, page_cases(args.data, args.limit), out, screenshot=out / "demo.png",
                                       warmup=args.warmup, dtype=dtype, threads=threads, js_dir=args.js_dir)
            except SpantuneError as exc:
                print(f"browser_latency: error: {exc}", file=sys.stderr)
                return 1
            summaries[dtype, threads] = summarize(result)
            write_json(out / "summary.json", summaries[dtype, threads])
    print(markdown(summaries, args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
