"""Child processes: tying a child's life to its parent's, and stopping it; the one way the gateway, the load test
and the tests start and end the servers they run."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, nice: int = 0, death_signal: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: send this child ``death_signal`` (SIGKILL by default) when ``parent`` dies (Linux
    ``PR_SET_PDEATHSIG``), and exit at once if it already has; lower its CPU priority by ``nice``. The kernel ties
    the death signal to the *thread* that forked: start the child from the main thread, not from a worker thread
    that may end first."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
        if nice:
            os.nice(nice)

    return preexec


def stop_process(process: subprocess.Popen[Any], grace_s: float = 10.0, *, group: bool = False) -> int:
    """SIGTERM, then SIGKILL if it has not exited after ``grace_s``; returns its exit code. ``group`` signals the
    child's whole process group (a child started with ``start_new_session``/``process_group=0`` and its own
    children). A process that has already exited is only reaped."""
    if process.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                if group:
                    os.killpg(process.pid, sig)
                else:
                    process.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
    return process.wait()
