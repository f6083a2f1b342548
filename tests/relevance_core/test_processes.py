"""`stop_process`: SIGTERM first, SIGKILL after the grace period, the whole group when asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from relevance_core.processes import stop_process

SLEEPS = "import time; print('up', flush=True); time.sleep(60)"
IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); " \
                  "time.sleep(60)"


def _started(code: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "up"
    return process


def test_a_child_that_obeys_sigterm_exits_with_it() -> None:
    with _started(SLEEPS) as process:
        assert stop_process(process, grace_s=5) == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    with _started(IGNORES_SIGTERM) as process:
        started = time.monotonic()
        assert stop_process(process, grace_s=0.5) == -signal.SIGKILL
        assert 0.4 < time.monotonic() - started < 5


def test_group_stops_the_grandchildren_too() -> None:
    """A grandchild gets the group's SIGTERM although its parent, signalled alone, would leave it running."""
    code = ("import subprocess, sys, time; "
            f"child = subprocess.Popen([sys.executable, '-c', {SLEEPS!r}], stdout=subprocess.PIPE, text=True); "
            "child.stdout.readline(); print('up', child.pid, flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        assert process.stdout is not None
        grandchild = int(process.stdout.readline().split()[1])
        stop_process(process, grace_s=0.5, group=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the grandchild outlived its group's stop")


def test_an_exited_child_is_only_reaped() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    assert stop_process(process) == 3
