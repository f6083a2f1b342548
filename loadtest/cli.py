"""``relevance bench`` (the gateway's closed-loop latency benchmark, :mod:`loadtest.bench`) and ``relevance
loadtest`` (the open-loop generator, :mod:`loadtest.openloop`; its step mode, :mod:`loadtest.steps`; and the
side-by-side comparison, :mod:`loadtest.compare`)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from relevance_core.data import default_pairs_path, derived_dir

PAIRS = default_pairs_path()
CATALOGUE = derived_dir() / "catalogue.tsv"


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['mode']}\n{r['concurrency']} client(s)" for r in results]
    x = np.arange(len(results))
    for k, q in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        ax.bar(x + (k - 1) * 0.27, [r[q] for r in results], width=0.27, label=q.removesuffix("_ms"))
    ax.set_xticks(x, labels)
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title(f"POST /v1/score, {results[0]['items']} items per request")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench(
    url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000",
    pairs: Annotated[Path, typer.Option(help="Pairs TSV the queries come from.")] = PAIRS,
    catalog: Annotated[Path, typer.Option(help="Catalogue TSV; for 'cached', the one that was indexed.")]
    = CATALOGUE,
    mode: Annotated[list[str], typer.Option(help="cached and/or uncached (repeat).")] = ["cached", "uncached"],  # noqa: B006
    concurrency: Annotated[list[int], typer.Option(help="Concurrent clients (repeat).")] = [1, 8],  # noqa: B006
    requests: Annotated[int, typer.Option(min=1, help="Measured requests per cell.")] = 300,
    items: Annotated[int, typer.Option(min=1, help="Items per request.")] = 100,
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured requests before each cell.")] = 30,
    api_key: Annotated[str | None, typer.Option(help="Sent as X-API-Key.")] = None,
    out: Annotated[Path | None, typer.Option(help="Directory for bench.json and bench.png.")] = None,
) -> None:
    """Latency percentiles and throughput of /v1/score, cached and uncached items, per concurrency. The last
    line printed is the JSON list of cells."""
    from loadtest.bench import run_bench
    from loadtest.openloop import LoadTestError, load_workload

    bad = sorted(set(mode) - {"cached", "uncached"})
    if bad:
        raise typer.BadParameter(f"unknown mode(s) {bad}; use cached and/or uncached", param_hint="--mode")
    try:
        workload = load_workload([pairs], catalog)
    except LoadTestError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pairs" if exc.option == "--queries" else exc.option) from None
    results = run_bench(url.rstrip("/"), workload, modes=mode, concurrency=concurrency,
                        requests=requests, items=items, warmup=warmup,
                        headers={"X-API-Key": api_key} if api_key else None)
    table = Table(title=f"POST {url}/v1/score, {items} items per request")
    for column in ("mode", "clients", "p50 ms", "p90 ms", "p99 ms", "req/s", "pairs/s", "non-200"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r["mode"], str(r["concurrency"]), f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['requests_per_s']:.0f}", f"{r['pairs_per_s']:.0f}",
                      str(r["requests"] - r["ok"]))
    Console(stderr=True).print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        _plot(results, out / "bench.png")
    print(json.dumps(results))


# --- relevance loadtest ----------------------------------------------------------------------------------------

loadtest_app = typer.Typer(no_args_is_help=False, add_completion=False)


class ModeChoice(StrEnum):
    cached = "cached"
    titles = "titles"


class EndpointChoice(StrEnum):
    score = "score"
    rerank = "rerank"
    explain = "explain"


class ExplainModeChoice(StrEnum):
    decision = "decision"
    teacher = "teacher"


class ArrivalChoice(StrEnum):
    constant = "constant"
    poisson = "poisson"


def bad(message: str, option: str) -> typer.BadParameter:
    """Exit code 2 with click's 'Invalid value for OPTION: message'."""
    return typer.BadParameter(message, param_hint=f"'{option}'")


