"""The comparison's report: the table (console and Markdown), ``compare.json``, ``compare.md`` and the two plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


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
