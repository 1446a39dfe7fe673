"""The demo's step cache: a step's key is the sha256 of its inputs (config values, input file hashes, and the
keys of the steps it depends on), and ``RUN_DIR/state.json`` records each finished step's key and result.

A re-run skips a step whose key is unchanged and whose outputs still exist, so changing the training recipe
re-runs training and everything after it, but not the data build. A step interrupted mid-way resumes where
it can (training from its last checkpoint, evaluations from their last prediction) when its key is unchanged,
and otherwise starts from an empty output folder. ``--force`` redoes every step.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError

STATE_FILE = "state.json"
STATE_VERSION = 1


def fingerprint(inputs: Any) -> str:
    """Stable hash of a JSON-able description of a step's inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of an input file; a missing file is a one-line error naming it."""
    from spantune.io import sha256_file

    p = Path(path)
    if not p.is_file():
        raise SpantuneError(f"{p}: input file not found")
    return sha256_file(p)


@dataclass
class Done:
    """A finished (or cached) step: its key, for the steps that depend on it, and its result."""

    key: str
    result: dict[str, Any]


class StepCache:
    """Runs each named step at most once per input key, recording results in ``state.json``.

    A step function gets ``resume`` (True when the same key was started and not finished) and returns
    a JSON-able dict; its ``"outputs"`` entry lists paths that must still exist for a cached result to
    count. The state is rewritten atomically after every step, so a kill loses at most the running step.
    """

    def __init__(self, run_dir: Path, force: bool, console: Any) -> None:
        self.path = run_dir / STATE_FILE
        self.force = force
        self.console = console
        self.log: list[tuple[str, str, float]] = []  # (title, "ran" | "cached", seconds)
        self.state: dict[str, Any] = {"version": STATE_VERSION, "steps": {}}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SpantuneError(f"{self.path}: unreadable step state ({exc}); delete it or pass --force") from None
            if loaded.get("version") == STATE_VERSION:
                self.state = loaded

    def _save(self) -> None:
        from spantune.io import write_json

        write_json(self.path, self.state)

    def cached(self, name: str, key: str) -> dict[str, Any] | None:
        prev = self.state["steps"].get(name, {})
        if self.force or prev.get("status") != "done" or prev.get("key") != key:
            return None
        if not all(Path(p).exists() for p in prev["result"].get("outputs", [])):
            return None
        return prev

    def run(self, name: str, title: str, inputs: dict[str, Any], fn: Callable[[bool], dict[str, Any]]) -> Done:
        key = fingerprint({"step": name, **inputs})
        prev = self.cached(name, key)
        if prev is not None:
            self.console.print(f"[green]✓[/] {title} [dim](cached, took {duration(prev['seconds'])})[/]")
            self.log.append((title, "cached", prev["seconds"]))
            return Done(key, prev["result"])
        old = self.state["steps"].get(name, {})
        resume = not self.force and old.get("status") == "running" and old.get("key") == key
        self.console.rule(f"[bold]{title}[/]" + (" [yellow](resuming)[/]" if resume else ""), align="left")
        self.state["steps"][name] = {"key": key, "status": "running", "inputs": inputs,
                                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._save()
        t0 = time.perf_counter()
        result = fn(resume)
        seconds = round(time.perf_counter() - t0, 1)
        self.state["steps"][name].update(status="done", result=result, seconds=seconds,
                                         finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._save()
        self.console.print(f"[green]✓[/] {title} [dim]({duration(seconds)})[/]")
        self.log.append((title, "ran", seconds))
        return Done(key, result)


def duration(seconds: float) -> str:
    """Seconds below 90 s, minutes above: how the demo shows step times."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def fresh_dir(path: Path, resume: bool) -> Path:
    """The step's output folder: kept for a resume, emptied otherwise (it belongs to the pipeline)."""
    if not resume and path.exists():
        shutil.rmtree(path)
    return path
