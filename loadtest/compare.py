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
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.openloop import LoadTestError, Target, Workload, load_workload, probe_latency
from loadtest.runner import LoadTestConfig, run_loadtest
from loadtest.steps import StepPlan
from mkd.data import REPO_ROOT

PEER_REQUIREMENTS = Path(__file__).resolve().parent / "peer-requirements.txt"
DEFAULT_WORK = REPO_ROOT / "runs" / "loadtest"
DEFAULT_OUT = REPO_ROOT / "reports" / "loadtest" / "compare"
TARGETS = ("colbert-cached", "colbert-titles", "cross", "infinity")
LABELS = {"colbert-cached": "ColBERT gateway, cached items", "colbert-titles": "ColBERT gateway, items from titles",
          "cross": "cross-encoder (ONNX, our stack)", "infinity": "infinity-emb (torch, same cross-encoder)"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- machine ---------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory and the load averages now (the lead's training may share the cores)."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    load = os.getloadavg()
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory_gib": memory_gib,
            "loadavg_1_5_15": [round(x, 2) for x in load], "python": platform.python_version(),
            "platform": platform.platform()}


# --- servers ---------------------------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    """How to start one server: ``argv`` with ``{port}`` filled in, extra environment, the readiness route."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    startup_timeout_s: float = 300.0


@contextlib.contextmanager
def running(spec: ServerSpec, logs: Path, console: Console) -> Iterator[str]:
    """Start the server on a free port, wait until ``ready_path`` answers 200, yield its base URL, stop it
    (SIGTERM, then SIGKILL after 15 s). Its output goes to ``logs/<name>.log``."""
    import httpx

    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in spec.argv]
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "RELEVANCE_REDIS_URL", "RELEVANCE_TEACHER_URL")}
    env.update(spec.env)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{spec.name}.log"
    url = f"http://127.0.0.1:{port}"
    console.print(f"[bold]{spec.name}[/bold]: {shlex.join(argv)}", highlight=False)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + spec.startup_timeout_s
            started = time.monotonic()
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited with code {process.returncode}; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + spec.ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{spec.name} not ready within {spec.startup_timeout_s:.0f} s; see {log_path}")
                time.sleep(0.5)
            console.print(f"  ready on {url} after {time.monotonic() - started:.1f} s", highlight=False)
            yield url
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# --- preparation -----------------------------------------------------------------------------------------------


def _run(argv: list[str], console: Console, env: dict[str, str] | None = None) -> str:
    console.print(f"$ {shlex.join(argv)}", highlight=False)
    done = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with code {done.returncode}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def find_cross_checkpoint(explicit: Path | None) -> Path:
    """``explicit``, else a trained cross-encoder under runs/ (``*/best/student.json`` of family cross), else the
    throwaway /tmp/cross-arch/best (``relevance train --student cross --max-steps 3 --out /tmp/cross-arch``)."""
    candidates = [explicit] if explicit is not None else [
        *sorted((REPO_ROOT / "runs").glob("*/best")), Path("/tmp/cross-arch/best")]
    for path in candidates:
        if path is None or not (path / "student.json").is_file():
            continue
        if json.loads((path / "student.json").read_text()).get("family") == "cross":
            return path
    raise LoadTestError("no cross-encoder checkpoint: pass --cross-checkpoint, or train one, e.g. `relevance train "
                        "--student cross --max-steps 3 --out /tmp/cross-arch` (weights do not change the speed)",
                        "--cross-checkpoint")


def describe_checkpoint(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"path": str(path)}
    training = path.parent / "training.json"
    if training.is_file():
        data = json.loads(training.read_text())
        steps = data.get("epochs", [{}])[-1].get("steps") if data.get("epochs") else None
        record.update(steps=steps, teacher=data.get("config", {}).get("teacher"),
                      best=data.get("best", {}).get("valid") or data.get("best"))
    return record


def setup_peer(venv: Path, console: Console) -> Path:
    """Create ``venv`` with :data:`PEER_REQUIREMENTS` (infinity-emb, torch 2.13.0 CPU) unless it has infinity_emb;
    returns the ``infinity_emb`` executable."""
    binary = venv / "bin" / "infinity_emb"
    if binary.is_file():
        return binary
    python = shutil.which("python3.11") or sys.executable
    _run([python, "-m", "venv", str(venv)], console)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(PEER_REQUIREMENTS)], console)
    return binary


@dataclass(frozen=True)
class Prepared:
    store_dir: Path
    cross_checkpoint: Path
    cross_repository: Path
    hf_folder: Path
    infinity: Path | None
    hf_record: dict[str, Any]


