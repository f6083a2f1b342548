"""The version the gateway serves follows the store's active pointer (real uvicorn, the real local store, a
repository holding versions 1 and 2 of the tiny ColBERT): never a version without an index, and a hot switch
without a failed request when the pointer moves."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.core.runtime import ColBERTModel, load_runtime_model
from service.settings import Settings
from service.store.codec import TokenCodec
from service.store.local import LocalItemStore
from tests.ports import serving

ITEMS = {"100001": "Simpson Strong-Tie 12-Gauge Angle", "100002": "Everbilt 2 in. Zinc-Plated Corner Brace"}
BODY = {"query": "angle bracket", "items": [{"id": i} for i in ITEMS]}


@pytest.fixture
def two_versions(tiny_model_repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repository"
    shutil.copytree(tiny_model_repository, root)
    shutil.copytree(root / "colbert" / "1", root / "colbert" / "2")
    return root


def index(repository: Path, store_dir: Path, version: int) -> None:
    """What `relevance index` leaves: the items of ``version`` flushed into a generation, then activated."""
    model = load_runtime_model(repository, version=version)
    assert isinstance(model, ColBERTModel)
    store = LocalItemStore(store_dir, model.version.label, TokenCodec.float32(model.meta.dim))
    store.put_many(dict(zip(ITEMS, model.item_tokens(list(ITEMS.values())), strict=True)))
    store.flush()
    store.activate()
    store.close()


def settings(repository: Path, store_dir: Path, **extra: object) -> Settings:
    return Settings(model_repository=repository, store="local", store_dir=store_dir,  # type: ignore[call-arg]
                    grpc_port=None, encode_missing=False, **extra)


def test_serves_the_active_version_not_the_highest(two_versions: Path, tmp_path: Path) -> None:
    index(two_versions, tmp_path / "index", 1)
    with serving(create_app(settings(two_versions, tmp_path / "index"))) as port:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        scored = httpx.post(f"http://127.0.0.1:{port}/v1/score", json=BODY).json()
    assert ready.status_code == 200 and ready.json()["model_version"] == "colbert:1"
    assert scored["model_version"] == "colbert:1" and scored["n_scored"] == 2


def test_a_version_without_an_index_is_not_ready(two_versions: Path, tmp_path: Path) -> None:
    index(two_versions, tmp_path / "index", 1)
    with serving(create_app(settings(two_versions, tmp_path / "index", model_version=2))) as port:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert ready.status_code == 503 and "no index for colbert:2" in ready.json()["status"]
    assert "relevance_ready 0.0" in text


def test_switches_when_the_pointer_moves_without_failing_a_request(two_versions: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "index"
    index(two_versions, store_dir, 1)
    answers: list[tuple[int, str | None, int]] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                response = client.post(f"{url}/v1/score", json=BODY)
                body = response.json() if response.status_code == 200 else {}
                answers.append((response.status_code, body.get("model_version"), body.get("n_scored", 0)))

    with serving(create_app(settings(two_versions, store_dir, active_poll_s=0.2))) as port:
        url = f"http://127.0.0.1:{port}"
        sender = threading.Thread(target=load, args=(url,))
        sender.start()
        try:
            time.sleep(0.5)
            index(two_versions, store_dir, 2)
            deadline = time.monotonic() + 20
            while not answers or answers[-1][1] != "colbert:2":
                assert time.monotonic() < deadline, "the gateway did not switch to colbert:2"
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            stop.set()
            sender.join()
        ready = httpx.get(f"{url}/readyz").json()
        text = httpx.get(f"{url}/metrics").text
    versions = [version for _, version, _ in answers]
    assert {status for status, _, _ in answers} == {200}
    assert all(n == 2 for _, _, n in answers)  # model and index agree before and after the switch
    switch = versions.index("colbert:2")
    assert set(versions[:switch]) == {"colbert:1"} and set(versions[switch:]) == {"colbert:2"}
    assert ready["model_version"] == ready["active_version"] == "colbert:2"
    assert 'relevance_version_switches_total{outcome="ok"} 1.0' in text
    assert 'version="2"' in text  # relevance_model_info follows
