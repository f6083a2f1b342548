"""Fixtures of the operations tests: the real gateway over HTTP (uvicorn in a thread, the tiny exported ColBERT,
ONNX Runtime in-process, an empty local store), as tests/service/api/test_openapi_fuzz.py runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.app import create_app
from service.settings import Settings
from tests.ports import serving


@pytest.fixture(scope="session")
def gateway_port(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a running gateway on 127.0.0.1 (gRPC off: its metrics are registered all the same)."""
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path_factory.mktemp("index"), grpc_port=None))
    with serving(app) as port:
        yield port
