"""SIGTERM and Ctrl-C as one clean stop: temp folders removed, checkpoints saved, exit 130, never lost.

A signal raises ``KeyboardInterrupt`` wherever Python happens to be. Two places can lose it: a finaliser
(``__del__``: Python prints and drops the exception) and library code that swallows exceptions it should not.
So the handler also records the request, finalisers get it re-sent, and long jobs call :func:`check` at their
step boundaries, which raises it again if it was lost on the way.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading

_requested = threading.Event()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a job scheduler, a CI timeout) takes the Ctrl-C path."""
    _requested.set()
    raise KeyboardInterrupt


def check() -> None:
    """Raise the interrupt at a safe point if a signal arrived and something swallowed it."""
    if _requested.is_set():
        raise KeyboardInterrupt


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