@loadtest_app.callback(invoke_without_command=True)
def loadtest(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="Server base URL, e.g. http://127.0.0.1:8000.")] = None,
    rate: Annotated[float | None, typer.Option(help="Offered requests/s of a fixed-rate run.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds of the run (of each step in step mode).")] = 10.0,
    items: Annotated[int, typer.Option(help="Items (documents) per request.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Most requests in flight; a send that finds the bound reached "
                                                  "waits (counted as late) or is dropped after --timeout.")] = 256,
    mode: Annotated[ModeChoice, typer.Option(help="/v1/score items: cached (ids in the store) or titles (new ids "
                                                  "with titles: every item encoded).")] = ModeChoice.cached,
    endpoint: Annotated[EndpointChoice, typer.Option(help="score (our /v1/score), rerank (Cohere/Jina-style "
                                                          "POST {query, documents, model?}) or explain (our "
                                                          "/v1/explain, one pair per request).")]
    = EndpointChoice.score,
    path: Annotated[str | None, typer.Option(help="Route (default /v1/score or /v1/rerank; infinity: /rerank).")]
    = None,
    model: Annotated[str | None, typer.Option(help="'model' field of rerank and explain requests.")] = None,
    explain_mode: Annotated[ExplainModeChoice | None, typer.Option(
        help="'mode' of explain requests: decision (the served verdict explained) or teacher (the teacher's own "
             "judgement); default: the gateway's explain_mode.")] = None,
    arrival: Annotated[ArrivalChoice, typer.Option(help="constant spacing or Poisson arrivals.")]
    = ArrivalChoice.constant,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s).")] = 10.0,
    warmup: Annotated[int, typer.Option(help="Sequential unmeasured requests first.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the workload order and Poisson arrivals.")] = 0,
    queries: Annotated[list[Path] | None, typer.Option(help="Pairs TSV(s) the queries come from (repeat); default "
                                                          "data/derived/{train,test}.tsv or the vendored pairs.")]
    = None,
    catalog: Annotated[Path, typer.Option(help="Catalogue TSV the items come from.")] = CATALOGUE,
    catalog_limit: Annotated[int | None, typer.Option(help="Use only the first N products (those `relevance index "
                                                           "--limit N` stored).")] = None,
    api_key: Annotated[str | None, typer.Option(help="Sent as X-API-Key and Authorization: Bearer.")] = None,
    step_start: Annotated[float | None, typer.Option(help="Step mode: the first step's rate (requests/s).")] = None,
    step_factor: Annotated[float | None, typer.Option(help="Step mode: multiply the rate by F each step.")] = None,
    step_add: Annotated[float | None, typer.Option(help="Step mode: add D requests/s each step.")] = None,
    max_p99_ms: Annotated[float, typer.Option(help="Step mode: a step holds while p99 <= this.")] = 500.0,
    max_error_rate: Annotated[float, typer.Option(help="Step mode: ... and the error rate <= this.")] = 0.01,
    max_steps: Annotated[int, typer.Option(help="Step mode: at most this many steps.")] = 20,
    max_rate: Annotated[float | None, typer.Option(help="Step mode: never offer more than this.")] = None,
    min_requests: Annotated[int, typer.Option(help="Step mode: stretch a low-rate step to at least N requests.")]
    = 0,
    out: Annotated[Path | None, typer.Option(help="Directory for loadtest.json and the PNG plots.")] = None,
) -> None:
    """Open-loop load test: requests leave on a fixed schedule whatever the answers; latency is measured from
    each request's intended send time. A fixed rate (--rate) or the step mode (--step-start with --step-factor or
    --step-add) that finds the saturation point. The last line printed is one JSON object."""
    if ctx.invoked_subcommand is not None:
        return
    import shlex
    import sys

    from loadtest.openloop import LoadTestError, Target, check_url, default_query_files, load_workload
    from loadtest.runner import LoadTestConfig, run_loadtest
    from loadtest.steps import StepPlan

    if url is None:
        raise bad("the server's base URL is required, e.g. --url http://127.0.0.1:8000", "--url")
    if rate is not None and step_start is not None:
        raise bad("give either --rate (a fixed-rate run) or --step-start (step mode), not both", "--rate")
    if rate is None and step_start is None:
        raise bad("give --rate R for a fixed-rate run, or --step-start R0 for the step mode", "--rate")
    checks = [(rate is not None and rate <= 0, "--rate", f"must be > 0 requests/s, got {rate}"),
              (duration <= 0, "--duration", f"must be > 0 s, got {duration}"),
              (items < 1, "--items", f"must be >= 1, got {items}"),
              (concurrency < 1, "--concurrency", f"must be >= 1, got {concurrency}"),
              (timeout <= 0, "--timeout", f"must be > 0 s, got {timeout}"),
              (warmup < 0, "--warmup", f"must be >= 0, got {warmup}"),
              (catalog_limit is not None and catalog_limit < 1, "--catalog-limit", "must be >= 1")]
    for failed, option, message in checks:
        if failed:
            raise bad(message, option)
    if endpoint == EndpointChoice.explain:
        items = 1  # one (query, title) pair per explanation
    if path is not None and not path.startswith("/"):
        raise bad(f"a route starts with '/', got {path!r}", "--path")
    try:
        plan = None
        if step_start is not None:
            plan = StepPlan(start=step_start, factor=step_factor, add=step_add, max_p99_ms=max_p99_ms,
                            max_error_rate=max_error_rate, max_steps=max_steps, max_rate=max_rate,
                            duration=duration, min_requests=min_requests)
        check_url(url)
        headers = {"X-API-Key": api_key, "Authorization": f"Bearer {api_key}"} if api_key else {}
        target = Target(url.rstrip("/"), endpoint.value, mode.value, path, model, headers,  # type: ignore[arg-type]
                        explain_mode.value if explain_mode else None)
        workload = load_workload(queries or default_query_files(), catalog, catalogue_limit=catalog_limit, seed=seed)
        config = LoadTestConfig(target=target, items=items, duration=duration, rate=rate, plan=plan,
                                concurrency=concurrency, timeout_s=timeout, arrival=arrival.value,  # type: ignore[arg-type]
                                seed=seed, warmup=warmup)
        result = run_loadtest(config, workload, out=out, command=shlex.join(["relevance", *sys.argv[1:]]))
    except LoadTestError as exc:
        raise bad(str(exc), exc.option) from None
    print(json.dumps(result))


