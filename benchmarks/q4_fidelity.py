"""q4 fidelity and size: each 4-bit variant against the export's own fp32 decoder (the baseline), same run.

    python benchmarks/q4_fidelity.py --export EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 200]
        [--variants default,keep-embedding,block16,asymmetric]

``default`` is the export's ``onnx/model_q4.onnx``; the other variants are quantized here from its
``onnx/model.onnx`` with one setting changed (embedding left fp32, block 16, zero points), so the table
shows what each choice costs or buys. For each: file size and its ratio to fp32; greedy agreement with
fp32 (identical token sequence), agreement of the post-processed span (what the editor would insert),
exact match against ``span_out`` next to fp32's, and the largest logit difference over the steps where
both decodes had seen the same tokens.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "default": None,
    "keep-embedding": {"quantize_embedding": False},
    "block16": {"block_size": 16},
    "asymmetric": {"symmetric": False},
    "asymmetric-block16": {"symmetric": False, "block_size": 16},
    "lm_head-8bit": {"eight_bit": "lm_head"},
    "lm_head+attention-8bit": {"eight_bit": "lm_head|self_attn"},
    "attention-8bit": {"eight_bit": "self_attn"},
    "all-linear-8bit": {"eight_bit": "layers"},
    "all-matmul-8bit": {"eight_bit": "MatMul"},
}


def variant_folder(export: Path, tmp: Path, name: str, base_options: dict[str, Any]) -> Path:
    """An export folder whose onnx/model_q4.onnx is quantized with ``VARIANTS[name]`` changed."""
    from spantune.export_onnx import QuantOptions, quantize_weights

    if VARIANTS[name] is None:
        return export
    folder = tmp / name
    (folder / "onnx").mkdir(parents=True)
    for item in export.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item.resolve())
    quantize_weights(export / "onnx" / "model.onnx", folder / "onnx" / "model_q4.onnx",
                QuantOptions(**{**base_options, **VARIANTS[name]}))
    return folder


def decode_all(corrector: Any, examples: list[Any]) -> list[tuple[Any, Any]]:
    from tqdm import tqdm

    return [corrector.correct_greedy(ex, keep_logits=True) for ex in tqdm(examples, desc=corrector.name, leave=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="folder written by spantune export")
    parser.add_argument("--data", type=Path, default=ROOT / "fixtures" / "span_eval.jsonl")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--variants", default="default,keep-embedding", help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import json

    from spantune.export import onnx_sizes
    from spantune.export_parity import logit_gap
    from spantune.infer.onnx_backend import OnnxCorrector
    from spantune.schema import read_jsonl

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))} (choose from {', '.join(VARIANTS)})")
    examples = read_jsonl(args.data, clip=True)[: args.limit]
    manifest = json.loads((args.export / "manifest.json").read_text())
    q = manifest["quantization"]
    q = q.get("q4", q)  # per-dtype settings; exports made before q8 existed stored the q4 settings flat
    base_options = {"block_size": q["block_size"], "symmetric": q["symmetric"],
                    "quantize_embedding": q["embedding"] != "fp32", "accuracy_level": q["accuracy_level"],
                    "eight_bit": q.get("eight_bit_nodes") or ""}
    fp32_bytes = onnx_sizes(args.export, ["fp32"])["fp32"]
    fp32_runs = decode_all(OnnxCorrector(args.export, dtype="fp32", threads=args.threads, name="fp32"), examples)
    fp32_em = sum(p.text == ex.span_out for (p, _), ex in zip(fp32_runs, examples))

    print(f"\n{len(examples)} spans of {args.data}; baseline: ONNX fp32 {fp32_bytes / 1e6:.1f} MB, "
          f"exact match {fp32_em}/{len(examples)}")
    print("\n| q4 variant | size MB | size vs fp32 | same tokens as fp32 | same span as fp32 | exact match (fp32) | "
          "max abs logit diff |")
    print("|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp(prefix="q4-variants-"))
    try:
        for name in names:
            folder = variant_folder(args.export, tmp, name, base_options)
            runs = decode_all(OnnxCorrector(folder, dtype="q4", threads=args.threads, name=name), examples)
            size = onnx_sizes(folder, ["q4"])["q4"]
            same_tokens = sum(g.tokens == fg.tokens for (_, g), (_, fg) in zip(runs, fp32_runs))
            same_span = sum(p.text == fp.text for (p, _), (fp, _) in zip(runs, fp32_runs))
            em = sum(p.text == ex.span_out for (p, _), ex in zip(runs, examples))
            gap = max(logit_gap(fg, g)[0] for (_, g), (_, fg) in zip(runs, fp32_runs))
            n = len(examples)
            print(f"| {name} | {size / 1e6:.1f} | {size / fp32_bytes:.1%} | "
                  f"{same_tokens}/{n} ({same_tokens / n:.1%}) | "
                  f"{same_span}/{n} ({same_span / n:.1%}) | {em} ({fp32_em}) | {gap:.3g} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nexport: {args.export}; quantization of the export: {q}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
