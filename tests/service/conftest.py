"""Fixtures of the service tests: real redis-server processes (no fakes), on free ports, without persistence."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from relevance_core.processes import stop_process
from tests.ports import free_port

REDIS_BINARY = shutil.which("redis-server")

@dataclass
class RedisServer:
    """A redis-server child process: ``url`` while it runs, :meth:`stop` to end it."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, timeout_s: float = 10.0, port: int | None = None) -> RedisServer:
        if REDIS_BINARY is None:
            pytest.skip("redis-server is not installed (e.g. apt-get install redis-server); the Redis store tests "
                        "run against a real server")
        port = port or free_port()
        process = subprocess.Popen([REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = cls(process, port)
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return server
                except redis.ConnectionError:
                    if process.poll() is not None:
                        err = process.stderr.read().decode() if process.stderr else ""
                        raise RuntimeError(f"redis-server exited with {process.returncode}: {err}") from None
                    if time.monotonic() > deadline:
                        server.stop()
                        raise RuntimeError(f"redis-server on port {port} did not answer PING in {timeout_s} s") \
                            from None
                    time.sleep(0.05)
        finally:
            client.close()

    def restart_empty(self) -> None:
        """Kill the server (SIGKILL) and start a new, empty one on the same port (no persistence)."""
        self.process.kill()
        self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = RedisServer.start(port=self.port).process

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by namespace."""
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def start_redis() -> Iterator[Callable[[], RedisServer]]:
    """Start dedicated redis-servers (e.g. to stop one mid-test); all are stopped at the end of the test."""
    started: list[RedisServer] = []

    def _start() -> RedisServer:
        server = RedisServer.start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()