@loadtest_app.command("compare")
def compare(
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports/loadtest/compare"),
    work: Annotated[Path, typer.Option(help="Working directory: index, exports, peer environment, logs.")]
    = Path("work/loadtest"),
    targets: Annotated[list[str] | None, typer.Option(
        "--target", help="colbert-cached, colbert-titles, cross, infinity (repeat; default all).")] = None,
    items: Annotated[int, typer.Option(help="Items (candidates) per request.")] = 100,
    catalog: Annotated[Path, typer.Option(help="Catalogue TSV.")] = CATALOGUE,
    catalog_limit: Annotated[int, typer.Option(help="Products indexed and used as candidates.")] = 5000,
    cross_checkpoint: Annotated[Path | None, typer.Option(
        help="Cross-encoder checkpoint (default: work/*/best of family cross, else /tmp/cross-arch/best).")] = None,
    cross_precision: Annotated[str, typer.Option(help="ONNX precision of the cross-encoder (the shipped ColBERT's "
                                                     "is int8).")] = "int8",
    cross_threads: Annotated[int, typer.Option(help="ONNX Runtime threads of the cross-encoder server (0 = all).")]
    = 0,
    infinity: Annotated[Path | None, typer.Option(help="infinity_emb executable (default WORK/peer-venv/bin/"
                                                       "infinity_emb, made by `relevance loadtest setup-peer`).")]
    = None,
    step_factor: Annotated[float, typer.Option(help="Rate factor between steps.")] = 1.25,
    step_duration: Annotated[float, typer.Option(help="Seconds per step (at least --min-requests requests).")] = 8.0,
    min_requests: Annotated[int, typer.Option(help="Requests per step at least.")] = 12,
    max_p99_ms: Annotated[float, typer.Option(help="p99 bound of a step (ms), raised per target to "
                                                   "--p99-factor x its sequential latency.")] = 500.0,
    p99_factor: Annotated[float, typer.Option(help="A step holds while p99 <= this x the sequential latency "
                                                   "(or --max-p99-ms, the larger).")] = 4.0,
    start_fraction: Annotated[float, typer.Option(help="First step at this fraction of 1/(sequential latency).")]
    = 0.4,
    max_steps: Annotated[int, typer.Option(help="Steps per target at most.")] = 14,
    max_error_rate: Annotated[float, typer.Option(help="Error-rate bound of a step.")] = 0.01,
    fixed_duration: Annotated[float, typer.Option(help="Seconds of the common-load run.")] = 30.0,
) -> None:
    """Side by side on this machine: the ColBERT gateway (cached items, items from titles), the cross-encoder and
    infinity-emb, each started as a subprocess, stepped to saturation, then run at one common load. Writes
    OUT/compare.json, compare.md and the plots; the last line printed is the JSON summary."""
    import shlex
    import sys

    from loadtest.compare import TARGETS, CompareSettings, run_compare
    from loadtest.machine import machine_info
    from loadtest.openloop import LoadTestError, default_query_files, load_workload
    from loadtest.prepare import prepare
    from loadtest.runner import err_console

    chosen = targets or list(TARGETS)
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown:
        raise bad(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}", "--target")
    if items < 1:
        raise bad(f"must be >= 1, got {items}", "--items")
    console = err_console()
    machine = machine_info()  # before anything of ours runs: the load average says whether the cores are shared
    console.print(f"machine: {machine}", highlight=False)
    settings = CompareSettings(items=items, catalog_limit=catalog_limit, step_factor=step_factor,
                               step_duration=step_duration, min_requests=min_requests, max_p99_ms=max_p99_ms,
                               max_error_rate=max_error_rate, fixed_duration=fixed_duration,
                               cross_threads=cross_threads, p99_factor=p99_factor, start_fraction=start_fraction,
                               max_steps=max_steps)
    try:
        _check_steps(step_factor, max_p99_ms, max_error_rate)
        prepared = prepare(work.resolve(), catalog=catalog, catalog_limit=catalog_limit,
                           cross_checkpoint=cross_checkpoint, precision=cross_precision, infinity=infinity,
                           want_peer="infinity" in chosen, console=console)
        workload = load_workload(default_query_files(), catalog, catalogue_limit=catalog_limit)
        summary = run_compare([t for t in TARGETS if t in chosen], prepared, workload, settings, out, console,
                              shlex.join(["relevance", *sys.argv[1:]]), machine)
    except LoadTestError as exc:
        raise bad(str(exc), exc.option) from None
    print(json.dumps({"out": str(out), "common_fixed_rps": summary["common_fixed_rps"], "ratios": summary["ratios"],
                      "saturation_pairs_per_s": {k: v["step"]["saturation_pairs_per_s"]
                                                 for k, v in summary["targets"].items()},
                      "p99_at_half_saturation_ms": {k: v["step"]["p99_at_half_saturation_ms"]
                                                    for k, v in summary["targets"].items()},
                      "machine_shared": summary["machine_shared"]}))


def _check_steps(factor: float, max_p99_ms: float, max_error_rate: float) -> None:
    """Fail early (exit 2) on a step setting that :class:`loadtest.steps.StepPlan` would refuse."""
    from loadtest.steps import StepPlan

    StepPlan(start=1.0, factor=factor, max_p99_ms=max_p99_ms, max_error_rate=max_error_rate)


@loadtest_app.command("setup-peer")
def setup_peer(
    venv: Annotated[Path, typer.Option(help="Virtual environment to create.")] = Path("work/loadtest/peer-venv"),
) -> None:
    """Create the peer server's own virtual environment (infinity-emb from loadtest/peer-requirements.txt, torch
    2.13.0 CPU); infinity-emb's pins conflict with the project's, so it cannot live in .venv."""
    from loadtest.prepare import setup_peer as make
    from loadtest.runner import err_console

    binary = make(venv, err_console())
    print(json.dumps({"infinity_emb": str(binary)}))
