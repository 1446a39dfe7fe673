"""Parity of an export: greedy decoding with PyTorch and onnxruntime on the same prompts, logits compared.

Why logits and not only tokens: a wrong RoPE theta, a dropped bias or a position-id bug can leave the
first greedy tokens unchanged on short prompts while every logit has moved. The fp32 decoder must give
PyTorch's tokens on every example *and* logits within a tight tolerance, or the export is refused.
Quantized dtypes are measured, not gated: agreement with fp32 and their largest logit difference. Both sides
run the same loop (:func:`spantune.infer.decode.greedy`, no early stop), so a difference is the models'.

The reference is the in-memory model that was merged and saved, while the ONNX decoder is exported from
the saved folder: anything lost between the two (config keys, tied weights) shows up here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spantune.errors import SpantuneError
from spantune.infer.decode import Greedy
from spantune.infer.onnx_backend import OnnxDecoder, onnx_file
from spantune.infer.torch_backend import torch_greedy
from spantune.prompt import encode_prompt
from spantune.schema import SpanExample

#: fp32 ONNX vs PyTorch: max |Δlogit| must stay under ATOL + RTOL × max |logit| (float32 noise is ~1e-6 relative).
ATOL = 1e-4
RTOL = 1e-4


@dataclass
class DtypeParity:
    """How one ONNX dtype decodes the examples compared with PyTorch and with ONNX fp32."""

    dtype: str
    examples: int = 0
    same_as_torch: int = 0
    same_as_fp32: int = 0
    max_abs_logit_diff: float = 0.0  # vs PyTorch, over the steps where both saw the same tokens
    logit_scale: float = 0.0  # max |logit| of PyTorch on those steps, for reading the difference
    seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)  # example ids decoded differently from PyTorch

    @property
    def agreement_torch(self) -> float:
        return self.same_as_torch / self.examples if self.examples else 0.0

    @property
    def agreement_fp32(self) -> float:
        return self.same_as_fp32 / self.examples if self.examples else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(agreement_torch=round(self.agreement_torch, 4), agreement_fp32=round(self.agreement_fp32, 4))
        d["mismatches"] = self.mismatches[:20]
        return d


@dataclass
class ParityReport:
    examples: int
    max_new_tokens: int
    torch_seconds: float
    dtypes: dict[str, DtypeParity]
    data: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "max_new_tokens": self.max_new_tokens, "data": self.data,
                "tolerance": {"atol": ATOL, "rtol": RTOL}, "torch_seconds": round(self.torch_seconds, 2),
                "dtypes": {k: v.to_dict() for k, v in self.dtypes.items()}}


def shared_steps(a: Greedy, b: Greedy) -> int:
    """Steps whose inputs were identical for both decodes: up to and including the first differing token."""
    n = min(len(a.logits), len(b.logits))
    for i in range(min(len(a.tokens), len(b.tokens))):
        if a.tokens[i] != b.tokens[i]:
            return min(n, i + 1)
    return n


def logit_gap(ref: Greedy, other: Greedy) -> tuple[float, float]:
    """Max |Δlogit| over the steps both decodes shared, and the reference's max |logit| there."""
    steps = shared_steps(ref, other)
    if steps == 0:
        return 0.0, 0.0
    diff = max(float(np.abs(ref.logits[i] - other.logits[i]).max()) for i in range(steps))
    scale = max(float(np.abs(ref.logits[i]).max()) for i in range(steps))
    return diff, scale


def check_parity(model: Any, tokenizer: Any, model_dir: Path, examples: Sequence[SpanExample],
                 dtypes: Sequence[str], generation_config: Any, accuracy_level: int = 1,
                 progress: Callable[[Sequence[Any], str], Iterable[Any]] = lambda items, desc: items) -> ParityReport:
    """Decode ``examples`` with PyTorch and each ONNX dtype (4-bit pairs fused at ``accuracy_level``, as
    :class:`~spantune.infer.onnx_backend.OnnxCorrector` runs them); return agreement and logit differences."""
    prompts = [encode_prompt(tokenizer, ex).prompt for ex in examples]
    t0 = time.perf_counter()
    stop = generation_config.eos_token_id
    reference = [torch_greedy(model, ids, generation_config.max_new_tokens, stop, keep_logits=True)
                 for ids in progress(prompts, "PyTorch fp32")]
    torch_seconds = time.perf_counter() - t0
    fp32_runs: list[Greedy] = []
    results: dict[str, DtypeParity] = {}
    for dtype in ["fp32", *[d for d in dtypes if d != "fp32"]]:
        decoder = OnnxDecoder(onnx_file(model_dir, dtype), accuracy_level=accuracy_level)
        res = DtypeParity(dtype=dtype, examples=len(examples))
        t0 = time.perf_counter()
        runs = [decoder.greedy(ids, generation_config.max_new_tokens, stop, keep_logits=True)
                for ids in progress(prompts, f"onnxruntime {dtype}")]
        res.seconds = time.perf_counter() - t0
        fp32_runs = fp32_runs or runs
        for ex, ref, run, base in zip(examples, reference, runs, fp32_runs):
            diff, scale = logit_gap(ref, run)
            res.max_abs_logit_diff = max(res.max_abs_logit_diff, diff)
            res.logit_scale = max(res.logit_scale, scale)
            if run.tokens == ref.tokens:
                res.same_as_torch += 1
            else:
                res.mismatches.append(ex.id or tokenizer.decode(ref.tokens))
            res.same_as_fp32 += run.tokens == base.tokens
        results[dtype] = res
        del decoder
    return ParityReport(examples=len(examples), max_new_tokens=generation_config.max_new_tokens,
                        torch_seconds=torch_seconds, dtypes=results)


def enforce_fp32(report: ParityReport) -> None:
    """Refuse an export whose fp32 decoder is not PyTorch's model (tokens on every example, and logits)."""
    fp32 = report.dtypes["fp32"]
    limit = ATOL + RTOL * fp32.logit_scale
    if fp32.same_as_torch != fp32.examples:
        raise SpantuneError(
            f"parity failed: ONNX fp32 greedy output differs from PyTorch on {fp32.examples - fp32.same_as_torch}"
            f"/{fp32.examples} examples (first: {fp32.mismatches[0]!r}; max |Δlogit| {fp32.max_abs_logit_diff:.3g}); "
            "the export does not compute the same model (config lost on save? mismatched transformers versions?)")
    if fp32.max_abs_logit_diff > limit:
        raise SpantuneError(
            f"parity failed: ONNX fp32 logits differ from PyTorch by up to {fp32.max_abs_logit_diff:.3g} "
            f"(allowed {limit:.3g} at logit scale {fp32.logit_scale:.3g}) although the greedy tokens agree; "
            "the export does not compute the same model (e.g. a RoPE theta lost between transformers versions)")
