"""Installed package versions, recorded with every run, report and export so a result can be reproduced."""

from __future__ import annotations

import importlib.metadata

PACKAGES = ("spantune", "torch", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets",
            "optimum", "optimum-onnx", "onnx", "onnxruntime", "sacrebleu", "rapidfuzz", "errant", "numpy")


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``; None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    return {name: package_version(name) for name in names}
