"""Child processes that a test interrupts: a generous wait, and a stack dump if it runs out.

A Ctrl-C test waits for the state it checks before it sends SIGINT, then for the
outcome. On a busy machine that outcome can take long, so the ceiling is wide; if
it still runs out, the child is aborted with Python's fault handler on, and its
threads' stacks go into the failure message instead of a bare timeout.

A shell starts a command it runs in the background (``scripts/test.sh &``) with
SIGINT ignored, and children inherit that; Python then never turns SIGINT into
``KeyboardInterrupt``, and a Ctrl-C test would see its child run to the end. So
the child gets SIGINT's default action back before it starts (:func:`interruptible`).
"""

from __future__ import annotations

import os
import signal
import subprocess

CEILING_S = 300.0


def child_env() -> dict[str, str]:
    """This environment with the fault handler on (stacks on SIGABRT)."""
    return {**os.environ, "PYTHONFAULTHANDLER": "1"}


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT acts again."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(process: subprocess.Popen[str], timeout: float = CEILING_S) -> tuple[str, str]:
    """(stdout, stderr) once ``process`` exits; fails with its stacks if it does not."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        stdout, stderr = process.communicate(timeout=60)
        raise AssertionError(
            f"still running {timeout:.0f} s after the signal; its stacks:\n{stderr}"
        ) from None
