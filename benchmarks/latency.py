"""Per-span CPU latency of an export: PyTorch fp32 greedy (baseline), onnxruntime plain and fast, Transformers.js.

    python benchmarks/latency.py --export EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 50] [--threads 1]
        [--dtypes fp32,q4,int8,q8] [--skip-node] [--tie-guard NATS]

Every backend corrects the same spans in the same run, one at a time, after one warm-up span, with the
same thread count. A span's latency is the whole ``correct()`` call: prompt rendering, tokenization,
greedy decoding with the KV cache, post-processing. PyTorch loads the merged ``model.safetensors`` that
the export keeps beside ``onnx/``, so all run the same weights. onnxruntime runs each dtype twice: **plain**
(whole prompt, then one token per pass) and **fast** (prompt-head KV cache + copy drafts from span_in,
docs/fast-decoding.md; the same tokens, counted below). Transformers.js (Node) runs the fast path
of js/src/corrector.js. Prints a Markdown table with p50/p95, mean new tokens, forward passes per span (the
prefix's one-off pass not counted), ms per new token, each p50 as a ratio of PyTorch fp32's, and how many
answers equal PyTorch fp32's and the plain path's, and how many drafted replies the tie guard redid one token a pass
(a near-tie; ``--tie-guard 0`` turns it off); ``--json`` writes the raw numbers.
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

from spantune.demo.page import percentile  # nearest rank, as in the page's latency table

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = Path(__file__).with_name("latency_node.mjs")


def time_python(corrector: Any, examples: list[Any]) -> dict[str, Any]:
    corrector.correct(examples[0])  # warm-up: first-call allocations and lazy initialisation
    preds = [corrector.correct(ex) for ex in examples]
    return {"latency_s": [p.latency_s for p in preds], "new_tokens": [p.new_tokens for p in preds],
            "texts": [p.text for p in preds]}


def time_onnx(corrector: Any, examples: list[Any]) -> dict[str, Any]:
    """:func:`time_python` for an OnnxCorrector, with each decode's forward passes."""
    corrector.correct(examples[0])
    runs = [corrector.correct_greedy(ex) for ex in examples]
    return {"latency_s": [p.latency_s for p, _ in runs], "new_tokens": [p.new_tokens for p, _ in runs],
            "texts": [p.text for p, _ in runs], "passes": [g.passes for _, g in runs],
            "replayed": [g.replayed for _, g in runs]}


def reference_passes(tokenizer: Any, examples: list[Any], draft_len: int = 8) -> tuple[float, float]:
    """Forward passes per span, plain and with copy drafts, of a model whose greedy reply is the reference
    ``span_out`` (its reply ids, end-of-turn included): counted from token ids, no model run, to show what drafts
    save on a model that answers like the references (an untuned model mostly does not)."""
    import dataclasses

    from spantune.infer.decode import copy_draft, stop_token_ids
    from spantune.prompt import encode_prompt

    stops = set(stop_token_ids(tokenizer))
    plain = fast = 0
    for ex in examples:
        reply = encode_prompt(tokenizer, ex, with_answer=True).reply
        target = reply[: next((i + 1 for i, t in enumerate(reply) if t in stops), len(reply))]
        source = encode_prompt(tokenizer, dataclasses.replace(ex, span_out=ex.span_in), with_answer=True).reply
        plain += len(target)
        done = 0
        while done < len(target):
            draft = copy_draft(source, target[:done], draft_len)
            right = next((k for k, t in enumerate(draft) if done + k >= len(target) or t != target[done + k]),
                         len(draft))
            done += right + 1
            fast += 1
    return plain / len(examples), fast / len(examples)


