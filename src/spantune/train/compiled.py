"""Regional compilation: every decoder layer compiled with ``torch.compile`` for the training steps.

A LoRA step of a small model on a CPU is ~40 % matmuls and ~60 % small element-wise ops (adapter scaling and
sums, norms, rotary, activations, dtype casts), each a separate pass over memory. Inductor fuses them. Compiling
the decoder layer rather than the whole model compiles one graph that every layer reuses (the layers share
their code; only weights differ), with dynamic sequence lengths, so a run pays ~40 s of compilation once
instead of minutes. On an AMX Xeon it made a bf16 step of the CPU recipe 1.4x faster (benchmarks/RESULTS.md,
run 9). Evaluations run the same layers eagerly (:func:`eager`): generation with a key/value cache would
compile other graphs for no gain.
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from typing import Any

from spantune.errors import SpantuneError


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks: the module classes its ``_no_split_modules`` names (transformers' own list of
    the layers that must stay whole, e.g. ``LlamaDecoderLayer``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in base.modules() if type(m).__name__ in names]


def compile_layers(model: Any) -> int:
    """Compile each decoder layer in place (its parameters and state-dict keys stay as they are, so adapters
    save and load as before); returns how many. On a CPU, inductor builds C++ kernels: a missing compiler fails
    here, before training starts."""
    import torch

    if not torch.cuda.is_available():
        compiler = os.environ.get("CXX") or "g++"
        if shutil.which(compiler) is None:
            raise SpantuneError(f"config key train.compile: torch.compile on a CPU needs a C++ compiler ({compiler} "
                                "not found; install g++ or set CXX), or set train.compile false")
    layers = decoder_layers(model)
    if not layers:
        raise SpantuneError("config key train.compile: this model names no decoder layer class "
                            "(_no_split_modules) to compile; set train.compile false")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def eager() -> AbstractContextManager[Any]:
    """Compiled modules run their plain Python code inside this block (a no-op where nothing is compiled)."""
    import torch

    return torch.compiler.set_stance("force_eager")
