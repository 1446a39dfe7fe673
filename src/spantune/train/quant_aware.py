"""4-bit weights as the browser file stores them, in PyTorch: for training that sees them, and for snapping.

onnxruntime's symmetric round-to-nearest 4-bit (MatMulNBits for MatMuls, GatherBlockQuantized for the
embedding) splits each weight row into blocks of ``block_size`` along the input dimension, scales each block by
its largest-magnitude value / -8 and rounds to the integers -8..7. A model whose weights already lie on that
grid quantizes to itself, so its q4 file decodes like its fp32 file; training through the grid (straight-through
estimator) lets the adapter learn weights that stay good once they are put there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spantune.errors import InputError


def fake_quant(weight: torch.Tensor, block_size: int = 32) -> torch.Tensor:
    """``weight`` (rows × inputs) rounded to onnxruntime's symmetric 4-bit block grid, same shape and dtype."""
    rows, cols = weight.shape
    pad = (-cols) % block_size
    blocks = F.pad(weight, (0, pad)).reshape(rows, -1, block_size)
    hi = blocks.amax(-1, keepdim=True)
    lo = blocks.amin(-1, keepdim=True)
    scale = torch.where(hi.abs() > lo.abs(), hi, lo) / -8.0
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.where(scale == 0, torch.zeros_like(blocks), (blocks / safe).round().clamp(-8, 7))
    return (q * scale).reshape(rows, -1)[:, :cols]


def straight_through(weight: torch.Tensor, block_size: int = 32) -> torch.Tensor:
    """Forward: the 4-bit weight; backward: the gradient passes to ``weight`` unchanged."""
    return weight + (fake_quant(weight, block_size) - weight).detach()


@torch.no_grad()
def snap_model(model: Any, block_size: int = 32, skip: frozenset[int] = frozenset()) -> int:
    """Put every Linear and Embedding weight of ``model`` (but modules whose id is in ``skip``) on the 4-bit grid
    in place; returns how many. Tied weights (embedding = lm_head) are one tensor and are snapped once."""
    seen: set[int] = set()
    for module in model.modules():
        if (isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and id(module) not in skip
                and id(module.weight) not in seen):
            seen.add(id(module.weight))
            module.weight.copy_(fake_quant(module.weight, block_size))
    return len(seen)


#: Written into a quant-aware run's adapter folder; loaders snap the merged model when they find it.
MARKER = "quant_aware.json"
SCHEME = "onnxruntime symmetric round-to-nearest 4-bit (MatMulNBits / GatherBlockQuantized)"


def write_marker(adapter: Path, block_size: int) -> None:
    """Record in the adapter folder that its weights were trained on the grid, so loaders snap the merge."""
    from spantune.io import write_json

    write_json(adapter / MARKER, {"scheme": SCHEME, "bits": 4, "symmetric": True, "block_size": block_size})


def marker_block_size(adapter: Path | None) -> int | None:
    """The grid's block size if ``adapter`` was trained quant-aware, else None."""
    path = adapter / MARKER if adapter is not None else None
    if path is None or not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["block_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, None, "block_size", f"unreadable ({exc})") from None


class Grid:
    """Quant-aware training of a PEFT LoRA model, switched on by :meth:`enable` (at once, or from a later step).

    Once on, every LoRA layer computes with its merged weight rounded to the 4-bit grid (straight-through), and
    the frozen weights outside LoRA are snapped: they never change, so snapping them is exactly what the export
    does to them later. Before that, the layers run PEFT's own forward."""

    def __init__(self, model: Any, block_size: int = 32) -> None:
        from peft.tuners.lora import LoraLayer

        self.model, self.block_size, self.on, self.snapped = model, block_size, False, 0
        self.lora_layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        if not self.lora_layers:
            raise ValueError("quant-aware training needs LoRA layers (none found)")
        if any(not m.base_layer.weight.dtype.is_floating_point for m in self.lora_layers):
            raise ValueError("quant-aware training needs float base weights, not a 4-bit (QLoRA) base")
        for layer in self.lora_layers:
            layer.forward = self._forward(layer, layer.forward)

    def enable(self) -> None:
        if self.on:
            return
        inside = frozenset(id(sub) for layer in self.lora_layers for sub in layer.modules())  # bases, A/B factors
        self.snapped = snap_model(self.model, self.block_size, skip=inside)
        self.on = True

    def _forward(self, layer: Any, peft_forward: Any) -> Any:
        """``layer``'s forward through ``straight_through(base + delta)`` while the grid is on.

        Without gradients (the generation evaluations) the rounded weight is kept until a parameter changes,
        so decoding token by token does not round every weight again at every step."""
        cache: dict[str, Any] = {}
        block_size = self.block_size

        def merged() -> torch.Tensor:
            weight = layer.base_layer.weight
            if not layer.disable_adapters:
                for name in layer.active_adapters:
                    if name in layer.lora_A:
                        weight = weight + layer.get_delta_weight(name)
            return weight

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if not self.on:
                return peft_forward(x, *args, **kwargs)
            if torch.is_grad_enabled():
                cache.clear()
                return F.linear(x, straight_through(merged(), block_size), layer.base_layer.bias)
            params = [layer.base_layer.weight, *(m[n].weight for m in (layer.lora_A, layer.lora_B)
                                                for n in layer.active_adapters if n in m)]
            key = (layer.disable_adapters, tuple(layer.active_adapters), tuple(p._version for p in params))
            if cache.get("key") != key:
                cache.update(key=key, weight=fake_quant(merged(), block_size))
            return F.linear(x, cache["weight"], layer.base_layer.bias)

        return forward

