"""Prometheus itself (the Debian package `prometheus`: `prometheus` and `promtool`) against the project's rules and
a live gateway: `promtool check rules` and `promtool test rules` on helm/relevance/alerts, and a real Prometheus
scraping a running gateway's metrics port under mixed traffic, where every relevance_* query of the Grafana
dashboard and every alert rule's expression (its threshold taken off) must return data, and every rule must
evaluate without error."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from service.app import create_app
from service.grpc import relevance_pb2 as pb
from service.grpc import relevance_pb2_grpc as pb_grpc
from service.settings import Settings
from tests.ops.test_dashboard import queries
from tests.ports import free_port, serving

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "helm" / "relevance" / "alerts"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(PROMTOOL is None or PROMETHEUS is None,
                                      reason="Prometheus is not installed (apt-get install prometheus; .ci/run does)")
THRESHOLD = re.compile(r"\s*(>|<|>=|<=|==|!=)\s*[0-9.e+-]+\s*$")
TITLES = ["Simpson Strong-Tie 12-Gauge Angle", "Everbilt 2 in. Zinc-Plated Corner Brace",
          "BEHR Premium Textured DeckOver 1-gal.", "Delta Vero 1-Handle Shower Only Faucet Trim Kit"]


def rule_files() -> list[Path]:
    return sorted(ALERTS.glob("*.rules.yaml"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


@needs_prometheus
def test_promtool_checks_the_rule_files() -> None:
    assert rule_files(), "no alerts/*.rules.yaml"
    result = subprocess.run([PROMTOOL, "check", "rules", *map(str, rule_files())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {r["alert"] for r in alert_rules()} >= {"RelevanceScoreLatencyHigh", "RelevanceErrorRateHigh",
                                                  "RelevanceShedRateHigh", "RelevanceStoreErrors", "RelevanceNotReady"}


@needs_prometheus
def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(ALERTS.glob("*.rules.test.yaml"))
    assert tests
    result = subprocess.run([PROMTOOL, "test", "rules", *map(str, tests)], capture_output=True, text=True,
                            cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(Prometheus base URL, the metrics port it scrapes every second, with the labels a ServiceMonitor adds)."""
    target = free_port()
    port = free_port((target,))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(p) for p in rule_files()],
              "scrape_configs": [{"job_name": "gateway", "static_configs": [
                  {"targets": [f"127.0.0.1:{target}"], "labels": {"namespace": "search", "pod": "gateway-0"}}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",  # type: ignore[list-item]
                                f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "Prometheus did not start"
            time.sleep(0.2)
        yield url, target
    finally:
        process.terminate()
        process.wait(timeout=30)


async def traffic(url: str, grpc_port: int, seconds: float) -> None:
    """Mixed traffic: stored and unknown ids, titles, rerank, writes, explanations of the decision (no teacher
    needed) and of the teacher's judgement without a teacher (503), bursts that admission control sheds, gRPC."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            k += 1
            items = [{"id": f"sku-{j}"} for j in range(4)] + [{"id": f"new-{k}", "title": TITLES[k % 4]},
                                                              {"id": "nobody"}]
            burst = [client.post("/v1/score", json={"query": f"angle {k} {j}", "items": items}) for j in range(12)]
            write = {"items": [{"id": f"sku-{k % 4}", "title": TITLES[k % 4]}]}
            await asyncio.gather(*burst, client.post("/v1/rerank", json={"query": "angle", "documents": TITLES}),
                                 client.put("/v1/items", json=write),
                                 client.post("/v1/explain", json={"query": "angle", "title": TITLES[0]}),
                                 client.post("/v1/explain", json={"query": "angle", "title": TITLES[0],
                                                                  "mode": "teacher"}))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                await pb_grpc.RelevanceStub(channel).Score(pb.ScoreRequest(query="angle", items=[pb.Item(id="sku-1")]),
                                                           timeout=10)
            await asyncio.sleep(0.2)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", (expr, response)
    result: list[dict[str, Any]] = response["data"]["result"]
    return result


@needs_prometheus
def test_prometheus_scrapes_a_live_gateway_and_every_query_has_data(
        prometheus: tuple[str, int], tiny_model_repository: Path, tmp_path: Path) -> None:
    prom, metrics_port = prometheus
    settings = Settings(model_repository=tiny_model_repository, store="local",  # type: ignore[call-arg]
                        store_dir=tmp_path / "index", grpc_port=free_port((metrics_port,)), metrics_port=metrics_port,
                        max_concurrent_requests=2, max_queued_requests=2, max_queue_wait_ms=5, query_cache_mib=0.05)
    with serving(create_app(settings)) as port:
        asyncio.run(traffic(f"http://127.0.0.1:{port}", settings.grpc_port or 0, seconds=6.0))
        time.sleep(2.5)  # two more scrapes and rule evaluations
        deadline = time.monotonic() + 20
        while True:  # every rule evaluated at least once
            groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if (rules and all(r["health"] != "unknown" for r in rules)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        targets = httpx.get(f"{prom}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        panel_queries = [q for q in queries() if "relevance_" in q and not q.startswith("label_values(")]
        empty = []
        for expr in panel_queries:
            concrete = (expr.replace("$namespace", "search").replace("$__rate_interval", "30s")
                        .replace("$__range", "1m"))
            if not query(prom, concrete):
                empty.append(expr)
        alert_exprs = {r["alert"]: THRESHOLD.sub("", r["expr"].strip()) for r in alert_rules()}
        no_data = [name for name, expr in alert_exprs.items() if not query(prom, expr)]
    assert len(panel_queries) >= 20
    assert not empty, f"dashboard queries without data under load: {empty}"
    assert {r["name"] for r in rules} == set(alert_exprs)
    assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules
    assert not no_data, f"alert expressions without data under load: {no_data}"
