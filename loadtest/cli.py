"""``relevance bench``: the gateway's closed-loop latency benchmark (see :mod:`loadtest.bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mkd.data import default_pairs_path, derived_dir

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
    from loadtest.bench import load_workload, run_bench

    bad = sorted(set(mode) - {"cached", "uncached"})
    if bad:
        raise typer.BadParameter(f"unknown mode(s) {bad}; use cached and/or uncached", param_hint="--mode")
    results = run_bench(url.rstrip("/"), load_workload(pairs, catalog), modes=mode, concurrency=concurrency,
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
