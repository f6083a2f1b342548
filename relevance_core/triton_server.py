"""A local Triton Inference Server as a child process: the ``tritonserver`` binary that the ``nvidia-pytriton``
wheel ships (with ``libtritonserver`` and its bundled libraries, and the Python backend with a stub per Python
version), serving a CPU repository (``relevance export triton-python``) on free local ports.

- **Found in the installed wheel.** ``pytriton/tritonserver/bin/tritonserver``; its libraries in
  ``nvidia_pytriton.libs`` beside the package, on ``LD_LIBRARY_PATH`` as pytriton itself sets it. The Python
  backend runs each model in a stub process that embeds libpython: the backend directory is a scratch copy of the
  wheel's (links) with the stub built for this interpreter's version, this interpreter's ``libpython`` first on
  the library path and its ``bin`` first on ``PATH``, so the stub imports numpy and onnxruntime from this
  environment.
- **It never outlives its parent.** Started like the local teacher (:mod:`relevance_core.teacher.process`), in
  its own process group with its stubs, but the kernel sends it SIGTERM, not SIGKILL, when the parent dies
  (``PR_SET_PDEATHSIG``, SIGKILL of the parent included): Triton's graceful shutdown (bounded by
  ``--exit-timeout-secs``) is what ends the stubs, and a stub that has served requests hangs instead of exiting
  when its server is killed. `stop` sends SIGTERM to the group, then SIGKILL after a grace period. Start it from
  the main thread.
- **No shared memory left behind.** The Python backend talks to its stubs through ``/dev/shm`` regions, which a
  killed server leaves there; this server's carry its own prefix, and `stop` removes those that remain.
- **Ready means ``/v2/health/ready``.** Triton answers 200 once every model of the repository is loaded
  (``--strict-readiness``); `wait_ready` polls it, and says so when the server exits first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from relevance_core.net import free_port
from relevance_core.processes import die_with_parent, stop_process

WHEEL = "nvidia-pytriton==0.7.0"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"
SHM = Path("/dev/shm")


class TritonServerError(RuntimeError):
    """tritonserver is not installed, or it exited or was not ready in time; the message says which."""


@dataclass(frozen=True)
class TritonInstallation:
    """The server binary, its libraries and the Python backend of the installed ``nvidia-pytriton`` wheel."""

    binary: Path
    libraries: Path
    python_backend: Path
    stub: Path

    @classmethod
    def find(cls) -> TritonInstallation:
        """The installed wheel's files; `TritonServerError` with one line saying what to install otherwise."""
        spec = importlib.util.find_spec("pytriton")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise TritonServerError(f"tritonserver not found: install the {WHEEL} wheel "
                                    f"(`pip install --no-deps {WHEEL}`; `make venv` does)")
        root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        installation = cls(binary=root / "bin" / "tritonserver", libraries=root.parent.parent / "nvidia_pytriton.libs",
                           python_backend=root / "backends" / "python",
                           stub=root / "python_backend_stubs" / version / STUB)
        missing = [str(p) for p in (installation.binary, installation.libraries, installation.stub,
                                    *(installation.python_backend / f for f in PYTHON_BACKEND_FILES)) if not p.exists()]
        if missing:
            raise TritonServerError(f"the {WHEEL} installation is incomplete (Python {version}): missing "
                                    + ", ".join(missing))
        return installation

    def backend_directory(self, directory: Path) -> Path:
        """``directory/python/``: links to the wheel's Python backend and to this interpreter's stub."""
        python = directory / "python"
        python.mkdir(parents=True, exist_ok=True)
        for name in PYTHON_BACKEND_FILES:
            (python / name).symlink_to(self.python_backend / name)
        (python / STUB).symlink_to(self.stub)
        return directory

    def environment(self) -> dict[str, str]:
        """This environment plus the server's libraries, this interpreter's libpython and ``bin``."""
        env = dict(os.environ)
        libpython = sysconfig.get_config_var("LIBDIR")
        paths = [p for p in (libpython, str(self.libraries), env.get("LD_LIBRARY_PATH")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


class TritonProcess:
    """tritonserver serving ``repository`` on 127.0.0.1 (HTTP and gRPC on free ports unless given); see the module
    docstring. Output goes to ``log`` (a file) or is inherited."""

    def __init__(self, repository: Path, *, http_port: int | None = None, grpc_port: int | None = None,
                 log: IO[Any] | None = None, installation: TritonInstallation | None = None) -> None:
        installation = installation or TritonInstallation.find()
        if not repository.is_dir():
            raise TritonServerError(f"{repository}: no such model repository")
        self.repository = repository
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port((self.http_port,))
        self._scratch = tempfile.TemporaryDirectory(prefix="relevance-triton-")
        self.shm_prefix = f"relevance-triton-{uuid.uuid4().hex[:12]}-"
        backends = installation.backend_directory(Path(self._scratch.name) / "backends")
        command = [str(installation.binary), "--model-repository", str(repository.resolve()),
                   "--backend-directory", str(backends), "--strict-readiness", "true",
                   "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
                   "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
                   "--allow-metrics", "false", "--exit-timeout-secs", "5",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}"]
        self.process = subprocess.Popen(command, env=installation.environment(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT if log is not None else None,
                                        preexec_fn=die_with_parent(os.getpid(), death_signal=signal.SIGTERM),
                                        start_new_session=True)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 now."""
        try:
            return httpx.get(f"http://{self.http_url}/v2/health/ready", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server is ready; `TritonServerError` if it exits first or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            code = self.process.poll()
            if code is not None:
                raise TritonServerError(f"tritonserver ({self.repository}) exited with code {code} before it was "
                                        "ready; see its log")
            if time.monotonic() > deadline:
                raise TritonServerError(f"tritonserver ({self.repository}) was not ready on {self.http_url} within "
                                        f"{timeout_s:.0f} s; see its log")
            time.sleep(0.2)

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM to the server's process group (its stubs included), SIGKILL after ``grace_s``, then SIGKILL to
        whatever of the group is left (a stub of a server that was killed); removes its shared-memory regions.
        Returns the server's exit code."""
        try:
            code = stop_process(self.process, grace_s, group=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return code
        finally:
            self._scratch.cleanup()
            for region in self.shm_regions():
                region.unlink(missing_ok=True)

    def shm_regions(self) -> list[Path]:
        """This server's shared-memory regions present now."""
        return sorted(SHM.glob(f"{self.shm_prefix}*"))
