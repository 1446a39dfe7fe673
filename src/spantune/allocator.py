"""The C memory allocator a ``spantune`` process runs on: tcmalloc or jemalloc where the machine has one.

On a CPU, PyTorch takes every tensor it creates from the C library's ``malloc``. A compiled bf16 LoRA step of the
CPU recipe creates and frees thousands of intermediate tensors of many sizes, and glibc's allocator spent 6-10 % of
the main thread's time searching its free lists for them (``perf``), while the other core waited. Under tcmalloc
that step took 0.88x the time, and the fp32 recipe trained 1.18x faster at 0.79x the peak memory
(benchmarks/RESULTS.md, run 23). PyTorch's own CPU launcher
(``torch.backends.xeon.run_cpu``) preloads these allocators for the same reason. An allocator has to be in place
before the process starts, so the ``spantune`` command, started without one, runs itself again with the library in
``LD_PRELOAD`` (Linux only). ``SPANTUNE_ALLOCATOR`` picks it: ``auto`` (default: tcmalloc, else jemalloc, else the C
library's), ``tcmalloc``, ``jemalloc`` or ``system`` (leave the process as it is). On Debian and Ubuntu the
libraries are the packages ``libtcmalloc-minimal4`` and ``libjemalloc2``; ``make demo`` and ``make test`` install
the first where they can (``make allocator``).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from spantune.errors import SpantuneError

ENV = "SPANTUNE_ALLOCATOR"
#: each allocator and the libraries (``ctypes.util.find_library`` names) that provide it, in order of preference
LIBRARIES: dict[str, tuple[str, ...]] = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
#: the Debian/Ubuntu package of each allocator, named where one is asked for but missing
PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}
CHOICES = ("auto", *LIBRARIES, "system")
#: set, to the ``LD_PRELOAD`` it started with, in the environment of the command run again: it does not run itself a
#: third time (where a library fails to load) and its own child processes (a compiler, Node) start without the library
_RELAUNCHED = "SPANTUNE_ALLOCATOR_RELAUNCHED"


def named_in(text: str) -> str:
    """The allocator whose library ``text`` names (a process's memory map, an ``LD_PRELOAD``), else ``system``."""
    return next((name for name in LIBRARIES if f"lib{name}" in text), "system")


def in_use(maps: str | Path = "/proc/self/maps") -> str:
    """The allocator mapped into this process (``tcmalloc``, ``jemalloc``), else ``system``."""
    try:
        return named_in(Path(maps).read_text())
    except OSError:
        return "system"


def wanted(env: Mapping[str, str]) -> tuple[str, str] | None:
    """The allocator ``SPANTUNE_ALLOCATOR`` asks for and this machine has, with its library (None for ``system``, or
    ``auto`` where there is none); an unknown value, or an allocator named but missing, is an error saying what to
    do."""
    choice = env.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise SpantuneError(f"{ENV}={choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "system":
        return None
    for name in LIBRARIES if choice == "auto" else (choice,):
        found = next((lib for lib in map(ctypes.util.find_library, LIBRARIES[name]) if lib), None)
        if found:
            return name, found
    if choice == "auto":
        return None
    raise SpantuneError(f"{ENV}={choice}: no lib{LIBRARIES[choice][0]} on this machine (Debian/Ubuntu: apt-get "
                        f"install {PACKAGES[choice]}), or set {ENV}=system")


def preload_env(env: Mapping[str, str]) -> dict[str, str] | None:
    """``env`` with the wanted allocator added to ``LD_PRELOAD``, for a process started with it; None where nothing
    would change (``system``, no library found, or one already preloaded)."""
    choice = wanted(env)
    preloaded = env.get("LD_PRELOAD", "")
    if choice is None or named_in(preloaded) != "system":
        return None
    return {**env, "LD_PRELOAD": f"{choice[1]}:{preloaded}".rstrip(":"), _RELAUNCHED: preloaded}


def relaunch_with_allocator(argv: Sequence[str]) -> None:
    """Run ``python -m spantune ARGV`` in place of this process with the wanted allocator preloaded; returns off
    Linux, when this process already runs one, or when there is none to preload. In the process run again it puts
    ``LD_PRELOAD`` back as it was, for the processes it starts."""
    if _RELAUNCHED in os.environ:
        original = os.environ.pop(_RELAUNCHED)
        if original:
            os.environ["LD_PRELOAD"] = original
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    if not sys.platform.startswith("linux") or in_use() != "system":
        return
    env = preload_env(os.environ)
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "spantune", *argv], env)
