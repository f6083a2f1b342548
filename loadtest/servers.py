"""The servers the side-by-side comparison measures, each a subprocess on a free port: how to start one
(:class:`ServerSpec`), and :func:`running`, which starts it, waits for readiness and stops it."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from relevance_core.net import free_port
from relevance_core.paths import REPO_ROOT
from relevance_core.processes import stop_process


@dataclass
class ServerSpec:
    """How to start one server: ``argv`` with ``{port}`` filled in, extra environment, the readiness route."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    startup_timeout_s: float = 300.0


@contextlib.contextmanager
def running(spec: ServerSpec, logs: Path, console: Console) -> Iterator[str]:
    """Start the server on a free port, wait until ``ready_path`` answers 200, yield its base URL, stop it
    (SIGTERM, then SIGKILL after 15 s). Its output goes to ``logs/<name>.log``."""
    import httpx

    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in spec.argv]
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "RELEVANCE_REDIS_URL", "RELEVANCE_TEACHER_URL")}
    env.update(spec.env)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.name}.log"
    url = f"http://127.0.0.1:{port}"
    console.print(f"[bold]{spec.name}[/bold]: {shlex.join(argv)}", highlight=False)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + spec.startup_timeout_s
            started = time.monotonic()
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited with code {process.returncode}; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + spec.ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{spec.name} not ready within {spec.startup_timeout_s:.0f} s; see {log_path}")
                time.sleep(0.5)
            console.print(f"  ready on {url} after {time.monotonic() - started:.1f} s", highlight=False)
            yield url
        finally:
            stop_process(process, 15)