def prepare(work: Path, *, catalog: Path, catalog_limit: int, cross_checkpoint: Path | None, precision: str,
            infinity: Path | None, want_peer: bool, console: Console) -> Prepared:
    """Index the catalogue subset, export the cross-encoder (ONNX repository and HF folder); each step is skipped
    when its output exists (the indexer resumes)."""
    relevance = [sys.executable, "-m", "relevance.cli"]
    store_dir = work / "index"
    _run([*relevance, "index", "--catalog", str(catalog), "--limit", str(catalog_limit), "--store-dir",
          str(store_dir)], console, env={"HF_HUB_OFFLINE": "1"})
    checkpoint = find_cross_checkpoint(cross_checkpoint)
    repository = work / "cross-repository"
    if not (repository / "cross" / "1" / "model.onnx").is_file():
        _run([*relevance, "export", "triton", "--checkpoint", str(checkpoint), "--repository", str(repository),
              "--version", "1", "--precision", "fp32", "--force"], console, env={"HF_HUB_OFFLINE": "1"})
    if precision == "int8" and not (repository / "cross" / "2" / "model.onnx").is_file():
        _run([*relevance, "export", "triton", "--checkpoint", str(checkpoint), "--repository", str(repository),
              "--version", "2", "--precision", "int8", "--force"], console, env={"HF_HUB_OFFLINE": "1"})
    hf_folder = work / "cross-hf"
    if not (hf_folder / "hf_cross.json").is_file():
        _run([sys.executable, "-m", "loadtest.hf_cross", "--checkpoint", str(checkpoint), "--out", str(hf_folder)],
             console, env={"HF_HUB_OFFLINE": "1"})
    hf_record = json.loads((hf_folder / "hf_cross.json").read_text())
    binary = None
    if want_peer:
        binary = infinity or (work / "peer-venv" / "bin" / "infinity_emb")
        if not binary.is_file():
            raise LoadTestError(f"{binary} does not exist: run `relevance loadtest setup-peer` (its own virtual "
                                "environment: infinity-emb's pins conflict with the project's)", "--infinity")
    return Prepared(store_dir, checkpoint, repository, hf_folder, binary, hf_record)


# --- the comparison --------------------------------------------------------------------------------------------


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
                              "RELEVANCE_QUERY_CACHE_SIZE": "0", "RELEVANCE_TITLE_CACHE_SIZE": "0",
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


# --- the report ------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, r in summary["targets"].items():
        step = r["step"]
        fixed = r.get("fixed") or {}
        ratio = summary["ratios"].get(name, {}).get("colbert_cached_over")
        rows.append([r["label"], _fmt(r.get("probe_median_ms")), _fmt(r.get("p99_bound_ms"), 0),
                     _fmt(step["saturation_rps"], 2), _fmt(step["saturation_pairs_per_s"], 0),
                     _fmt(step["saturation_p99_ms"]), _fmt(step["p99_at_half_saturation_ms"]),
                     _fmt(fixed.get("p50_ms")), _fmt(fixed.get("p99_ms")), str(fixed.get("errors", "-")),
                     "1x" if name == "colbert-cached" else (f"{ratio:,.1f}x" if ratio else "-")])
    return rows


HEADERS = ["target", "sequential ms/request", "p99 bound ms", "saturation req/s", "saturation pairs/s",
           "p99 at saturation ms", "p99 at half saturation ms",
           "p50 ms at common load", "p99 ms at common load", "errors at common load", "ColBERT-cached pairs/s over"]


