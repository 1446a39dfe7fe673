"""Provenance for every run folder: resolved config, data hashes, package versions, git commit."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune.config import dump_yaml, to_dict
from spantune.io import atomic_write, sha256_file, write_json

PACKAGES = ("spantune", "torch", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets",
            "optimum", "optimum-onnx", "onnx", "onnxruntime", "sacrebleu", "rapidfuzz", "errant", "numpy")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD commit (with ``-dirty`` when the tree has changes), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def run_info(config: Any, data_files: dict[str, str | Path] | None = None) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": to_dict(config),
        "data": {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in (data_files or {}).items()},
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def write_run_info(run_dir: str | Path, config: Any, data_files: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Write ``run_info.json`` and ``config.yaml`` (the resolved config) into ``run_dir``."""
    run_dir = Path(run_dir)
    info = run_info(config, data_files)
    write_json(run_dir / "run_info.json", info)
    with atomic_write(run_dir / "config.yaml") as fh:
        fh.write(dump_yaml(config))
    return info
