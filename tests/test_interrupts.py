"""A stop request survives code that swallows the KeyboardInterrupt it raised."""

import subprocess
import sys

_SWALLOWED = """
import os, signal
from spantune import interrupts
interrupts.install()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))
except BaseException:
    pass  # a library that catches too much
try:
    interrupts.check()
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_swallowed_interrupt_is_raised_again_at_the_next_check() -> None:
    proc = subprocess.run([sys.executable, "-c", _SWALLOWED], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "interrupted", proc.stdout + proc.stderr


def test_no_check_raises_without_a_signal() -> None:
    from spantune import interrupts

    interrupts.check()
