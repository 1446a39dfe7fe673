"""SIGTERM and Ctrl-C as one clean stop: temp folders removed, checkpoints saved, exit 130, never lost.

A signal raises ``KeyboardInterrupt`` wherever Python happens to be. Two places can lose it: a finaliser
(``__del__``: Python prints and drops the exception) and library code that swallows exceptions it should not.
So the handler also records the request, finalisers get it re-sent, and long jobs call :func:`check` at their
step boundaries, which raises it again if it was lost on the way. A third place must not get it at all: native
code that calls back into Python (torch's ONNX tracer) can crash the process (SIGSEGV) when an exception unwinds
through it, so :func:`deferred` holds the signal until such a call returns.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_holding: str | None = None  #: what :func:`deferred` is waiting for, while it waits


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a job scheduler, a CI timeout) takes the Ctrl-C path."""
    _requested.set()
    if _holding is not None:
        print(f"spantune: stopping once {_holding} returns (it cannot be interrupted safely)",
              file=sys.stderr, flush=True)
        return
    raise KeyboardInterrupt


def check() -> None:
    """Raise the interrupt at a safe point if a signal arrived and something swallowed it."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextmanager
def deferred(what: str) -> Iterator[None]:
    """Hold SIGTERM and Ctrl-C while ``what`` runs, then stop if one arrived: for native calls that crash when an
    exception unwinds through them."""
    global _holding
    _holding = what
    try:
        yield
    finally:
        _holding = None
    check()


def _resend_swallowed_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    """Send an interrupt that a finaliser dropped again, so it reaches ``main`` at the next safe point.

    It is sent a moment later from a timer thread because a re-raise from this one (``os.kill``,
    ``interrupt_main``) runs the handler at once, inside this hook, where Python drops it the same way."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        resend = threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGTERM,))
        resend.daemon = True
        resend.start()
        return
    sys.__unraisablehook__(unraisable)


def install() -> None:
    """Make SIGTERM behave like Ctrl-C, and never lose either to a finaliser."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = _resend_swallowed_interrupt


def ignore_further() -> None:
    """Once the interrupt has reached ``main``, a late copy (the resend above, a second Ctrl-C) must not escape
    past it: Python would then exit by SIGINT instead of 130."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
