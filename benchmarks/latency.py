"""Per-span CPU latency of an export: PyTorch fp32 (baseline), onnxruntime fp32/q4/q8, Transformers.js q4/q8 (Node).

    python benchmarks/latency.py --export EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 50] [--threads 1]

Every backend corrects the same spans in the same run, one at a time, after one warm-up span, with the
same thread count. A span's latency is the whole ``correct()`` call: prompt rendering, tokenization,
greedy decoding with the KV cache, post-processing. PyTorch loads the merged ``model.safetensors`` that
the export keeps beside ``onnx/``, so all run the same weights (q8 rows appear when the export has q8).
Prints a Markdown table with p50/p95,
mean new tokens, ms per new token, and each p50 as a ratio of PyTorch fp32's (the baseline); ``--json``
writes the raw latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = Path(__file__).with_name("latency_node.mjs")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation between spans)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def time_python(corrector: Any, examples: list[Any]) -> dict[str, Any]:
    corrector.correct(examples[0])  # warm-up: first-call allocations and lazy initialisation
    preds = [corrector.correct(ex) for ex in examples]
    return {"latency_s": [p.latency_s for p in preds], "new_tokens": [p.new_tokens for p in preds],
            "texts": [p.text for p in preds]}


def time_node(export: Path, dtype: str, examples: list[Any], threads: int) -> dict[str, Any]:
    """Run the Transformers.js harness on exactly these (already clipped) examples."""
    from spantune.schema import write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "spans.jsonl"
        write_jsonl(data, examples)
        cmd = ["node", str(NODE_SCRIPT), str(export), dtype, str(data), str(len(examples)), str(threads)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"node harness failed: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout)


def summary(name: str, result: dict[str, Any], base_p50: float | None) -> dict[str, Any]:
    lat = result["latency_s"]
    tokens = sum(result["new_tokens"])
    p50 = statistics.median(lat)
    return {"backend": name, "spans": len(lat), "p50_ms": 1000 * p50, "p95_ms": 1000 * percentile(lat, 95),
            "mean_new_tokens": tokens / len(lat), "ms_per_token": 1000 * sum(lat) / max(tokens, 1),
            "p50_vs_torch": (base_p50 / p50) if base_p50 else 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="folder written by spantune export")
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "span_eval.jsonl")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every backend (default 1: on a shared CPU more threads oversubscribe it)")
    parser.add_argument("--skip-node", action="store_true", help="leave out Transformers.js (no node here)")
    parser.add_argument("--json", type=Path, help="write raw latencies here")
    args = parser.parse_args()

    import torch

    from spantune.infer.onnx_backend import OnnxCorrector, onnx_file
    from spantune.infer.torch_backend import TorchCorrector
    from spantune.schema import read_jsonl

    torch.set_num_threads(args.threads)
    examples = read_jsonl(args.data, clip=True)[: args.limit]
    runs: dict[str, dict[str, Any]] = {}
    print(f"timing {len(examples)} spans from {args.data} on {args.threads} thread(s)...", file=sys.stderr)
    runs["PyTorch fp32"] = time_python(TorchCorrector.load(str(args.export), device="cpu", dtype="fp32"), examples)
    quantized = [d for d in ("q4", "q8") if onnx_file(args.export, d).is_file()]
    for dtype in ("fp32", *quantized):
        corrector = OnnxCorrector(args.export, dtype=dtype, threads=args.threads)
        runs[f"onnxruntime {dtype}"] = time_python(corrector, examples)
    for dtype in [] if args.skip_node else quantized:
        runs[f"Transformers.js {dtype} (Node)"] = time_node(args.export, dtype, examples, args.threads)

    base = statistics.median(runs["PyTorch fp32"]["latency_s"])
    rows = [summary(name, result, base) for name, result in runs.items()]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s); "
          f"export {args.export}; {len(examples)} spans of {args.data}")
    print("\n| backend | spans | p50 ms | p95 ms | new tokens (mean) | ms / token | p50 speed-up vs PyTorch fp32 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['spans']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['mean_new_tokens']:.1f} | "
              f"{r['ms_per_token']:.1f} | {r['p50_vs_torch']:.2f}× |")
    for dtype in quantized:
        node = runs.get(f"Transformers.js {dtype} (Node)")
        if node:
            same = sum(a == b for a, b in zip(runs[f"onnxruntime {dtype}"]["texts"], node["texts"]))
            print(f"\nTransformers.js {dtype} and onnxruntime {dtype} (Python) gave the same span on "
                  f"{same}/{len(examples)}.")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
