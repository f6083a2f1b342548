"""The Grafana dashboard (helm/relevance/dashboards/relevance-gateway.json): every relevance_* series its queries
use is exported by the real gateway (one /v1/score request, then /metrics scraped over HTTP and read with
prometheus_client's parser); Triton's and vLLM's series cannot be scraped here, so they are kept in documented
lists below, and a query naming anything else fails."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "helm" / "relevance" / "dashboards" / "relevance-gateway.json"

# Triton Inference Server's Prometheus metrics (port 8002), as documented in Triton's user guide, "Metrics":
# request counts and cumulative durations per model and version, GPU utilisation and memory per GPU.
TRITON_METRICS = {
    "nv_inference_request_success",  # counter: successful inference requests
    "nv_inference_request_failure",  # counter: failed inference requests
    "nv_inference_count",  # counter: inferences (a batch of n counts n)
    "nv_inference_exec_count",  # counter: executions (batches)
    "nv_inference_queue_duration_us",  # counter: cumulative time requests waited in the queue, µs
    "nv_inference_compute_infer_duration_us",  # counter: cumulative model execution time, µs
    "nv_gpu_utilization",  # gauge: GPU utilisation, 0..1
    "nv_gpu_memory_used_bytes",  # gauge
    "nv_gpu_memory_total_bytes",  # gauge
}
# vLLM's OpenAI server /metrics (vLLM docs, "Production metrics"; names of the V1 engine, vLLM >= 0.10)
VLLM_METRICS = {
    "vllm:num_requests_running",  # gauge: requests in the running batch
    "vllm:num_requests_waiting",  # gauge: requests queued
    "vllm:e2e_request_latency_seconds_bucket",  # histogram: end-to-end request latency
    "vllm:time_to_first_token_seconds_bucket",  # histogram: time to the first generated token
    "vllm:prompt_tokens_total",  # counter: prefill tokens
    "vllm:generation_tokens_total",  # counter: generated tokens
    "vllm:kv_cache_usage_perc",  # gauge: KV-cache usage, 0..1
}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("_count", "_sum", "_created"), "info": ("_info",), "gauge": ("",)}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in panels(board["panels"]) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every name before a label matcher ``{`` or a
    ``label_values(`` argument."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr)) | set(
        re.findall(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))


def exported_names(exposition: str) -> dict[str, set[str]]:
    """Per metric family of the exposition, the series names it exports or declares: the samples present, and
    for families without samples yet (labelled metrics nothing has touched) the names their type gives."""
    return {family.name: {sample.name for sample in family.samples}
            | {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
            for family in text_string_to_metric_families(exposition)}


def test_relevance_series_are_exported_by_the_gateway(gateway_port: int) -> None:
    base = f"http://127.0.0.1:{gateway_port}"
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        scored = client.post("/v1/score", json={"query": "angle bracket",
                                                "items": [{"id": "1", "title": "Simpson Strong-Tie Angle"}]})
        assert scored.status_code == 200, scored.text
        exposition = client.get("/metrics").text
    families = {name: names for name, names in exported_names(exposition).items() if name.startswith("relevance_")}
    exported = set().union(*families.values())
    assert "relevance_http_request_duration_seconds_bucket" in exported  # the request above was recorded
    used = {name for expr in queries() for name in series_names(expr) if name.startswith("relevance_")}
    assert len(used) >= 15, used
    assert not used - exported, f"not exported by the gateway: {sorted(used - exported)}"
    # every family is on the dashboard (the *_created gauges prometheus_client adds are creation times)
    unused = sorted(f for f, names in families.items() if not names & used and not f.endswith("_created"))
    assert not unused, f"exported but not on the dashboard: {unused}"


def test_every_query_names_known_series() -> None:
    names = {name for expr in queries() for name in series_names(expr)}
    assert {n for n in names if n.startswith("nv_")} == TRITON_METRICS
    assert {n for n in names if n.startswith("vllm:")} == VLLM_METRICS
    unknown = {n for n in names if not n.startswith(("relevance_", "nv_", "vllm:"))}
    assert not unknown, unknown


def test_panels_use_the_datasource_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    drawn = [p for p in panels(board["panels"]) if p["type"] != "row"]
    assert len({p["id"] for p in panels(board["panels"])}) == len(list(panels(board["panels"])))
    for panel in drawn:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert all('namespace=~"$namespace"' in t["expr"] for t in panel["targets"]), panel["title"]
    titles = " ".join(p["title"] for p in panels(board["panels"]) if p["type"] == "row")
    assert "Triton" in titles and "vLLM" in titles
