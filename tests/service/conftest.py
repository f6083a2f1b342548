"""Fixtures of the service tests: real redis-server processes (no fakes), on free ports, without persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from relevance_core.processes import stop_process
from tests.ports import free_port

REDIS_BINARY = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

@dataclass
class RedisServer:
    """A redis-server child process: ``url`` while it runs, :meth:`stop` to end it."""

    process: subprocess.Popen[bytes]
    port: int
    args: Sequence[str] = ()
    cwd: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, timeout_s: float = 10.0, port: int | None = None, args: Sequence[str] = (),
              cwd: Path | None = None) -> RedisServer:
        """A server on ``port`` (default a free one) with ``args`` added to its command line, run in ``cwd``."""
        if REDIS_BINARY is None:
            pytest.skip("redis-server is not installed (e.g. apt-get install redis-server); the Redis store tests "
                        "run against a real server")
        port = port or free_port()
        process = subprocess.Popen([REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   cwd=cwd)
        server = cls(process, port, args, cwd)
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

    def kill(self) -> None:
        """SIGKILL, as a crashed node goes."""
        self.process.kill()
        self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def restart_empty(self) -> None:
        """Kill the server (SIGKILL) and start a new, empty one on the same port, with the same arguments and
        directory (no persistence; a cluster node keeps its identity and slots from its cluster config file)."""
        if self.process.poll() is None:
            self.kill()
        self.process = RedisServer.start(port=self.port, args=self.args, cwd=self.cwd).process

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


def cluster_node_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass
class RedisClusterNodes:
    """redis-server masters joined by ``redis-cli --cluster create`` (three, no replicas by default), in a
    temporary directory for their cluster config files. ``url`` is a cluster-mode URL naming the first node."""

    nodes: list[RedisServer]
    directory: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    @classmethod
    def start(cls, masters: int = 3, replicas: int = 0, timeout_s: float = 20.0) -> RedisClusterNodes:
        """``masters`` masters and ``replicas`` replicas of each (``nodes``: as redis-cli paired them)."""
        if REDIS_CLI is None:
            pytest.skip("redis-cli is not installed (apt-get install redis-tools); the cluster tests create a real "
                        "Redis Cluster with it")
        directory = tempfile.TemporaryDirectory(prefix="redis-cluster-")
        nodes: list[RedisServer] = []
        cluster = cls(nodes, directory)
        try:
            for _ in range(masters * (1 + replicas)):
                port = cluster_node_port()
                # surviving masters keep serving their slots while one is down (as docs/gateway.md advises)
                args = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                        "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"]
                nodes.append(RedisServer.start(port=port, args=args, cwd=Path(directory.name)))
            subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                            "--cluster-replicas", str(replicas), "--cluster-yes"], check=True, capture_output=True,
                           timeout=timeout_s)
            cluster.wait_ok(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def master_of(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot now."""
        slot = key_slot(key.encode())
        client = redis.Redis(port=self.nodes[0].port)
        try:
            for begin, end, (_, port, *_rest), *_replicas in client.cluster("slots"):
                if begin <= slot <= end:
                    return next(node for node in self.nodes if node.port == port)
        finally:
            client.close()
        raise AssertionError(f"no master serves slot {slot}")

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Until every running node says cluster_state:ok and knows every other node."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_connect_timeout=0.5)
            try:
                while True:
                    info = client.cluster("info")
                    known = int(info["cluster_known_nodes"]) if "cluster_known_nodes" in info else 0
                    if info.get("cluster_state") == "ok" and known == len(self.nodes):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis cluster node {node.port} is not ok after {timeout_s} s: {info}")
                    time.sleep(0.1)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.stop()
        self.directory.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """One three-master Redis Cluster for the session; tests keep apart by namespace."""
    cluster = RedisClusterNodes.start()
    yield cluster
    cluster.stop()
