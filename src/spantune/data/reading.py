"""Which files each configured source names, whether it may be read, and reading them with provenance.

The builder's first step: a missing required file or a path naming a hidden measuring split stops the build
here, before anything is parsed, with the config key that named it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from spantune.data.bea import read_bea
from spantune.data.config import CleanSource, DataConfig, RealSource, measuring_set, resolve
from spantune.data.sources import CleanLine, Pair, read_clean, read_line_aligned, read_m2, read_parallel_jsonl, read_tsv
from spantune.errors import SpantuneError
from spantune.io import sha256_file


def _files_info(paths: list[Path], base: Path) -> list[dict[str, str]]:
    out = []
    for p in paths:
        try:
            shown = str(p.relative_to(base))
        except ValueError:
            shown = str(p)
        out.append({"path": shown, "sha256": sha256_file(p)})
    return out


def _source_files(src: RealSource | CleanSource, base: Path) -> list[Path]:
    root = resolve(src.path, base)
    if isinstance(src, CleanSource):
        return [root]
    if src.format == "lines":
        return [root / src.src, *(root / r for r in src.refs)]
    return [root / f for f in src.files] if src.format == "bea" else [root]


def _usable(src: RealSource | CleanSource, key: str, files: list[Path], cfg: DataConfig) -> str | None:
    """Why a configured source is left out (None: read it); refusals and required-but-missing raise."""
    for f in files:
        why = measuring_set(f)
        if why:
            raise SpantuneError(f"config key {key} ({src.name}): {f} {why}: it is a hidden measuring set, "
                                "never read for training or model selection")
    if cfg.commercial_only and not src.commercial:
        return "dropped by commercial_only: its licence does not allow commercial use"
    missing = [f for f in files if not f.exists()]
    if missing and src.required:
        raise SpantuneError(f"config key {key} ({src.name}): {missing[0]} not found")
    return f"{missing[0]} not found" if missing else None


def _read_real(src: RealSource, files: list[Path], counts: Counter[str]) -> list[Pair]:
    if src.format == "lines":
        return read_line_aligned(files[0], files[1:], name=src.name, tokenized=src.tokenized)
    if src.format == "bea":
        return read_bea(files, name=src.name, counts=counts)
    readers = {"tsv": read_tsv, "jsonl": read_parallel_jsonl}
    if src.format in readers:
        return readers[src.format](files[0], name=src.name, tokenized=src.tokenized)
    return read_m2(files[0], name=src.name)


def read_sources(cfg: DataConfig, base: Path, counts: Counter[str]) -> tuple[list[Pair], list[CleanLine], list[dict[str, Any]]]:
    """All real pairs and clean lines, with provenance; skipped-edit counts of BEA sources go to ``counts``.

    A missing required source, or one naming a hidden measuring split, is an error naming its config key.
    """
    pairs: list[Pair] = []
    clean: list[CleanLine] = []
    info: list[dict[str, Any]] = []
    sources: list[tuple[str, RealSource | CleanSource]] = [
        *((f"real_sources[{i}]", s) for i, s in enumerate(cfg.real_sources)),
        *((f"clean_sources[{i}]", s) for i, s in enumerate(cfg.clean_sources))]
    for key, src in sources:
        files = _source_files(src, base)
        entry: dict[str, Any] = {"name": src.name, "kind": "clean" if isinstance(src, CleanSource) else "real",
                                 "license": src.license, "commercial": src.commercial}
        skipped = _usable(src, key, files, cfg)
        if skipped:
            info.append({**entry, "skipped": skipped})
            continue
        if isinstance(src, CleanSource):
            lines = read_clean(files[0], name=src.name, tokenized=src.tokenized)
            clean += lines
            info.append({**entry, "sentences": len(lines), "files": _files_info(files, base)})
            continue
        got = _read_real(src, files, counts)
        for pair in got:
            pair.split = src.split
        pairs += got
        info.append({**entry, "format": src.format, "split": src.split, "cap": src.cap, "sentences": len(got),
                     "files": _files_info(files, base)})
    return pairs, clean, info
