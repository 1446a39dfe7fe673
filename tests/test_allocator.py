"""The allocator the spantune command runs on: tcmalloc or jemalloc where found (lookup mocked), else glibc's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ROOT, cli_env

from spantune import allocator, cli
from spantune.errors import SpantuneError


def _machine_has(monkeypatch: pytest.MonkeyPatch, *libraries: str) -> None:
    """``ctypes.util.find_library`` as on a machine with exactly these libraries (e.g. ``jemalloc``)."""
    sonames = {"tcmalloc_minimal": "libtcmalloc_minimal.so.4", "tcmalloc": "libtcmalloc.so.4",
               "jemalloc": "libjemalloc.so.2"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library",
                        lambda name: sonames[name] if name in libraries else None)


def test_auto_prefers_tcmalloc_then_jemalloc_then_the_c_library(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_has(monkeypatch, "tcmalloc_minimal", "jemalloc")
    assert allocator.wanted({}) == ("tcmalloc", "libtcmalloc_minimal.so.4")
    assert allocator.wanted({allocator.ENV: "jemalloc"}) == ("jemalloc", "libjemalloc.so.2")
    assert allocator.wanted({allocator.ENV: "System"}) is None
    _machine_has(monkeypatch, "jemalloc")
    assert allocator.wanted({allocator.ENV: "auto"}) == ("jemalloc", "libjemalloc.so.2")
    _machine_has(monkeypatch)
    assert allocator.wanted({}) is None and allocator.preload_env({}) is None


def test_a_named_allocator_that_is_missing_or_unknown_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_has(monkeypatch, "jemalloc")
    with pytest.raises(SpantuneError, match=r"^SPANTUNE_ALLOCATOR=tcmalloc: no libtcmalloc_minimal on this machine "
                                            r"\(Debian/Ubuntu: apt-get install libtcmalloc-minimal4\)"):
        allocator.wanted({allocator.ENV: "tcmalloc"})
    with pytest.raises(SpantuneError, match=r"^SPANTUNE_ALLOCATOR='mimalloc': choose one of auto, tcmalloc, "
                                            r"jemalloc, system$"):
        allocator.wanted({allocator.ENV: "mimalloc"})


def test_preload_env_adds_the_library_once_and_keeps_other_preloads(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_has(monkeypatch, "tcmalloc_minimal")
    env = allocator.preload_env({"LD_PRELOAD": "/opt/libfoo.so", "HOME": "/root"})
    assert env is not None and env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4:/opt/libfoo.so" and env["HOME"] == "/root"
    assert allocator.preload_env(env) is None  # an allocator already preloaded
    assert allocator.preload_env({}) == {"LD_PRELOAD": "libtcmalloc_minimal.so.4", "SPANTUNE_ALLOCATOR_RELAUNCHED": ""}


def test_in_use_reads_the_libraries_mapped_into_the_process(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.in_use(maps) == "system"
    maps.write_text(maps.read_text() + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.in_use(maps) == "jemalloc"
    assert allocator.in_use(tmp_path / "missing") == "system"


def test_the_command_runs_itself_again_with_the_allocator_preloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine_has(monkeypatch, "tcmalloc_minimal")
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator, "in_use", lambda: "system")
    monkeypatch.delenv("SPANTUNE_ALLOCATOR_RELAUNCHED", raising=False)
    monkeypatch.delenv(allocator.ENV, raising=False)
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *a: calls.append(a))
    allocator.relaunch_with_allocator(["train", "--config", "x.yaml"])
    (path, argv, env), = calls
    assert (path, argv) == (sys.executable, [sys.executable, "-m", "spantune", "train", "--config", "x.yaml"])
    assert env["LD_PRELOAD"] == f"libtcmalloc_minimal.so.4:{os.environ.get('LD_PRELOAD', '')}".rstrip(":")
    # the relaunched process (where a library failed to load, too) does not relaunch, and puts LD_PRELOAD back for
    # the processes it starts
    monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4:/opt/libfoo.so")
    monkeypatch.setenv("SPANTUNE_ALLOCATOR_RELAUNCHED", "/opt/libfoo.so")
    allocator.relaunch_with_allocator(["train"])
    assert os.environ["LD_PRELOAD"] == "/opt/libfoo.so" and "SPANTUNE_ALLOCATOR_RELAUNCHED" not in os.environ
    monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")
    monkeypatch.setenv("SPANTUNE_ALLOCATOR_RELAUNCHED", "")
    allocator.relaunch_with_allocator(["train"])
    assert "LD_PRELOAD" not in os.environ
    # nor does a command given its arguments (a call from Python, not a process start)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert len(calls) == 1


def test_a_bad_allocator_setting_stops_the_command_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "spantune", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env={**cli_env(), allocator.ENV: "mimalloc"}, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "spantune: error: SPANTUNE_ALLOCATOR='mimalloc': choose one of auto, tcmalloc, jemalloc, system"]


def test_the_started_command_runs_on_the_allocator_this_machine_has() -> None:
    """End to end, with whatever this machine has: ``--version`` names the allocator of the process that prints it."""
    env = {k: v for k, v in cli_env().items() if k not in ("LD_PRELOAD", allocator.ENV)}
    proc = subprocess.run([sys.executable, "-m", "spantune", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)
    expected = (allocator.wanted(env) or ("system",))[0] if sys.platform.startswith("linux") else "system"
    assert proc.returncode == 0 and proc.stdout.strip().endswith(f"(memory allocator: {expected})"), proc.stdout
    system = subprocess.run([sys.executable, "-m", "spantune", "--version"], capture_output=True, text=True,
                            cwd=ROOT, env={**env, allocator.ENV: "system"}, timeout=60)
    assert system.stdout.strip().endswith("(memory allocator: system)"), system.stdout
