"""schemathesis against the gateway's OpenAPI schema, over real HTTP (uvicorn in a thread, the tiny exported
ColBERT, the local store): whatever a client sends, no 5xx — except the documented 503 of /v1/explain when no
teacher is configured, which must carry Retry-After — and every status answered is one the schema documents for
that operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from service.app import create_app
from service.settings import Settings
from tests.ports import serving


@pytest.fixture(scope="module")
def base_url(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                              store_dir=tmp_path_factory.mktemp("index"), grpc_port=None, max_items=20,
                              max_body_bytes=64 * 1024))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def _no_server_error(case: schemathesis.Case, base_url: str) -> None:
    response = case.call(base_url=base_url, timeout=30)
    documented = set(case.operation.definition.raw["responses"])
    assert str(response.status_code) in documented, (f"{case.operation.method} {case.operation.path}: "
                                                      f"{response.status_code} not in {sorted(documented)}")
    if case.operation.path == "/v1/explain" and response.status_code == 503:
        assert "retry-after" in {k.lower() for k in response.headers}, response.text
        return
    assert response.status_code < 500, (f"{case.operation.method} {case.operation.path}: "
                                        f"{response.status_code} {response.text[:300]}")


def test_no_server_errors(base_url: str) -> None:
    """Every operation of the schema, 25 generated cases each (valid and invalid bodies alike)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/score", "/v1/rerank", "/v1/items", "/readyz"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            _no_server_error(case, base_url)

        run()
