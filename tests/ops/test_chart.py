"""The Helm chart, rendered by Helm itself (helm-python-sdk binds Helm v4's Go SDK; no helm binary, no cluster)
for the default values and for non-default ones, every manifest validated against the Kubernetes JSON schemas
of kubernetes-validate (strict: unknown fields fail), and the wiring between the components asserted.

ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) are CRDs that kubernetes-validate has no schema for:
they are checked explicitly instead (the selector matches a rendered Service, endpoints name that Service's ports,
/metrics; the rule groups are those of helm/relevance/alerts/*.rules.yaml)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "relevance"
RELEASE, NAMESPACE = "rel", "search"
PREFIX = f"{RELEASE}-relevance"
# the chart's kubeVersion floor and the newest schemas kubernetes-validate ships
KUBE_VERSIONS = ("1.25", kubernetes_validate.latest_version())
IMAGE_UID = 10001  # the Dockerfile's USER

Manifest = dict[str, Any]

FULL = {  # every optional component on, with the non-default wiring
    "triton": {"enabled": True},
    "vllm": {"enabled": True},
    "redis": {"external": {"url": "redis://redis.shared:6379/2"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "gateway": {"autoscaling": {"requestRate": {"enabled": True}}, "apiKeys": {"existingSecret": "gateway-keys"},
                "settings": {"max_body_bytes": 4194304, "model_version": 1}},
    "teacher": {"apiKey": {"existingSecret": "teacher-key"}},
    "modelRepository": {"existingClaim": "models", "subPath": "repository"},
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "full": FULL,
    # no Redis, no HPA, no dashboard; an external teacher; Triton over HTTP from the image's repository
    "local-store": {"redis": {"enabled": False}, "gateway": {"autoscaling": {"enabled": False}},
                    "grafana": {"dashboard": {"enabled": False}}, "teacher": {"externalUrl": "http://llm:8000/v1"},
                    "triton": {"enabled": True, "protocol": "http", "gpus": 1}},
    "request-rate-only": {"gateway": {"autoscaling": {"cpu": {"enabled": False},
                                                      "requestRate": {"enabled": True}}},
                          "redis": {"external": {"existingSecret": "redis-url"}}},
}


def render(values: dict[str, Any]) -> list[Manifest]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [doc for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, render(SCENARIOS[request.param])


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: Manifest, name: str) -> Manifest:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def ports(item: Manifest) -> dict[str, int]:
    return {p["name"]: p.get("containerPort", p.get("port")) for p in item["ports"]}


def literal_env(item: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in item.get("env", []) if "value" in e}


def secret_env(item: Manifest) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in item.get("env", []) if "valueFrom" in e}


def gateway_settings(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The gateway's Settings as its container's literal environment makes them (parsed by pydantic-settings)."""
    for key in list(os.environ):
        if key.startswith("RELEVANCE_") or key == "REDIS_URL":
            monkeypatch.delenv(key)
    for key, value in literal_env(container(find(manifests, "Deployment", f"{PREFIX}-gateway"), "gateway")).items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def check_service_monitor(monitor: Manifest, manifests: list[Manifest]) -> None:
    """The explicit structure check of a ServiceMonitor (no schema for this CRD in kubernetes-validate)."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    wanted = spec["selector"]["matchLabels"]
    services = [m for m in manifests if m["kind"] == "Service"
                and wanted.items() <= m["metadata"]["labels"].items()]
    assert len(services) == 1, f"{monitor['metadata']['name']} selects {len(services)} services"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in ports(services[0]["spec"]) and endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint["interval"])
        assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint["scrapeTimeout"])


def check_prometheus_rule(rule: Manifest) -> None:
    """The explicit structure check of a PrometheusRule: exactly the groups of the chart's alerts/*.rules.yaml."""
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    files = sorted((CHART / "alerts").glob("*.rules.yaml"))
    assert files and rule["spec"]["groups"] == [g for f in files for g in yaml.safe_load(f.read_text())["groups"]]
    for group in rule["spec"]["groups"]:
        assert group["rules"] and all(set(r) <= {"alert", "expr", "for", "labels", "annotations"}
                                      for r in group["rules"])


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] == "Deployment":
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


