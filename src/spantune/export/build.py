"""The export pipeline step by step: merge → save → ONNX → quantized twins → parity → card and manifest.

Everything is built in a temp folder beside the output and renamed into place at the end, so an interrupted
or refused export (parity failure) leaves no folder behind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune import interrupts
from spantune.errors import SpantuneError
from spantune.export.folder import (carry_keep_margin, check_rope_config, file_hashes, generation_config, make_readable,
                                    onnx_sizes, run_card, save_merged, set_transformersjs_config, source_info)
from spantune.export.onnx import QuantOptions, check_grid, quant_record
from spantune.infer.onnx_backend import DTYPE_SUFFIX, onnx_file

DEFAULT_DTYPES = ("fp32", "q4", "int8")  # int8: CPU and WASM (js defaultDtype); q4: WebGPU
#: Build order: q4f16 is made from fp16.
DTYPE_ORDER = ("fp32", "fp16", "q4", "q4f16", "q8", "int8")


@dataclass
class ExportOptions:
    """What to export and how: ``spantune export``'s options (``model`` as ``--model`` takes it)."""

    model: str
    out: Path
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    quant: QuantOptions = field(default_factory=QuantOptions)
    verify: bool = True
    verify_data: Path | None = None  #: span JSONL of the parity check (required unless verify is False)
    verify_limit: int | None = None
    max_new_tokens: int = 32
    opset: int | None = None


class Steps:
    """Numbered progress lines on stderr, each with its duration, so a long export shows where it is."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.done += 1
        print(f"[{self.done}/{self.total}] {what} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        yield
        interrupts.check()
        seconds = time.perf_counter() - t0
        print(f"[{self.done}/{self.total}] {what}: done in {seconds:.1f} s", file=sys.stderr, flush=True)


def parse_dtypes(text: str) -> tuple[str, ...]:
    """``q4,fp16`` → build order with fp32 first (it is the source of every other dtype and the parity anchor)."""
    asked = {d.strip() for d in text.split(",") if d.strip()}
    unknown = asked - set(DTYPE_SUFFIX)
    if unknown:
        raise SpantuneError(f"--dtypes: unknown {', '.join(sorted(unknown))} (choose from {', '.join(DTYPE_ORDER)})")
    if "q4f16" in asked:
        asked.add("fp16")
    return tuple(d for d in DTYPE_ORDER if d in asked or d == "fp32")


def load_examples(opts: ExportOptions) -> list[Any]:
    from spantune.schema import read_jsonl

    if opts.verify_data is None or not opts.verify_data.is_file():
        raise SpantuneError(f"parity data {opts.verify_data or '(none given)'} not found: pass --verify-data FILE "
                            "(span JSONL) or skip the check with --no-verify")
    examples = read_jsonl(opts.verify_data, clip=True)
    return examples[: opts.verify_limit] if opts.verify_limit else examples


def export_model(opts: ExportOptions) -> dict[str, Any]:
    """Run the whole export into ``opts.out``; returns the manifest. Raises SpantuneError on failure."""
    from tqdm import tqdm

    from spantune.export.card import model_card
    from spantune.export.onnx import build_dtype, export_decoder
    from spantune.export.parity import check_parity, enforce_fp32
    from spantune.io import atomic_dir, write_json
    from spantune.models import load_model_and_tokenizer, resolve_model_path
    from spantune.versions import package_versions

    examples = load_examples(opts) if opts.verify else []
    steps = Steps(total=3 + len(opts.dtypes) + int(opts.verify))
    source = source_info(opts.model)
    check_grid(source, opts.dtypes, opts.quant)
    with steps.step(f"loading {source['base']}" + (f" and merging the LoRA adapter {source['adapter']}"
                                                    if source["adapter"] else "")):
        model, tokenizer = load_model_and_tokenizer(opts.model, device="cpu", dtype="fp32")
        check_rope_config(resolve_model_path(opts.model)[0], model)
        gen = generation_config(model, tokenizer, opts.max_new_tokens)
    with atomic_dir(opts.out) as tmp:
        with steps.step("saving merged safetensors, config and tokenizer"):
            save_merged(model, tokenizer, gen, tmp)
        with steps.step("exporting the decoder to ONNX (optimum-onnx, text-generation-with-past)"):
            with interrupts.deferred("the ONNX export"):
                export_decoder(tmp, tmp, opset=opts.opset)
        for dtype in opts.dtypes[1:]:
            with steps.step(f"building {onnx_file(tmp, dtype).name} ({dtype})"):
                build_dtype(tmp, dtype, opts.quant)
        set_transformersjs_config(tmp)
        keep_margin = carry_keep_margin(opts.model, tmp)
        parity = None
        if opts.verify:
            with steps.step(f"parity on {len(examples)} examples: PyTorch vs onnxruntime {', '.join(opts.dtypes)}"):
                report = check_parity(model, tokenizer, tmp, examples, opts.dtypes, gen, opts.quant.accuracy_level,
                                      progress=lambda items, desc: tqdm(items, desc=desc, unit="span", leave=False))
                report.data = str(opts.verify_data)
                enforce_fp32(report)
                parity = report.to_dict()
        with steps.step("writing model card and manifest"):
            sizes = onnx_sizes(tmp, opts.dtypes)
            manifest: dict[str, Any] = {
                "format": "spantune-export/1",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": source,
                "dtypes": list(opts.dtypes),
                "quantization": {d: q for d in opts.dtypes if (q := quant_record(d, opts.quant))},
                "onnx_bytes": sizes,
                "size_ratio_vs_fp32": {d: round(s / sizes["fp32"], 4) for d, s in sizes.items()},
                "generation": {"do_sample": False, "max_new_tokens": gen.max_new_tokens,
                               "eos_token_id": gen.eos_token_id},
                "parity": parity,
                "keep_margin": keep_margin,
                "packages": package_versions(),
            }
            (tmp / "README.md").write_text(model_card(manifest, run_card(source)), encoding="utf-8")
            manifest["files"] = file_hashes(tmp)
            write_json(tmp / "manifest.json", manifest)
            make_readable(tmp)
    return manifest