def time_node(export: Path, dtype: str, examples: list[Any], threads: int, tie_guard: float) -> dict[str, Any]:
    """Run the Transformers.js harness on exactly these (already clipped) examples."""
    from spantune.schema import write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "spans.jsonl"
        write_jsonl(data, examples)
        cmd = ["node", str(NODE_SCRIPT), str(export), dtype, str(data), str(len(examples)), str(threads),
               str(tie_guard)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"node harness failed: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout)


def summary(name: str, result: dict[str, Any], base: dict[str, Any], plain: dict[str, Any] | None) -> dict[str, Any]:
    """One table row; ``base`` is PyTorch fp32's run, ``plain`` the same dtype's plain onnxruntime run."""
    lat = result["latency_s"]
    tokens = sum(result["new_tokens"])
    p50 = statistics.median(lat)
    passes = result.get("passes")
    return {"backend": name, "spans": len(lat), "p50_ms": 1000 * p50, "p95_ms": 1000 * percentile(lat, 95),
            "mean_new_tokens": tokens / len(lat), "ms_per_token": 1000 * sum(lat) / max(tokens, 1),
            "passes_per_span": statistics.fmean(passes) if passes else None,
            "replayed": sum(result["replayed"]) if "replayed" in result else None,
            "p50_vs_torch": statistics.median(base["latency_s"]) / p50,
            "same_as_torch": sum(a == b for a, b in zip(result["texts"], base["texts"])),
            "same_as_plain": sum(a == b for a, b in zip(result["texts"], plain["texts"])) if plain else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="folder written by spantune export")
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "span_eval.jsonl")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every backend (default 1: on a shared CPU more threads oversubscribe it)")
    parser.add_argument("--dtypes", default="fp32,q4,int8,q8", help="exported files to time (those present)")
    parser.add_argument("--skip-node", action="store_true", help="leave out Transformers.js (no node here)")
    parser.add_argument("--tie-guard", type=float, default=None,
                        help="drafted replies with a lead below this many nats are redone one token a pass "
                             "(default: the dtype's TIE_GUARD)")
    parser.add_argument("--json", type=Path, help="write raw latencies here")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from spantune.infer.onnx_backend import OnnxCorrector, onnx_file
    from spantune.infer.torch_backend import TorchCorrector
    from spantune.schema import read_jsonl

    torch.set_num_threads(args.threads)
    examples = read_jsonl(args.data, clip=True)[: args.limit]
    dtypes = [d for d in args.dtypes.split(",") if onnx_file(args.export, d).is_file()]
    runs: dict[str, dict[str, Any]] = {}
    plain_of: dict[str, str] = {}
    print(f"timing {len(examples)} spans from {args.data} on {args.threads} thread(s)...", file=sys.stderr)
    runs["PyTorch fp32"] = time_python(TorchCorrector.load(str(args.export), device="cpu", dtype="fp32"), examples)
    for dtype in dtypes:
        plain = f"onnxruntime {dtype} plain"
        runs[plain] = time_onnx(OnnxCorrector(args.export, dtype=dtype, threads=args.threads, prefix_cache=False,
                                              copy_draft=False), examples)
        fast = f"onnxruntime {dtype} + prefix cache + copy draft"
        corrector = OnnxCorrector(args.export, dtype=dtype, threads=args.threads, tie_guard=args.tie_guard)
        runs[fast] = time_onnx(corrector, examples)
        plain_of[fast] = plain
        if not args.skip_node and dtype != "fp32":
            node = f"Transformers.js {dtype} + prefix cache + copy draft (Node)"
            runs[node] = time_node(args.export, dtype, examples, args.threads, corrector.tie_guard)
            plain_of[node] = plain

    base = runs["PyTorch fp32"]
    rows = [summary(name, result, base, runs.get(plain_of.get(name, ""))) for name, result in runs.items()]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s); "
          f"export {args.export}; {len(examples)} spans of {args.data}; tie guard "
          f"{'per dtype' if args.tie_guard is None else f'{args.tie_guard} nats'}")
    print("\n| backend | spans | p50 ms | p95 ms | new tokens (mean) | passes / span | ms / token | "
          "p50 speed-up vs PyTorch fp32 | same answer as PyTorch fp32 | same answer as plain | redone plain |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    n = len(examples)
    for r in rows:
        passes = f"{r['passes_per_span']:.1f}" if r["passes_per_span"] is not None else "—"
        plain = f"{r['same_as_plain']}/{n}" if r["same_as_plain"] is not None else "—"
        replayed = f"{r['replayed']}/{n}" if r["replayed"] is not None and r["same_as_plain"] is not None else "—"
        print(f"| {r['backend']} | {r['spans']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['mean_new_tokens']:.1f} | "
              f"{passes} | {r['ms_per_token']:.1f} | {r['p50_vs_torch']:.2f}× | {r['same_as_torch']}/{n} | {plain} | "
              f"{replayed} |")
    plain_passes, draft_passes = reference_passes(AutoTokenizer.from_pretrained(str(args.export)), examples)
    print(f"\nA model answering these spans' reference span_out would take {plain_passes:.1f} passes/span plain "
          f"and {draft_passes:.1f} with copy drafts (counted from token ids, not timed).")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