# ---- schema validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates(scenario: tuple[str, list[Manifest]], kube_version: str) -> None:
    _, manifests = scenario
    assert manifests
    for manifest in manifests:
        if manifest["kind"] == "ServiceMonitor":
            check_service_monitor(manifest, manifests)
            continue
        if manifest["kind"] == "PrometheusRule":
            check_prometheus_rule(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']} against {kube_version}: {path}: "
                        f"{exc.message}")


def test_the_expected_objects(scenario: tuple[str, list[Manifest]]) -> None:
    name, manifests = scenario
    kinds = sorted(f"{m['kind']}/{m['metadata']['name'].removeprefix(PREFIX)}" for m in manifests)
    gateway = ["Deployment/-gateway", "PodDisruptionBudget/-gateway", "Service/-gateway", "ServiceAccount/"]
    expected = {
        "default": [*gateway, "ConfigMap/-dashboard", "Deployment/-redis", "HorizontalPodAutoscaler/-gateway",
                    "Service/-redis"],
        "full": [*gateway, "ConfigMap/-dashboard", "Deployment/-triton", "Deployment/-vllm",
                 "HorizontalPodAutoscaler/-gateway", "Service/-triton", "Service/-vllm", "PrometheusRule/-alerts",
                 "ServiceMonitor/-gateway", "ServiceMonitor/-triton", "ServiceMonitor/-vllm"],
        "local-store": [*gateway, "Deployment/-triton", "Service/-triton"],
        "request-rate-only": [*gateway, "ConfigMap/-dashboard", "HorizontalPodAutoscaler/-gateway"],
    }[name]
    assert kinds == sorted(expected)


def test_helm_lint_is_clean() -> None:
    for values in SCENARIOS.values():
        report = helm_python.lint(CHART, values, strict=True)
        assert not report["errors"], report
        assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]  # infos only (icon)


# ---- the gateway ------------------------------------------------------------------------------------------------


