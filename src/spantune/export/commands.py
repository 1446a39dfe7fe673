"""``spantune export`` on the command line: its options, and the summary it prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.export.build import DEFAULT_DTYPES, DTYPE_ORDER, ExportOptions, export_model, parse_dtypes
from spantune.export.folder import push_to_hub
from spantune.export.onnx import QuantOptions
from spantune.infer.onnx_backend import onnx_file

#: ``--verify-data``'s default: a checkout's golden set, relative to the working directory like every path given
#: on the command line (the library takes the file it is passed).
GOLDEN_SET = "fixtures/span_eval.jsonl"


def _summary(manifest: dict[str, Any], out: Path) -> str:
    lines = [f"exported to {out}"]
    for dtype, size in manifest["onnx_bytes"].items():
        ratio = manifest["size_ratio_vs_fp32"][dtype]
        line = f"  {onnx_file(out, dtype).relative_to(out)}: {size / 1e6:.1f} MB ({ratio:.0%} of fp32)"
        parity = (manifest["parity"] or {}).get("dtypes", {}).get(dtype)
        if parity:
            line += (f", greedy agreement with PyTorch {parity['agreement_torch']:.1%} "
                     f"(vs fp32 {parity['agreement_fp32']:.1%}), max |Δlogit| {parity['max_abs_logit_diff']:.3g}")
        lines.append(line)
    if manifest["parity"] is None:
        lines.append("  parity not checked (--no-verify)")
    return "\n".join(lines)


def _cmd_export(args: argparse.Namespace) -> int:
    opts = ExportOptions(
        model=args.model, out=Path(args.out), dtypes=parse_dtypes(args.dtypes),
        quant=QuantOptions(block_size=args.block_size, symmetric=not args.asymmetric,
                           quantize_embedding=not args.keep_embedding, eight_bit=args.eight_bit,
                           accuracy_level=args.accuracy_level),
        verify=not args.no_verify, verify_data=Path(args.verify_data), verify_limit=args.verify_limit,
        max_new_tokens=args.max_new_tokens, opset=args.opset)
    if opts.quant.block_size < 16 or opts.quant.block_size & (opts.quant.block_size - 1):
        raise SpantuneError(f"--block-size {opts.quant.block_size}: must be a power of two ≥ 16")
    manifest = export_model(opts)
    print(_summary(manifest, opts.out))
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(opts.out, args.push_to_hub)}")
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
    """``spantune export --model M --out DIR [--dtypes ...] [--no-verify] [--push-to-hub ORG/NAME] ...``."""
    p = subparsers.add_parser("export", help="merge, export to ONNX with KV cache, quantize to 4 bits, check parity",
                              description="Merge a training run's LoRA adapter (or take any model), export it to "
                              "ONNX with past key values, quantize to 4 bits, and check parity with PyTorch.")
    p.add_argument("--model", required=True,
                   help="training run folder (LoRA adapter), model folder, hub id or 'embedded'")
    p.add_argument("--out", required=True, help="output folder (replaced atomically when the export succeeds)")
    p.add_argument("--dtypes", default=",".join(DEFAULT_DTYPES),
                   help=f"ONNX variants, comma-separated, from {', '.join(DTYPE_ORDER)} "
                   "(fp32 always; default %(default)s)")
    p.add_argument("--block-size", type=int, default=32, help="4-bit quantization block size (default %(default)s)")
    p.add_argument("--asymmetric", action="store_true", help="4-bit with zero points instead of symmetric")
    p.add_argument("--keep-embedding", action="store_true",
                   help="leave the embedding in fp32 (bigger q4 file; measures what quantizing it costs)")
    p.add_argument("--accuracy-level", type=int, choices=(0, 1, 2, 3, 4), default=QuantOptions.accuracy_level,
                   help="4-bit MatMul compute precision, recorded for the runtimes that fuse them: 1 fp32 (default; browsers compute in fp32 anyway), 4 int8")
    p.add_argument("--eight-bit", default="", metavar="REGEX",
                   help="q4: MatMuls whose ONNX node name matches keep 8-bit weights (e.g. 'lm_head|self_attn')")
    p.add_argument("--no-verify", action="store_true", help="skip the PyTorch/onnxruntime parity check")
    p.add_argument("--verify-data", default=GOLDEN_SET,
                   help="span JSONL for the parity check (default %(default)s)")
    p.add_argument("--verify-limit", type=int, default=None, help="check only the first N examples")
    p.add_argument("--max-new-tokens", type=int, default=32, help="greedy budget written to generation_config.json")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18 for Qwen2/Llama)")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the folder with huggingface_hub (token: HF_TOKEN)")
    p.set_defaults(func=_cmd_export)
