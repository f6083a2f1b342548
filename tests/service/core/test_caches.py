"""The embedding caches are bounded in bytes, not entries: title traffic cannot grow the gateway past its
setting, the bound and the hit rate are in the metrics, and an entry too large for the bound is simply not kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.engine import ENTRY_OVERHEAD_BYTES, ByteBoundedLRU, entry_bytes
from service.settings import Settings
from service.store import ItemTokens
from tests.ports import free_port


def _item(tokens: int) -> ItemTokens:
    return ItemTokens(np.zeros((tokens, 128), np.float32), np.ones(tokens, bool), np.zeros(tokens, np.int32))


def test_the_bound_is_bytes_and_the_least_recent_go_first() -> None:
    one = entry_bytes(_item(10))
    assert one == ENTRY_OVERHEAD_BYTES + 10 * 128 * 4 + 10 + 10 * 4
    cache: ByteBoundedLRU[ItemTokens] = ByteBoundedLRU(3 * one)
    for key in "abc":
        cache[key] = _item(10)
    assert cache.get("a") is not None  # a is now the most recent
    cache["d"] = _item(10)
    assert set(cache) == {"a", "c", "d"} and cache.currsize == 3 * one
    cache["big"] = _item(1000)  # larger than the whole bound: not kept, nothing evicted for it
    assert "big" not in cache and set(cache) == {"a", "c", "d"}


def test_title_traffic_stays_within_the_setting(tiny_model_repository: Path, tmp_path: Path) -> None:
    settings = Settings(model_repository=tiny_model_repository, store="local", store_dir=tmp_path,
                        grpc_port=free_port(), title_cache_mib=0.25, query_cache_mib=0.05, teacher_local=False)
    with TestClient(create_app(settings)) as client:
        for batch in range(12):  # 240 distinct titles of ~20 tokens (~11 kB each): ten times the bound
            items = [{"id": f"t{batch}-{k}", "title": f"Everbilt Zinc-Plated Corner Brace model {batch}-{k} in "
                                                      f"brushed nickel finish {k * 7919 % 1000}"} for k in range(20)]
            assert client.post("/v1/score", json={"query": f"corner brace {batch}", "items": items}).status_code == 200
        again = client.post("/v1/score", json={"query": "corner brace 11", "items": items})
        assert again.status_code == 200
        metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in client.get("/metrics").text.splitlines()
                   if line.startswith("relevance_") and " " in line}
    assert 0 < metrics['relevance_cache_size_bytes{cache="title"}'] <= 0.25 * 2**20
    assert 0 < metrics['relevance_cache_size_bytes{cache="query"}'] <= 0.05 * 2**20
    assert metrics['relevance_title_cache_requests_total{result="hit"}'] == 20  # the last batch, asked again
    assert metrics['relevance_title_cache_requests_total{result="miss"}'] == 240