def test_gateway_probes_ports_and_security(scenario: tuple[str, list[Manifest]]) -> None:
    _, manifests = scenario
    deployment = find(manifests, "Deployment", f"{PREFIX}-gateway")
    gateway = container(deployment, "gateway")
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"]["path"] == "/livez"
    # stopping: the preStop sleep, then SIGTERM starts the gateway's drain, then the graceful shutdown, in time
    drain_s = int(literal_env(gateway)["RELEVANCE_DRAIN_S"])
    assert drain_s == Settings.model_fields["drain_s"].default
    assert gateway["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(drain_s)]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 2 * drain_s + 10
    defaults = (Settings.model_fields["port"].default, Settings.model_fields["grpc_port"].default)
    metrics_port = 8002  # the chart serves /metrics on its own port (RELEVANCE_METRICS_PORT), as Triton does
    assert ports(gateway) == {"http": defaults[0], "grpc": defaults[1], "metrics": metrics_port}
    assert literal_env(gateway)["RELEVANCE_METRICS_PORT"] == str(metrics_port)
    service = find(manifests, "Service", f"{PREFIX}-gateway")
    assert ports(service["spec"]) == {"http": defaults[0], "grpc": defaults[1], "metrics": metrics_port}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert gateway["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert gateway["resources"]["requests"]["cpu"]


def test_every_pod_runs_as_non_root(scenario: tuple[str, list[Manifest]]) -> None:
    _, manifests = scenario
    for name, pod in pod_specs(manifests):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for item in [*pod["containers"], *pod.get("initContainers", [])]:
            assert item["securityContext"]["allowPrivilegeEscalation"] is False, (name, item["name"])


def test_gateway_env_names_are_settings(scenario: tuple[str, list[Manifest]]) -> None:
    _, manifests = scenario
    gateway = container(find(manifests, "Deployment", f"{PREFIX}-gateway"), "gateway")
    names = [e["name"] for e in gateway["env"]]
    assert len(names) == len(set(names))
    for name in names:
        assert name == "REDIS_URL" or name.removeprefix("RELEVANCE_").lower() in Settings.model_fields, name


def test_default_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = render({})
    settings = gateway_settings(manifests, monkeypatch)
    assert settings.host == "0.0.0.0" and settings.backend == "onnxruntime"
    assert str(settings.model_repository) == "/app/model_repository"  # baked into the image
    assert settings.store_kind == "redis" and settings.redis_url == f"redis://{PREFIX}-redis:6379/0"
    assert ports(find(manifests, "Service", f"{PREFIX}-redis")["spec"]) == {"redis": 6379}
    assert settings.teacher_url is None  # /v1/explain answers 503 until a teacher is configured
    assert settings.onnx_threads == 1 and settings.query_cache_mib == 64
    deployment = find(manifests, "Deployment", f"{PREFIX}-gateway")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    hpa = find(manifests, "HorizontalPodAutoscaler", f"{PREFIX}-gateway")
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    dashboard = find(manifests, "ConfigMap", f"{PREFIX}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "relevance-gateway.json").read_text())
    assert json.loads(dashboard["data"]["relevance-gateway.json"]) == shipped


def test_full_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = render(FULL)
    settings = gateway_settings(manifests, monkeypatch)
    # Triton: the gateway's backend, over gRPC to the Triton Service's grpc port
    assert settings.backend == "triton" and settings.triton_protocol == "grpc"
    assert settings.triton_url == f"{PREFIX}-triton:8001"
    triton_service = find(manifests, "Service", f"{PREFIX}-triton")
    assert ports(triton_service["spec"]) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    triton = find(manifests, "Deployment", f"{PREFIX}-triton")
    server = container(triton, "triton")
    assert ports(server) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert "--model-repository=/models" in server["args"] and "--metrics-port=8002" in server["args"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    gateway_pod = find(manifests, "Deployment", f"{PREFIX}-gateway")["spec"]["template"]["spec"]
    assert [c["name"] for c in gateway_pod["initContainers"]] == ["wait-for-triton"]
    # the model repository claim, mounted read-only in both at the same sub-path
    assert str(settings.model_repository) == "/models" and settings.model_version == 1
    for pod in (gateway_pod, triton["spec"]["template"]["spec"]):
        assert {"name": "model-repository", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} \
            in pod["volumes"]
    assert "initContainers" not in triton["spec"]["template"]["spec"]  # nothing to copy from the image
    # Redis: external, no in-cluster Redis
    assert settings.redis_url == "redis://redis.shared:6379/2" and settings.store_kind == "redis"
    # vLLM: the teacher, on a GPU, under the model name the gateway sends, sharing the API key Secret
    assert settings.teacher_url == f"http://{PREFIX}-vllm:8000/v1" and settings.teacher_model == "ellm-rele"
    assert ports(find(manifests, "Service", f"{PREFIX}-vllm")["spec"]) == {"http": 8000}
    vllm = container(find(manifests, "Deployment", f"{PREFIX}-vllm"), "vllm")
    assert vllm["command"] == ["vllm", "serve"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = vllm["args"]
    assert args[args.index("--served-model-name") + 1] == "ellm-rele" and args[args.index("--port") + 1] == "8000"
    gateway = container(find(manifests, "Deployment", f"{PREFIX}-gateway"), "gateway")
    assert secret_env(vllm)["VLLM_API_KEY"] == secret_env(gateway)["RELEVANCE_TEACHER_API_KEY"] \
        == ("teacher-key", "api-key")
    assert secret_env(gateway)["RELEVANCE_API_KEYS"] == ("gateway-keys", "api-keys")
    # numbers of a million and more keep their digits (YAML numbers reach templates as floats)
    assert literal_env(gateway)["RELEVANCE_MAX_BODY_BYTES"] == "4194304" and settings.max_body_bytes == 4194304
    # HPA on CPU and on the adapter's per-pod request rate
    metrics = find(manifests, "HorizontalPodAutoscaler", f"{PREFIX}-gateway")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource", "Pods"]
    assert metrics[1]["pods"] == {"metric": {"name": "relevance_http_requests_per_second"},
                                  "target": {"type": "AverageValue", "averageValue": "200"}}
    # ServiceMonitors: the gateway's metrics port (no API key needed there: API keys are set here), Triton's 8002,
    # vLLM's /metrics, with the Prometheus release label
    monitors = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ServiceMonitor"}
    assert {name: m["spec"]["endpoints"][0]["port"] for name, m in monitors.items()} == {
        f"{PREFIX}-gateway": "metrics", f"{PREFIX}-triton": "metrics", f"{PREFIX}-vllm": "http"}
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in monitors.values())
    assert settings.metrics_port == 8002
    rule = find(manifests, "PrometheusRule", f"{PREFIX}-alerts")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "relevance-slo" in [group["name"] for group in rule["spec"]["groups"]]


def test_local_store_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = render(SCENARIOS["local-store"])
    settings = gateway_settings(manifests, monkeypatch)
    assert settings.store_kind == "local" and str(settings.store_dir) == "/app/data/index"
    assert settings.redis_url is None
    assert settings.teacher_url == "http://llm:8000/v1"
    assert settings.triton_protocol == "http" and settings.triton_url == f"{PREFIX}-triton:8000"
    gateway = find(manifests, "Deployment", f"{PREFIX}-gateway")
    assert gateway["spec"]["replicas"] == 2
    mounts = {m["name"]: m["mountPath"] for m in container(gateway, "gateway")["volumeMounts"]}
    assert mounts["item-store"] == "/app/data/index"  # writable under a read-only root filesystem
    triton = find(manifests, "Deployment", f"{PREFIX}-triton")
    init = triton["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == "relevance:0.1.0" and init["command"][-2:] == ["/app/model_repository/.", "/models/"]
    server = container(triton, "triton")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1 and "--allow-gpu-metrics=true" in server["args"]


def test_request_rate_only_autoscaling_and_redis_url_from_a_secret() -> None:
    manifests = render(SCENARIOS["request-rate-only"])
    metrics = find(manifests, "HorizontalPodAutoscaler", f"{PREFIX}-gateway")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"]
    gateway = container(find(manifests, "Deployment", f"{PREFIX}-gateway"), "gateway")
    assert secret_env(gateway)["REDIS_URL"] == ("redis-url", "redis-url")
    assert literal_env(gateway)["RELEVANCE_STORE"] == "redis"


@pytest.mark.parametrize("values", [
    {"gateway": {"settings": {"triton_url": "elsewhere:8001"}}},
    {"gateway": {"autoscaling": {"cpu": {"enabled": False}}}},
    {"gateway": {"drainSeconds": 15, "terminationGracePeriodSeconds": 30}},
])
def test_contradictory_values_fail_the_render(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmError):
        render(values)


def test_settings_keys_are_gateway_settings() -> None:
    settings = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["settings"]
    for key, value in settings.items():
        assert key in Settings.model_fields, key
        assert value is None or value == Settings.model_fields[key].default, (key, value)  # the chart adds nothing


# ---- values.yaml is documented, and helm/README.md lists it ------------------------------------------------------


def documented_values() -> list[str]:
    """The dotted paths of values.yaml that carry a ``# --`` comment, checking on the way that every value is
    either documented or a mapping whose values all are."""
    paths: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, covered by a comment)
    comment = False
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = True
            continue
        match = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        covered = any(c for _, _, c in stack)
        path = ".".join([*(k for _, k, _ in stack), key])
        if comment:
            paths.append(path)
        assert comment or covered or not rest, f"values.yaml: {path} has no '# --' comment"
        stack.append((indent, key, comment or covered))
        comment = False
    return paths


def test_values_are_documented_in_values_and_readme() -> None:
    paths = documented_values()
    assert {"gateway.settings.onnx_threads", "triton.enabled", "redis.external.url", "vllm.gpus",
            "serviceMonitor.enabled", "grafana.dashboard.labels"} <= set(paths)
    readme = (REPO / "helm" / "README.md").read_text()
    missing = [p for p in paths if f"`{p}`" not in readme]
    assert not missing, f"helm/README.md does not list {missing}"
