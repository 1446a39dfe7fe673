"""A stop request (SIGTERM or Ctrl-C) is never lost: not in a finaliser, not in code that swallows it."""

import subprocess
import sys
import textwrap

_FINALISED = """
class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler runs here, inside __del__, where Python drops its exception
del_me = Finalised()
del del_me
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    pass
"""

_SWALLOWED = """
try:
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))
except BaseException:
    pass  # a library that catches too much
interrupts.check()
"""

_HELD = """
with interrupts.deferred("the native call"):
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))  # the handler has run here: without the hold, the interrupt would be raised now
    print("held", flush=True)
"""


def _outcome(body: str) -> str:
    """What a process with spantune's handlers prints when ``body`` runs: "interrupted" or "lost"."""
    script = ("import os, signal, time\nfrom spantune import interrupts\ninterrupts.install()\ntry:\n"
              + textwrap.indent(body, "    ") + '    print("lost")\nexcept KeyboardInterrupt:\n    print("interrupted")\n')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or proc.stderr


def test_sigterm_inside_a_finaliser_still_interrupts() -> None:
    """CI once saw SIGTERM land in a regex finaliser; Python dropped the interrupt and the export ran to the end."""
    assert _outcome(_FINALISED) == "interrupted"


def test_a_swallowed_interrupt_is_raised_again_at_the_next_check() -> None:
    assert _outcome(_SWALLOWED) == "interrupted"


def test_a_held_interrupt_waits_for_the_native_call_then_stops() -> None:
    """CI once saw SIGTERM unwind through torch's ONNX tracer: the process died of SIGSEGV, not exit 130."""
    assert _outcome(_HELD) == "held\ninterrupted"


def test_no_check_raises_without_a_signal() -> None:
    from spantune import interrupts

    interrupts.check()