def write_report(summary: dict[str, Any], out: Path, console: Console) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot_compare(summary, out)
    rows = table_rows(summary)
    table = Table(title=f"side by side, {summary['settings']['items']} items per request", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    (out / "compare.md").write_text(markdown(summary, rows), encoding="utf-8")


def _fixed_count(summary: dict[str, Any]) -> str:
    counts = sorted({t["fixed"]["scheduled"] for t in summary["targets"].values() if t.get("fixed")})
    return "/".join(str(c) for c in counts) or "no"


def markdown(summary: dict[str, Any], rows: list[list[str]]) -> str:
    m = summary["machine"]
    s = summary["settings"]
    ck = summary["cross_checkpoint"]
    hf = summary["hf_export"]
    lines = [
        "# Load test: ColBERT gateway vs cross-encoder vs infinity-emb", "",
        f"Command: `{summary['command']}`", "",
        f"Machine: {m['nproc']} CPU(s), {m['cpu_model']}, {m['memory_gib']} GiB; load average before the run "
        f"{m['loadavg_1_5_15']} (1/5/15 min). "
        + ("**The machine was shared** (1-min load > 1.5 before the run): other jobs (training, other test runs) "
           "were using the same cores, so absolute numbers are lower and noisier than on an idle machine; the "
           "ratios are what to read."
           if summary["machine_shared"] else "The machine was otherwise idle (1-min load <= 1.5)."),
        "Client and servers share these cores.", "",
        f"Open loop, {s['items']} items per request, latency from the intended send time. Per target: "
        f"{s['probe_requests']} sequential requests give its latency L; steps start at {s['start_fraction']}/L "
        f"req/s and grow x{s['step_factor']}, each {s['step_duration']:g} s or at least {s['min_requests']} "
        f"requests; a step holds while p99 <= max({s['max_p99_ms']:g} ms, {s['p99_factor']:g} x L) and errors <= "
        f"{s['max_error_rate']:.0%}; saturation = the last rate that held; then one step at half of it. Common "
        f"load: Poisson arrivals at {summary['common_fixed_rps']} req/s (half the lowest saturation point) for "
        f"every target for max({s['fixed_duration']:g} s, {s['fixed_min_requests']} / rate) (the same seeded "
        f"draw for every target: {_fixed_count(summary)} requests), each server restarted. Both gateway caches "
        "(query embeddings, titles) are off, so no request is cheaper than the cross-encoder's for being "
        "repeated.", "",
        "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS),
        *("| " + " | ".join(row) + " |" for row in rows), "",
    ]
    for name, r in summary["ratios"].items():
        if "goal" in r:
            lines.append(f"- ColBERT-cached vs {name}: {r['colbert_cached_over']}x the pairs/s at saturation "
                         f"(goal ≥ {r['goal']:g}x), its p99 there no worse: {r['colbert_p99_no_worse']} → goal met: "
                         f"{r['goal_met']}")
    lines += [
        "",
        f"Cross-encoder weights: `{ck['path']}`" + (f" ({ck.get('steps')} training steps)" if ck.get("steps") else "")
        + ": throughput does not depend on the weights (same architecture and compute).",
        f"Peer model folder: BertForSequenceClassification with {hf['pooler']} (our head is linear on the [CLS] "
        f"state, BERT's goes through the tanh pooler); logit parity max abs diff "
        f"{hf['parity_max_abs_logit_diff']:.2e}; "
        f"model_max_length {hf['model_max_length']}.",
        "Scores of one sample request (same weights; the cross-encoder path is int8, the peer fp32): "
        + "; ".join(f"{n}: {r['sample_scores']}" for n, r in summary["targets"].items() if r.get("sample_scores"))
        + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()) + ".",
        "", "Plots: `compare_pairs_per_s.png`, `compare_p99_vs_load.png`; per target `<target>/steps/` and "
        "`<target>/fixed/` (loadtest.json, latency over time, CDF, step curves).", "",
    ]
    return "\n".join(lines)


def plot_compare(summary: dict[str, Any], out: Path) -> None:
    """Bars of the saturation pairs/s (log scale) and p99 against the offered pairs/s for every target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from loadtest.plots import plain_log_ticks

    names = list(summary["targets"])
    labels = [summary["targets"][n]["label"].replace(", ", ",\n").replace(" (", "\n(") for n in names]
    pairs = [summary["targets"][n]["step"]["saturation_pairs_per_s"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(np.arange(len(names)), pairs, color=plt.cm.tab10(np.arange(len(names))))
    for bar, value in zip(bars, pairs, strict=True):
        ax.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, max(value, 1)), ha="center", va="bottom",
                    fontsize=9)
    ax.set_xticks(np.arange(len(names)), labels, fontsize=8)
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_ylabel("pairs/s at saturation (log scale)")
    ax.set_title(f"Saturation throughput, {summary['settings']['items']} items per request, "
                 f"p99 <= {summary['settings']['max_p99_ms']:g} ms", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "compare_pairs_per_s.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for k, name in enumerate(names):
        step = summary["targets"][name]["step"]
        rows = [s for s in step["steps"] if s["p99_ms"] is not None]
        ax.plot([s["offered_pairs_per_s"] for s in rows], [s["p99_ms"] for s in rows], "o-",
                color=plt.cm.tab10(k), label=summary["targets"][name]["label"])
        half = step.get("half")
        if half and half.get("p99_ms") is not None:
            ax.plot([half["offered_pairs_per_s"]], [half["p99_ms"]], "*", color=plt.cm.tab10(k), markersize=12)
    ax.axhline(summary["settings"]["max_p99_ms"], color="red", linestyle="--", linewidth=1,
               label="p99 bound floor (per target: max(floor, p99_factor x sequential latency))")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel("offered load (pairs/s)")
    ax.set_ylabel("p99 latency from intended send (ms)")
    ax.set_title("p99 against offered load (stars: half of the saturation point)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compare_p99_vs_load.png", dpi=110)
    plt.close(fig)


def workload_for(catalog: Path, catalog_limit: int, queries: list[Path]) -> Workload:
    return load_workload(queries, catalog, catalogue_limit=catalog_limit)
