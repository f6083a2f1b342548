"""HTTP options off by default, over real HTTP: CORS for the configured origins only, and gzip responses above a
size threshold for clients that accept them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.ports import serving

ORIGIN = "https://search.example.com"


def _settings(repository: Path, store_dir: Path, **extra: object) -> Settings:
    return Settings(model_repository=repository, store="local", store_dir=store_dir,  # type: ignore[call-arg]
                    grpc_port=None, teacher_local=False, **extra)


@pytest.mark.parametrize("configured", [False, True], ids=["default", "configured"])
def test_cors_and_gzip(tiny_model_repository: Path, tmp_path: Path, configured: bool) -> None:
    extra = {"cors_origins": [ORIGIN], "gzip_min_bytes": 500} if configured else {}
    body = {"query": "angle", "items": [{"id": str(i), "title": "Simpson Strong-Tie 12-Gauge Angle"}
                                        for i in range(20)]}
    with serving(create_app(_settings(tiny_model_repository, tmp_path / "index", **extra))) as port:
        url = f"http://127.0.0.1:{port}"
        preflight = httpx.options(f"{url}/v1/score", headers={
            "origin": ORIGIN, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-request-id"})
        scored = httpx.post(f"{url}/v1/score", json=body, headers={"origin": ORIGIN, "accept-encoding": "gzip"})
        small = httpx.get(f"{url}/livez", headers={"accept-encoding": "gzip"})
        plain = httpx.post(f"{url}/v1/score", json=body, headers={"accept-encoding": "identity"})
        other = httpx.post(f"{url}/v1/score", json=body, headers={"origin": "https://elsewhere.example"})
    assert scored.status_code == 200 and scored.json()["n_scored"] == 20  # httpx decompresses
    assert plain.headers.get("content-encoding") is None and small.headers.get("content-encoding") is None
    assert "access-control-allow-origin" not in other.headers
    if not configured:
        assert "access-control-allow-origin" not in scored.headers and preflight.status_code == 405
        assert scored.headers.get("content-encoding") is None
        return
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in preflight.headers["access-control-allow-headers"]
    assert scored.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in scored.headers["access-control-expose-headers"]
    assert scored.headers["content-encoding"] == "gzip"
    assert scored.json() == plain.json() | {"timings_ms": scored.json()["timings_ms"]}
