"""System specs for ``spantune eval --system``: what to load, and a fingerprint of what was loaded.

* ``identity``: returns ``span_in`` unchanged (the floor every system must beat).
* ``harper``: the Harper grammar checker through :mod:`spantune.peers.harper`.
* ``onnx:DIR``: an exported folder, run by onnxruntime with ``--dtype`` (q4 by default).
* ``node:DIR``: an exported folder, run by Transformers.js in Node (``js/src/corrector.js``) with ``--dtype``.
* anything else: a transformers model — local folder, training run, hub id, or ``embedded``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.infer.base import Corrector, Prediction
from spantune.infer.keep import KeepMargin
from spantune.io import sha256_file
from spantune.models import NODE_PREFIX, ONNX_PREFIX
from spantune.postprocess import PostResult
from spantune.versions import package_version
from spantune.schema import SpanExample


class IdentityCorrector:
    """Returns ``span_in``: its exact match is the data's no-op share, the floor to beat."""

    name = "identity"

    def correct(self, example: SpanExample) -> Prediction:
        t0 = time.perf_counter()
        return Prediction(raw=example.span_in, result=PostResult(example.span_in),
                          latency_s=time.perf_counter() - t0, new_tokens=0)


def files_sha256(root: Path, files: Iterable[Path]) -> str:
    """One digest over several files: sha256 of the sorted ``relative-path file-sha256`` lines."""
    lines = sorted(f"{p.relative_to(root).as_posix()} {sha256_file(p)}" for p in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def dir_sha256(root: Path) -> str:
    """Digest of every regular file under ``root`` (hidden files and folders skipped)."""
    files = [p for p in root.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return files_sha256(root, files)


@dataclass
class System:
    """A loaded corrector and the facts report.json records about it."""

    spec: str
    corrector: Corrector
    info: dict[str, Any]


def keep_info(keep: KeepMargin) -> dict[str, Any]:
    """What system.json records about the keep margin: nothing when it is off and unscored."""
    return {"keep_margin": keep.margin, "score_keep": keep.score} if keep.active else {}


def _onnx(spec: str, dtype: str | None, max_new_tokens: int, keep: KeepMargin) -> System:
    from spantune.infer.onnx_backend import OnnxCorrector

    folder = Path(spec[len(ONNX_PREFIX):]).expanduser()
    dtype = dtype or "q4"
    corrector = OnnxCorrector(folder, dtype=dtype, max_new_tokens=max_new_tokens, keep=keep)
    return System(spec, corrector, {"spec": spec, "kind": "onnx", "path": str(folder), "dtype": dtype,
                                    "max_new_tokens": max_new_tokens, **keep_info(keep),
                                    "sha256": export_sha256(folder, dtype)})


def export_sha256(folder: Path, dtype: str) -> str:
    """Digest of what an export system reads: the folder's top-level files and the decoder of ``dtype``."""
    from spantune.infer.onnx_backend import onnx_file

    model = onnx_file(folder, dtype)
    used = [p for p in folder.iterdir() if p.is_file()] + sorted(model.parent.glob(model.name + "*"))
    return files_sha256(folder, used)


def _node(spec: str, dtype: str | None, max_new_tokens: int, keep: KeepMargin, js_dir: Path | None) -> System:
    from spantune.infer.node_backend import DEFAULT_JS_DIR, NodeCorrector

    folder = Path(spec[len(NODE_PREFIX):]).expanduser()
    dtype = dtype or "q4"
    corrector = NodeCorrector(folder, js_dir or DEFAULT_JS_DIR, dtype=dtype, max_new_tokens=max_new_tokens, keep=keep)
    return System(spec, corrector, {"spec": spec, "kind": "transformers.js", "path": str(folder), "dtype": dtype,
                                    "max_new_tokens": max_new_tokens, **keep_info(keep),
                                    "sha256": export_sha256(folder, dtype), "runtime": corrector.runtime,
                                    "load_s": corrector.load_s})


def _transformers(spec: str, dtype: str | None, device: str, max_new_tokens: int, keep: KeepMargin) -> System:
    from spantune.infer.torch_backend import TorchCorrector
    from spantune.models import load_model_and_tokenizer, resolve_model_path

    base, adapter = resolve_model_path(spec)
    model, tokenizer = load_model_and_tokenizer(spec, device=device, dtype=dtype or "auto")
    corrector = TorchCorrector(model, tokenizer, max_new_tokens=max_new_tokens, name=spec, keep=keep)
    info: dict[str, Any] = {"spec": spec, "kind": "transformers", "base": base, "dtype": str(model.dtype),
                            "device": str(model.device), "max_new_tokens": max_new_tokens, **keep_info(keep)}
    if Path(base).is_dir():
        info["sha256"] = dir_sha256(Path(base))
    else:  # a hub id: the cache snapshot's commit identifies the weights
        info["commit"] = getattr(model.config, "_commit_hash", None)
    if adapter is not None:
        info["adapter"] = str(adapter)
        info["adapter_sha256"] = dir_sha256(adapter)
    return System(spec, corrector, info)


def load_system(spec: str, dtype: str | None = None, device: str = "auto", max_new_tokens: int = 32,
                keep: KeepMargin = KeepMargin(), js_dir: Path | None = None) -> System:
    """Load the system named by ``spec`` (see the module docstring); ``dtype`` None picks the default.
    ``keep`` (the keep margin) needs a model's log-probabilities, so identity and harper refuse it.
    ``js_dir`` is the js/ folder a ``node:`` system runs (None: this checkout's)."""
    if keep.active and spec in ("identity", "harper"):
        raise SpantuneError(f"--keep-margin/--score-keep need a model; the {spec} system has no log-probabilities")
    if spec == "identity":
        return System(spec, IdentityCorrector(), {"spec": spec, "kind": "identity"})
    if spec == "harper":
        from spantune.peers.harper import HarperCorrector

        return System(spec, HarperCorrector(), {"spec": spec, "kind": "peer", "package": "harper-py",
                                                "version": package_version("harper-py")})
    if spec.startswith(ONNX_PREFIX):
        return _onnx(spec, dtype, max_new_tokens, keep)
    if spec.startswith(NODE_PREFIX):
        return _node(spec, dtype, max_new_tokens, keep, js_dir)
    return _transformers(spec, dtype, device, max_new_tokens, keep)
