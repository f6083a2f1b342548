"""``relevance index`` into a real three-master Redis Cluster (``--redis redis+cluster://…``) and the gateway
serving from it (create_app + TestClient): every item scored from the store, equal to the scores served from a
single Redis server indexed alike; a master killed mid-way costs only its own items, which come back encoded
from their titles or as per-item errors (never a 500), and /readyz and the store error counter say so until the
master is back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from relevance.cli import app as cli
from relevance_core.data import Product, build_catalogue, load_pairs, write_catalogue
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import RedisClusterNodes, RedisServer
from tests.service.test_reliability import metric

NAMESPACE = "gw"
QUERY = "corner brace"


@pytest.fixture(scope="module")
def products(vendored_pairs: Path) -> list[Product]:
    catalogue = build_catalogue(load_pairs(vendored_pairs)[:800])[:60]
    assert len(catalogue) == 60
    return catalogue


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    """A cluster of this module's own: a test kills one of its masters."""
    nodes = RedisClusterNodes.start()
    yield nodes
    nodes.stop()


def _index(url: str, catalogue: Path, repository: Path) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["index", "--catalog", str(catalogue), "--model-repository", str(repository),
                                      "--redis", url, "--namespace", NAMESPACE, "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def _gateway(url: str, repository: Path) -> TestClient:
    return TestClient(create_app(Settings(model_repository=repository, store="redis",  # type: ignore[call-arg]
                                          redis_url=url, namespace=NAMESPACE, grpc_port=None, active_poll_s=0)))


def test_the_cluster_serves_what_a_single_server_serves_and_survives_a_master(
        tmp_path: Path, cluster: RedisClusterNodes, redis_server: RedisServer, products: list[Product],
        tiny_model_repository: Path) -> None:
    catalogue = tmp_path / "catalogue.tsv"
    write_catalogue(catalogue, products)
    summary = _index(cluster.url, catalogue, tiny_model_repository)
    assert summary["items"] == len(products) and summary["store"] == {
        "kind": "redis-cluster", "url": cluster.url, "namespace": NAMESPACE}
    assert _index(redis_server.url, catalogue, tiny_model_repository)["items"] == len(products)
    label = str(summary["model_version"])
    masters = {cluster.master_of(f"{NAMESPACE}:{label}:{p.product_uid}").port for p in products}
    assert masters == {node.port for node in cluster.nodes}

    by_id = {"query": QUERY, "items": [{"id": p.product_uid} for p in products]}
    with _gateway(redis_server.url, tiny_model_repository) as single:
        want = single.post("/v1/score", json=by_id).json()
    with _gateway(cluster.url, tiny_model_repository) as gateway:
        assert gateway.get("/readyz").status_code == 200
        body = gateway.post("/v1/score", json=by_id).json()
        assert body["model_version"] == label and body["n_scored"] == len(products) and body["n_errors"] == 0
        assert {s["source"] for s in body["scores"]} == {"store"}
        np.testing.assert_allclose([s["score"] for s in body["scores"]], [s["score"] for s in want["scores"]],
                                   atol=1e-6)

        # a master (neither the one the URL names nor the one holding the version's metadata) is killed
        metadata = cluster.master_of("{" + f"{NAMESPACE}:{label}" + "}#codec")
        victim = next(n for n in cluster.nodes if n is not metadata and n is not cluster.nodes[0])
        lost = {p.product_uid for p in products
                if cluster.master_of(f"{NAMESPACE}:{label}:{p.product_uid}") is victim}
        victim.kill()
        titled = {p.product_uid for p in products[::2]}  # half the items come with their title
        items = [{"id": p.product_uid, **({"title": p.product_title} if p.product_uid in titled else {})}
                 for p in products]
        response = gateway.post("/v1/score", json={"query": QUERY, "items": items})
        assert response.status_code == 200, response.text
        for got, wanted in zip(response.json()["scores"], want["scores"], strict=True):
            if got["id"] not in lost:
                assert got["source"] == "store" and got["score"] == pytest.approx(wanted["score"], abs=1e-6)
            elif got["id"] in titled:
                assert got["source"] == "title" and "score" in got
            else:
                assert "score" not in got and got["error"].startswith("store unavailable: ")
                assert f"127.0.0.1:{victim.port}" in got["error"]
        ready = gateway.get("/readyz")
        store = ready.json()["dependencies"]["store"]
        assert ready.status_code == 503 and store["status"] == "unavailable"
        assert f"127.0.0.1:{victim.port}" in store["detail"]
        metrics = gateway.get("/metrics").text
        assert metric(metrics, "relevance_store_errors_total", operation="get") >= 1
        assert metric(metrics, "relevance_item_errors_total", reason="store_unavailable") == len(lost - titled)

        victim.restart_empty()  # no persistence: back without its items, which are now unknown
        cluster.wait_ok()
        assert gateway.get("/readyz").status_code == 200
        body = gateway.post("/v1/score", json=by_id).json()
        assert {s["id"] for s in body["scores"] if s.get("source") == "store"} == {p.product_uid for p in products
                                                                                 } - lost
        assert all(s["error"].startswith("unknown item") for s in body["scores"] if s["id"] in lost)
        # the version's id set (on the metadata master) outlived them: indexing again writes exactly those
        again = _index(cluster.url, catalogue, tiny_model_repository)
        assert (again["items"], again["skipped"]) == (len(lost), len(products) - len(lost))
        body = gateway.post("/v1/score", json=by_id).json()
        assert body["n_errors"] == 0 and {s["source"] for s in body["scores"]} == {"store"}


def test_index_names_the_url_and_the_mode_to_use(tmp_path: Path, cluster: RedisClusterNodes,
                                                 redis_server: RedisServer, products: list[Product],
                                                 tiny_model_repository: Path) -> None:
    catalogue = tmp_path / "catalogue.tsv"
    write_catalogue(catalogue, products[:20])
    single_as_cluster = redis_server.url.replace("redis://", "redis+cluster://")
    cluster_as_single = cluster.url.replace("redis+cluster://", "redis://")
    for url, advice in ((single_as_cluster, "use a redis:// URL"), (cluster_as_single, "use a redis+cluster:// URL")):
        result = CliRunner().invoke(cli, ["index", "--catalog", str(catalogue), "--model-repository",
                                          str(tiny_model_repository), "--redis", url, "--namespace", "mode"])
        assert result.exit_code == 2, result.output
        assert url in result.output and advice in result.output and "Traceback" not in result.output
