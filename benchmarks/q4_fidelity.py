"""q4 fidelity and size: each 4-bit variant against the export's own fp32 decoder (the baseline), same run.

    python benchmarks/q4_fidelity.py --export EXPORT_DIR [--data fixtures/span_eval.jsonl] [--limit 200]
        [--variants default,keep-embedding,block16,asymmetric]

``default`` is the export's ``onnx/model_q4.onnx``; the other variants are quantized here from its
``onnx/model.onnx`` with one setting changed (embedding left fp32, block 16, zero points, some MatMuls at
8 bits), or with another of onnxruntime's 4-bit algorithms in place of round-to-nearest: ``kquant``
(llama.cpp-style k-quant scale search) and ``gptq`` (error-compensating, calibrated on ``--calib-samples``
prompts + answers of ``--calib-data``, the training spans; slow: ~30 min on 2 CPU cores for SmolLM2-135M).
These two keep the export's block size and its 4-bit GatherBlockQuantized embedding, so like the others
they differ from ``default`` in one choice, and the table shows what each choice costs or buys. For each: file size and its ratio to fp32; greedy agreement with
fp32 (identical token sequence), agreement of the post-processed span (what the editor would insert),
exact match against ``span_out`` next to fp32's, and the largest logit difference over the steps where
both decodes had seen the same tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
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
    "kquant": "k_quant",
    "gptq": "GPTQ",
}


def calibration_reader(corrector: Any, data: Path, n: int) -> list[dict[str, Any]]:
    """GPTQ calibration inputs: ``n`` seeded training spans, prompt + answer, one prefill each (empty cache)."""
    import random

    import numpy as np

    from spantune.prompt import render
    from spantune.schema import read_jsonl

    tokenizer, decoder = corrector.tokenizer, corrector.decoder
    feeds = []
    for ex in random.Random(0).sample(read_jsonl(data, clip=True), n):
        ids = tokenizer(render(tokenizer, ex, with_answer=True), add_special_tokens=False)["input_ids"]
        feeds.append(decoder.step_feeds(np.asarray([ids], dtype=np.int64), 0, decoder.empty_past()))
    return feeds  # onnxruntime's GPTQ deep-copies the reader and iterates it: a list serves


def algorithm_q4(source: Path, target: Path, algorithm: str, options: dict[str, Any], args: argparse.Namespace,
                 fp32: Any) -> None:
    """MatMuls quantized with onnxruntime's ``algorithm`` at 4 bits, then the embedding as the export does;
    ``fp32`` is the baseline's OnnxCorrector (GPTQ calibrates through its tokenizer and decoder inputs)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (GPTQWeightOnlyQuantConfig,
                                                                 KQuantWeightOnlyQuantConfig, MatMulNBitsQuantizer)

    from spantune.export.onnx import quiet_quantizer, save_model

    if algorithm == "GPTQ":
        if args.calib_data is None:
            raise SystemExit("--variants gptq needs --calib-data TRAIN.jsonl (span examples; never the golden set)")
        config = GPTQWeightOnlyQuantConfig(
            calibration_data_reader=calibration_reader(fp32, args.calib_data, args.calib_samples))
    else:
        config = KQuantWeightOnlyQuantConfig()
    common = {"block_size": options["block_size"], "accuracy_level": options["accuracy_level"]}
    with quiet_quantizer(), contextlib.redirect_stdout(sys.stderr):  # its progress bar prints to stdout
        # zero points for both: k-quant always writes them, and GPTQ's final re-quantization of its
        # error-compensated weights reproduces them exactly only with them
        matmuls = MatMulNBitsQuantizer(onnx.load(str(source)), bits=4, is_symmetric=False, algo_config=config,
                                       **common)
        matmuls.process()
        embedding = MatMulNBitsQuantizer(matmuls.model.model, bits=4, op_types_to_quantize=("Gather",),
                                         quant_axes=(("Gather", 1),), is_symmetric=options["symmetric"], **common)
        embedding.process()
    save_model(embedding.model.model, target)


def variant_folder(export: Path, tmp: Path, name: str, base_options: dict[str, Any], args: argparse.Namespace,
                   fp32: Any) -> Path:
    """An export folder whose onnx/model_q4.onnx is quantized with ``VARIANTS[name]`` changed."""
    from spantune.export.onnx import QuantOptions, quantize_weights

    if VARIANTS[name] is None:
        return export
    folder = tmp / name
    (folder / "onnx").mkdir(parents=True)
    for item in export.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item.resolve())
    source, target = export / "onnx" / "model.onnx", folder / "onnx" / "model_q4.onnx"
    change = VARIANTS[name]
    if isinstance(change, str):
        algorithm_q4(source, target, change, base_options, args, fp32)
    else:
        quantize_weights(source, target, QuantOptions(**{**base_options, **change}))
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
    parser.add_argument("--calib-data", type=Path, default=None, help="gptq: training spans to calibrate on")
    parser.add_argument("--calib-samples", type=int, default=64, help="gptq: how many of them (default %(default)s)")
    args = parser.parse_args()

    import json

    from spantune.export.folder import onnx_sizes
    from spantune.export.parity import logit_gap
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
    fp32_corrector = OnnxCorrector(args.export, dtype="fp32", threads=args.threads, name="fp32")
    fp32_runs = decode_all(fp32_corrector, examples)
    fp32_em = sum(p.text == ex.span_out for (p, _), ex in zip(fp32_runs, examples))

    print(f"\n{len(examples)} spans of {args.data}; baseline: ONNX fp32 {fp32_bytes / 1e6:.1f} MB, "
          f"exact match {fp32_em}/{len(examples)}")
    print("\n| q4 variant | size MB | size vs fp32 | same tokens as fp32 | same span as fp32 | exact match (fp32) | "
          "max abs logit diff | quantize s |")
    print("|---|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp(prefix="q4-variants-"))
    try:
        for name in names:
            t0 = time.perf_counter()
            folder = variant_folder(args.export, tmp, name, base_options, args, fp32_corrector)
            quant_s = time.perf_counter() - t0
            runs = decode_all(OnnxCorrector(folder, dtype="q4", threads=args.threads, name=name), examples)
            size = onnx_sizes(folder, ["q4"])["q4"]
            same_tokens = sum(g.tokens == fg.tokens for (_, g), (_, fg) in zip(runs, fp32_runs))
            same_span = sum(p.text == fp.text for (p, _), (fp, _) in zip(runs, fp32_runs))
            em = sum(p.text == ex.span_out for (p, _), ex in zip(runs, examples))
            gap = max(logit_gap(fg, g)[0] for (_, g), (_, fg) in zip(runs, fp32_runs))
            n = len(examples)
            print(f"| {name} | {size / 1e6:.1f} | {size / fp32_bytes:.1%} | "
                  f"{same_tokens}/{n} ({same_tokens / n:.1%}) | "
                  f"{same_span}/{n} ({same_span / n:.1%}) | {em} ({fp32_em}) | {gap:.3g} | {quant_s:.0f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nexport: {args.export}; quantization of the export: {q}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
