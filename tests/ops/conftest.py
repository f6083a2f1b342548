"""Fixtures of the operations tests: the real gateway over HTTP (uvicorn in a thread, the tiny exported ColBERT,
ONNX Runtime in-process, an empty local store), as tests/service/test_openapi_fuzz.py runs it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.ports import free_port


@pytest.fixture(scope="session")
def gateway_port(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a running gateway on 127.0.0.1 (gRPC off: its metrics are registered all the same)."""
    port = free_port()
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path_factory.mktemp("index"), grpc_port=None))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)
