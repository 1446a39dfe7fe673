"""Load a model by hub id, local folder, training run, or the embedded offline default.

The model arguments' grammar lives here too (the ``--system`` prefixes of an export folder, the run folder of an
adapter), below every layer that reads them: inference, export and evaluation resolve them one way.

Nothing here may hang without a network: hub look-ups get short timeouts, and every failure
becomes a :class:`ModelNotFoundError` that says where to put the model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from spantune.errors import ModelNotFoundError, SpantuneError

EMBEDDED = "embedded"
#: ``--system`` prefixes of an export folder: ``onnx:DIR`` (onnxruntime) and ``node:DIR`` (Transformers.js in Node).
ONNX_PREFIX = "onnx:"
NODE_PREFIX = "node:"
EXPORT_PREFIXES = (ONNX_PREFIX, NODE_PREFIX)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Short hub timeouts: a machine without network must fail in seconds, not minutes.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; asking for CUDA without it is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpantuneError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bf16 on GPUs that support it, fp32 otherwise: CPU inference, and so every evaluation, merge and
    export of a trained adapter, is fp32 even when training ran in bf16 (spantune.train.mixed_precision)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise SpantuneError(f"unknown dtype {dtype!r} (choose auto, fp32, bf16, fp16)")
    return table[dtype]


def adapter_dir(path: Path) -> Path | None:
    """The LoRA adapter folder of a training run (or the adapter folder itself), if any."""
    for cand in (path, path / "adapter"):
        if (cand / "adapter_config.json").is_file():
            return cand
    return None


def run_folder(adapter: Path | None) -> Path | None:
    """The training run folder an adapter came from (it holds run_info.json), if any."""
    if adapter is None:
        return None
    return next((d for d in (adapter, adapter.parent) if (d / "run_info.json").is_file()), None)


def resolve_model_path(name_or_path: str) -> tuple[str, Path | None]:
    """Map a user's model argument to (base model id or folder, adapter folder or None)."""
    if name_or_path == EMBEDDED:
        from spantune.embedded import ensure_embedded_model

        return str(ensure_embedded_model()), None
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        adapter = adapter_dir(path)
        if adapter is None:
            if not (path / "config.json").is_file():
                raise ModelNotFoundError(f"{path} is a folder but holds no model (no config.json, no adapter)")
            return str(path), None
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        return resolve_model_path(base)[0], adapter
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file; pass a model folder, a hub id or '{EMBEDDED}'")
    if not _HUB_ID.match(name_or_path):
        raise ModelNotFoundError(f"model folder {name_or_path} not found: put a transformers model folder there, "
                                 f"pass a hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or use '{EMBEDDED}'")
    return name_or_path, None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub endpoint, so an offline machine fails in seconds."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_load_kwargs(name: str) -> dict[str, Any]:
    """``local_files_only`` when offline (HF_HUB_OFFLINE or no route to the hub); fail fast if not cached."""
    if Path(name).is_dir():
        return {}
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not _hub_reachable()
    if offline and not cached:
        raise ModelNotFoundError(
            f"cannot load {name!r}: it is not in the local Hugging Face cache and the hub is not reachable "
            f"(offline). With internet: `huggingface-cli download {name}`; offline: pass a local model folder "
            f"or use '{EMBEDDED}'")
    return {"local_files_only": True} if offline else {}


def _hub_error(name: str, exc: Exception) -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(
        f"cannot load {name!r}: not in the local Hugging Face cache and the hub is unreachable or refused "
        f"({first[:160]}). With internet: `huggingface-cli download {name}`; offline: pass a local model folder "
        f"(or set HF_HOME to a cache that holds it)")


def load_tokenizer(name_or_path: str) -> Any:
    """Tokenizer of a model id/folder/run, with the same error handling as the model."""
    from transformers import AutoTokenizer

    base, adapter = resolve_model_path(name_or_path)
    source = str(adapter) if adapter and (adapter / "tokenizer_config.json").is_file() else base
    try:
        return AutoTokenizer.from_pretrained(source, **hub_load_kwargs(source))
    except (OSError, ValueError) as exc:
        raise _hub_error(source, exc) from None


def load_model_and_tokenizer(name_or_path: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode on ``device``; a run folder's LoRA adapter is merged in, and a
    quant-aware run's merge is put on the 4-bit grid it was trained on (so it is the model that run evaluated)."""
    from transformers import AutoModelForCausalLM

    base, adapter = resolve_model_path(name_or_path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = load_tokenizer(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype, **hub_load_kwargs(base))
    except (OSError, ValueError) as exc:
        raise _hub_error(base, exc) from None
    if adapter is not None:
        from peft import PeftModel

        from spantune.train.quant_aware import marker_block_size, snap_model

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        block = marker_block_size(adapter)
        if block is not None:
            snap_model(model, block)
    model.to(dev).eval()
    return model, tokenizer
