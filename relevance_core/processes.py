"""Stopping a child process: the one way the gateway, the load test and the tests end the servers they start."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


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
