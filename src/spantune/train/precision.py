"""The training precision: bf16 where the hardware computes it natively, fp32 elsewhere, decided once per run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spantune.errors import SpantuneError
from spantune.train.config import TrainConfig


@dataclass(frozen=True)
class Precision:
    """The resolved training precision, and the sentence that says why (training log, run_info.json, model card)."""

    name: str  #: fp32, bf16 or fp16
    detail: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def fp16(self) -> bool:
        return self.name == "fp16"


def cpu_bf16() -> str | None:
    """The CPU's native bf16 instructions (``amx`` or ``avx512_bf16``), None without: there bf16 is emulated and
    slower than fp32. Asked of torch's own capability probes, never guessed from the vendor."""
    import torch

    for name, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        if getattr(torch.cpu, probe, lambda: False)():
            return name
    return None


def mixed_precision(cfg: TrainConfig) -> Precision:
    """bf16 on GPUs and CPUs that compute it natively, fp32 elsewhere; asking for what the machine lacks fails.

    bf16 means frozen base weights stored in bf16, LoRA weights and optimizer state in fp32, the forward under
    ``torch.autocast`` (the Trainer's bf16 mode), and on a CPU eager attention (:func:`use_eager_attention`): a
    step of the CPU recipe took 0.76x the time of fp32 on an AMX Xeon at 0.68x the peak memory, 0.83x on an
    AMD EPYC with the older bf16 path; the same 800 steps reached the same real-dev exact match as fp32
    (benchmarks/RESULTS.md, runs 7 and 8). Quant-aware training stays fp32 on CPU: its 4-bit grid is the one
    the export computes from fp32 weights.
    """
    import torch

    want, qa = cfg.model.precision, cfg.quant_aware.enabled
    # TRL casts QLoRA adapters to bf16 (the QLoRA paper's recipe); PEFT keeps other adapters fp32
    weights = "frozen weights 4-bit NF4, LoRA bf16" if cfg.model.qlora else "frozen weights bf16, LoRA fp32"
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        if want == "bf16" and not supported:
            raise SpantuneError("config key model.precision: this GPU has no bf16 support; use fp16 or fp32")
        name = ("bf16" if supported else "fp32") if want == "auto" else want
        how = {"bf16": f": {weights}, autocast", "fp16": ": fp16 autocast"}.get(name, "")
        return Precision(name, f"{name} (cuda{how})")
    native = cpu_bf16()
    if want == "fp16":
        raise SpantuneError("config key model.precision: fp16 needs a CUDA GPU; on CPU use auto, bf16 or fp32")
    if want == "bf16" and native is None:
        raise SpantuneError("config key model.precision: bf16 needs a CUDA GPU or a CPU with native bf16 "
                            "(AVX512-BF16 or AMX), which this CPU lacks; use auto or fp32")
    if want == "bf16" and qa:
        raise SpantuneError("config key model.precision: bf16 with quant_aware.enabled on CPU is not supported "
                            "(the 4-bit grid must come from fp32 weights, as the export's does); use auto or fp32")
    if want == "fp32":
        return Precision("fp32", "fp32 (cpu, as configured)")
    if native is None:
        return Precision("fp32", "fp32 (cpu without native bf16)")
    if qa:
        return Precision("fp32", f"fp32 (cpu {native}, but quant-aware training keeps its 4-bit grid on fp32 weights)")
    return Precision("bf16", f"bf16 (cpu {native}: {weights}, autocast, eager attention)")


def use_eager_attention(model: Any) -> None:
    """Eager attention for bf16 training on a CPU: torch's CPU flash-attention backward in bf16 took ~30 % of a
    step of the CPU recipe (~70-token rows), where the eager softmax(QK^T)V costs a few milliseconds
    (benchmarks/RESULTS.md, run 8)."""
    model.get_base_model().set_attn_implementation("eager")
