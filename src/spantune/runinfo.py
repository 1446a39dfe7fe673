"""Provenance for every run folder: resolved config, data hashes and licences, package versions, git commit."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune import allocator, embedded
from spantune.config import dump_yaml, to_dict
from spantune.errors import SpantuneError
from spantune.io import atomic_write, sha256_file, write_json
from spantune.models import _HUB_ID, EMBEDDED
from spantune.versions import package_versions

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


NO_MANIFEST = "unknown (no manifest)"
#: Licences of the base models spantune names in its recipes; any other base gets UNKNOWN_LICENSE.
KNOWN_LICENSES = {embedded.UPSTREAM: embedded.LICENSE, "Qwen/Qwen2.5-0.5B-Instruct": "Apache-2.0"}
UNKNOWN_LICENSE = "see the base model's card"
# Manifests written before sources said "commercial" only have the licence text to go by.
_NONCOMMERCIAL = re.compile(r"\bNC\b|non-?commercial", re.IGNORECASE)


def _commercial(source: dict[str, Any]) -> bool | None:
    """The source's own ``commercial`` flag, else False for a licence that says non-commercial, else unknown."""
    flag = source.get("commercial")
    if isinstance(flag, bool):
        return flag
    return False if _NONCOMMERCIAL.search(str(source.get("license") or "")) else None


def data_sources(path: str | Path) -> list[dict[str, Any]] | str:
    """The sources a data file was built from, read from its ``FILE.manifest.json`` (synthetic spans are made
    from these sources' text, so they carry the same licences); NO_MANIFEST when the file has none."""
    manifest = Path(f"{path}.manifest.json")
    if not manifest.is_file():
        return NO_MANIFEST
    try:
        sources = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
        return [{"name": s["name"], "kind": s.get("kind"), "license": s.get("license"), "commercial": _commercial(s)}
                for s in sources if "skipped" not in s]  # a skipped source contributed nothing
    except (ValueError, KeyError, TypeError) as exc:
        raise SpantuneError(f"{manifest}: not a data manifest with a sources list "
                            f"({type(exc).__name__}: {exc})") from None


def public_base_model(name: str) -> dict[str, str | None]:
    """How a card names a base model (``model.name`` or an adapter's base): its public id and licence, never
    this machine's cache path, so a reader can find the model and its terms."""
    folder = Path(name).expanduser()
    if name == EMBEDDED or (folder / embedded.MARKER).is_file():  # MARKER: the converted embedded folder
        return {"name": embedded.UPSTREAM, "license": embedded.LICENSE,
                "note": f"shipped as GGUF in the PyPI wheel {embedded.DISTRIBUTION}"}
    if folder.is_dir():
        config = folder / "config.json"
        origin = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") if config.is_file() else None
        looks_public = isinstance(origin, str) and bool(_HUB_ID.match(origin)) and not Path(origin).is_dir()
        public = origin if looks_public else folder.resolve().name
        return {"name": public, "license": KNOWN_LICENSES.get(public, UNKNOWN_LICENSE),
                "note": None if looks_public else "local model folder"}
    return {"name": name, "license": KNOWN_LICENSES.get(name, UNKNOWN_LICENSE), "note": None}


def run_info(config: Any, data_files: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Everything needed to tell what a run was made from, including each data file's sources and licences."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": to_dict(config),
        "data": {name: {"path": str(p), "sha256": sha256_file(p), "sources": data_sources(p)}
                 for name, p in (data_files or {}).items()},
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "allocator": allocator.in_use(),
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
