"""``relevance loadtest compare``: the side-by-side benchmark on this machine, in one go.

Targets (each server a subprocess on a free port, started, waited for, measured, stopped):

- ``colbert-cached``: the gateway (``relevance serve``, the shipped ColBERT, local store) scoring ids whose token
  embeddings are in the store (a ``--catalog-limit`` subset of the catalogue, indexed first);
- ``colbert-titles``: the same gateway scoring the same candidates as new ids with titles (every item encoded);
- ``cross``: the project's cross-encoder student, exported to ONNX (same precision as the shipped ColBERT) and
  served by :mod:`loadtest.cross_server` on the gateway's stack (the gateway itself serves ColBERT only);
- ``infinity``: infinity-emb (``infinity_emb v2``, torch engine on the CPU), a rerank server a user would pick
  instead, serving the same cross-encoder weights (:mod:`loadtest.hf_cross`) on the same candidates.

Every request is one real query against ``--items`` catalogue candidates; request *k* is the same query and
candidates for every target. Both gateway caches (query embeddings, titles) are off, so each request pays for
its encoding as the cross-encoder does. Per target: a short closed-loop probe chooses where the steps start, the
step mode finds the saturation point (the last rate whose p99 and error rate held the bound) and measures the p99
at half of it. Then every server is started again for a fixed-rate run with Poisson arrivals at one common
offered load (half of the lowest saturation point), so the p99s compare at equal load.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.compare_report import write_report
from loadtest.openloop import LoadTestError, Target, Workload, probe_latency
from loadtest.prepare import Prepared, describe_checkpoint
from loadtest.runner import LoadTestConfig, run_loadtest
from loadtest.servers import ServerSpec, running
from loadtest.steps import StepPlan

TARGETS = ("colbert-cached", "colbert-titles", "cross", "infinity")
LABELS = {"colbert-cached": "ColBERT gateway, cached items", "colbert-titles": "ColBERT gateway, items from titles",
          "cross": "cross-encoder (ONNX, our stack)", "infinity": "infinity-emb (torch, same cross-encoder)"}


@dataclass(frozen=True)
class CompareSettings:
    items: int = 100
    catalog_limit: int = 5000
    step_factor: float = 1.25
    step_duration: float = 8.0
    min_requests: int = 12
    max_p99_ms: float = 500.0
    p99_factor: float = 4.0
    start_fraction: float = 0.4
    max_error_rate: float = 0.01
    max_steps: int = 14
    fixed_duration: float = 30.0
    fixed_min_requests: int = 30
    concurrency: int = 256
    timeout_s: float = 15.0
    cross_threads: int = 0
    probe_requests: int = 5
    warmup: int = 5


def server_specs(prepared: Prepared, settings: CompareSettings) -> dict[str, tuple[ServerSpec, Target]]:
    """The server and the request shape of each target (the two ColBERT targets share one gateway spec)."""
    python = sys.executable
    gateway = ServerSpec("gateway", [python, "-m", "relevance.cli", "serve", "--port", "{port}", "--grpc-port", "0",
                                     "--log-level", "warning"],
                         env={"RELEVANCE_STORE": "local", "RELEVANCE_STORE_DIR": str(prepared.store_dir),
                              "RELEVANCE_QUERY_CACHE_MIB": "0", "RELEVANCE_TITLE_CACHE_MIB": "0",
                              "RELEVANCE_WRITE_BACK": "false", "HF_HUB_OFFLINE": "1",
                              # no explanations here: `relevance serve` would otherwise start the local teacher
                              # (a torch process) beside the gateway, on the cores being measured
                              "RELEVANCE_TEACHER_LOCAL": "false"})
    cross = ServerSpec("cross", [python, "-m", "loadtest.cross_server", "--repository",
                                 str(prepared.cross_repository), "--port", "{port}", "--threads",
                                 str(settings.cross_threads)])
    specs: dict[str, tuple[ServerSpec, Target]] = {
        "colbert-cached": (gateway, Target("", "score", "cached")),
        "colbert-titles": (gateway, Target("", "score", "titles")),
        "cross": (cross, Target("", "rerank", path="/v1/rerank")),
    }
    if prepared.infinity is not None:
        peer = ServerSpec("infinity", [str(prepared.infinity), "v2", "--model-id", str(prepared.hf_folder),
                                       "--served-model-name", "cross", "--engine", "torch", "--device", "cpu",
                                       "--port", "{port}", "--host", "127.0.0.1", "--log-level", "warning"],
                          env={"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                               "DO_NOT_TRACK": "1"}, ready_path="/health")
        specs["infinity"] = (peer, Target("", "rerank", path="/rerank", model="cross"))
    return specs


def _round_rate(rate: float) -> float:
    return float(f"{rate:.2g}")


def _with_url(target: Target, url: str) -> Target:
    return Target(url, target.endpoint, target.mode, target.path, target.model, target.headers)


def run_compare(targets: list[str], prepared: Prepared, workload: Workload, settings: CompareSettings, out: Path,
                console: Console, command: str, machine: dict[str, Any]) -> dict[str, Any]:
    """Phase 1: probe + steps per target; phase 2: the fixed-rate run at the common load. Writes everything."""
    specs = server_specs(prepared, settings)
    missing = [t for t in targets if t not in specs]
    if missing:
        raise LoadTestError(f"target(s) {missing} unavailable (infinity needs the peer environment)", "--targets")
    results: dict[str, dict[str, Any]] = {t: {"label": LABELS[t]} for t in targets}
    logs = prepared.store_dir.parent / "logs"  # the working directory: server logs are not report material

    def grouped(names: list[str]) -> list[tuple[ServerSpec, list[str]]]:
        groups: list[tuple[ServerSpec, list[str]]] = []
        for name in names:
            spec = specs[name][0]
            if groups and groups[-1][0] is spec:
                groups[-1][1].append(name)
            else:
                groups.append((spec, [name]))
        return groups

    for spec, names in grouped(targets):
        with running(spec, logs, console) as url:
            for name in names:
                target = _with_url(specs[name][1], url)
                latency = probe_latency(target, workload, requests=settings.probe_requests, items=settings.items)
                start = _round_rate(max(0.02, settings.start_fraction / latency))
                bound = round(max(settings.max_p99_ms, settings.p99_factor * latency * 1000.0), 0)
                console.print(f"[bold]{name}[/bold]: sequential median {latency * 1000:.1f} ms per request; steps "
                              f"from {start} req/s, p99 bound {bound:g} ms", highlight=False)
                plan = StepPlan(start=start, factor=settings.step_factor, max_p99_ms=bound,
                                max_error_rate=settings.max_error_rate, max_steps=settings.max_steps,
                                duration=settings.step_duration, min_requests=settings.min_requests)
                config = LoadTestConfig(target=target, items=settings.items, duration=settings.step_duration,
                                        plan=plan, concurrency=settings.concurrency,
                                        timeout_s=max(settings.timeout_s, 2 * bound / 1000.0),
                                        warmup=settings.warmup, label=name)
                result = run_loadtest(config, workload, out=out / name / "steps", console=console)
                results[name].update(server=spec.argv, env=spec.env, probe_median_ms=round(latency * 1000, 3),
                                     p99_bound_ms=bound, step=result["step"],
                                     sample_scores=sample_scores(target) if target.endpoint == "rerank" else None)
    saturations = [r["step"]["saturation_rps"] for r in results.values() if r["step"]["saturation_rps"]]
    common = _round_rate(min(saturations) / 2) if saturations else None
    if common is not None:
        duration = max(settings.fixed_duration, settings.fixed_min_requests / common)
        for spec, names in grouped(targets):
            with running(spec, logs, console) as url:
                for name in names:
                    target = _with_url(specs[name][1], url)
                    config = LoadTestConfig(target=target, items=settings.items, duration=duration, rate=common,
                                            concurrency=settings.concurrency,
                                            timeout_s=max(settings.timeout_s, 2 * results[name]["p99_bound_ms"] / 1000),
                                            arrival="poisson", warmup=settings.warmup, label=name)
                    results[name]["fixed"] = run_loadtest(config, workload, out=out / name / "fixed",
                                                          console=console)["run"]
    summary = {
        "command": command, "machine": machine,
        "machine_shared": machine["loadavg_1_5_15"][0] > 1.5,
        "settings": settings.__dict__, "workload": {"queries": len(workload.queries), "items": len(workload.items)},
        "cross_checkpoint": describe_checkpoint(prepared.cross_checkpoint), "hf_export": prepared.hf_record,
        "versions": versions(prepared), "common_fixed_rps": common, "targets": results,
        "ratios": ratios(results),
    }
    write_report(summary, out, console)
    return summary


SAMPLE_QUERY = "deck stain"
SAMPLE_DOCUMENTS = ["BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating",
                    "Simpson Strong-Tie 12-Gauge Angle", "Delta Vero 1-Handle Shower Only Faucet Trim Kit",
                    "Valley View Industries Metal Stakes (4-Pack)"]


def sample_scores(target: Target) -> list[float] | None:
    """A rerank server's scores of SAMPLE_DOCUMENTS in document order: the cross-encoder on our stack and the
    peer must agree (same weights), up to int8 vs fp32."""
    import httpx

    body: dict[str, Any] = {"query": SAMPLE_QUERY, "documents": SAMPLE_DOCUMENTS, "return_documents": False}
    if target.model:
        body["model"] = target.model
    try:
        results = httpx.post(target.address, json=body, timeout=60).json()["results"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    scores = [0.0] * len(SAMPLE_DOCUMENTS)
    for r in results:
        scores[r["index"]] = round(float(r["relevance_score"]), 5)
    return scores


def versions(prepared: Prepared) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in ("onnxruntime", "fastapi", "uvicorn", "aiohttp"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    if prepared.infinity is not None:
        python = prepared.infinity.parent / "python"
        code = ("from importlib.metadata import version as v; import json; print(json.dumps({p: v(p) for p in "
                "('infinity_emb', 'torch', 'transformers', 'sentence-transformers')}))")
        with contextlib.suppress(OSError, subprocess.SubprocessError, json.JSONDecodeError):
            peer = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=True)
            found.update({f"peer {k}": v for k, v in json.loads(peer.stdout).items()})
    return found


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Saturation pairs/s of ColBERT-cached over each other target, and whether its p99 was no worse there; the
    targets of the issue: >= 50x the cross-encoder path, >= 10x the peer."""
    base = results.get("colbert-cached")
    if base is None:
        return {}
    out: dict[str, Any] = {}
    b_pairs = base["step"]["saturation_pairs_per_s"]
    b_p99 = base["step"]["saturation_p99_ms"]
    goals = {"cross": 50.0, "infinity": 10.0}
    for name, result in results.items():
        if name == "colbert-cached":
            continue
        other = result["step"]["saturation_pairs_per_s"]
        ratio = round(b_pairs / other, 2) if b_pairs and other else None
        p99 = result["step"]["saturation_p99_ms"]
        entry: dict[str, Any] = {"colbert_cached_over": ratio,
                                 "colbert_p99_no_worse": None if b_p99 is None or p99 is None else b_p99 <= p99}
        if name in goals:
            entry["goal"] = goals[name]
            entry["goal_met"] = None if ratio is None else ratio >= goals[name] and bool(entry["colbert_p99_no_worse"])
        out[name] = entry
    return out
