"""Readiness per dependency (store, encoder backend, teacher when configured) and the settings that are valid
field by field but not together."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from relevance_core.paths import REPO_ROOT
from service.app import create_app
from service.backends.onnxruntime import OnnxRuntimeBackend
from service.health import Health
from service.settings import Settings
from tests.ports import free_port, serving


def _settings(repo: Path, tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {"model_repository": repo, "store": "local", "store_dir": tmp_path / "index",
                                 "grpc_port": None, "teacher_local": False, **extra}
    return Settings(**values)  # type: ignore[arg-type]


def test_readyz_reports_each_dependency(tiny_model_repository: Path, tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tiny_model_repository, tmp_path))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready" and body["store_ok"] is True
        assert set(body["dependencies"]) == {"store", "encoder"}  # no teacher configured: not listed
        assert body["dependencies"]["store"]["status"] == "ok"
        assert "local index" in body["dependencies"]["store"]["detail"]
        assert body["dependencies"]["encoder"] == {"status": "ok",
                                                   "detail": "ONNX Runtime in process (CPUExecutionProvider)"}
        engine = client.app.state.engine  # type: ignore[attr-defined]
        engine.store.close()  # the store stops answering: not ready, and the body says which dependency
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["status"] == "store unavailable"
        assert down.json()["dependencies"]["store"]["status"] == "unavailable"
        assert down.json()["dependencies"]["encoder"]["status"] == "ok"


def test_readyz_lists_the_teacher_without_depending_on_it(tiny_model_repository: Path, tmp_path: Path) -> None:
    teacher_app = FastAPI()

    @teacher_app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": "ellm-rele"}]}

    with serving(teacher_app) as port:
        settings = _settings(tiny_model_repository, tmp_path, teacher_url=f"http://127.0.0.1:{port}/v1")
        with TestClient(create_app(settings)) as client:
            teacher = client.get("/readyz").json()["dependencies"]["teacher"]
            assert teacher["status"] == "ok" and "/v1/models answers" in teacher["detail"]
    refused = _settings(tiny_model_repository, tmp_path, teacher_url=f"http://127.0.0.1:{free_port()}/v1")
    with TestClient(create_app(refused)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200  # scoring does not need the teacher
        assert ready.json()["dependencies"]["teacher"]["status"] == "unavailable"


def test_backend_health_and_close(tiny_model_repository: Path) -> None:
    backend = OnnxRuntimeBackend(tiny_model_repository / "colbert" / "1" / "model.onnx")
    assert backend.health() == Health(True, "ONNX Runtime in process (CPUExecutionProvider)")
    backend.close()


@pytest.fixture()
def no_redis_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "RELEVANCE_REDIS_URL", "RELEVANCE_STORE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_redis_env")
def test_settings_cross_field_validation() -> None:
    with pytest.raises(ValidationError, match="redis_url: store=redis needs a Redis URL"):
        Settings(store="redis")  # type: ignore[call-arg]
    assert Settings(store="redis", redis_url="redis://127.0.0.1:6379/0").store_kind == "redis"  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="grpc_port: 8000 is also the HTTP port"):
        Settings(port=8000, grpc_port=8000)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="metrics_port: 50051 is also the HTTP or gRPC port"):
        Settings(metrics_port=50051)  # type: ignore[call-arg]
    assert Settings(grpc_port=0, metrics_port=0).grpc_port == 0  # type: ignore[call-arg]  # 0 = any free port


@pytest.mark.usefixtures("no_redis_env")
def test_serve_refuses_inconsistent_settings_at_load() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RELEVANCE_REDIS_URL")}
    done = subprocess.run([sys.executable, "-m", "relevance.cli", "serve"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env=env | {"RELEVANCE_STORE": "redis", "PYTHONPATH": str(REPO_ROOT)},
                          check=False)
    assert done.returncode == 2
    assert "redis_url: store=redis needs a Redis URL" in done.stderr
    assert "Traceback" not in done.stderr
