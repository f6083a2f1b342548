"""PNG plots of a load test (matplotlib, Agg): latency over time with the quantiles, the latency CDF, and in
step mode the p50/p99 and achieved throughput against the offered load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.openloop import QUANTILE_KEYS, QUANTILES, RunRecord

QUANTILE_STYLES = {50.0: ":", 90.0: "-.", 99.0: "--", 99.9: "-"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain_log_ticks(*axes: Any) -> None:
    """Log-scale axes labelled 20, 50, 100 rather than 2x10^1."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:,.4g}")
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(formatter)
                axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def latency_over_time(runs: Sequence[tuple[str, RunRecord, dict[str, Any]]], path: Path, title: str) -> Path:
    """Each request's latency (from its intended send time) at its intended send time; runs follow one another
    on the time axis, each with its quantiles drawn over its span; failed requests as red crosses on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(runs))))
    offset = 0.0
    top = 1.0
    for (label, record, summary), colour in zip(runs, colours, strict=True):
        ok = record.ok
        ms = record.latency * 1000.0
        x = record.intended + offset
        ax.scatter(x[ok], ms[ok], s=3 if ok.sum() > 300 else 9, color=colour, alpha=0.5, label=label, rasterized=True)
        if ok.any():
            top = max(top, float(np.nanmax(ms[ok])))
        span = max(summary["window_s"], record.duration)
        for q in QUANTILES:
            value = summary.get(QUANTILE_KEYS[q])
            if value is not None:
                ax.hlines(value, offset, offset + span, colors=[colour], linestyles=QUANTILE_STYLES[q], linewidth=1.2)
        offset += span
    offset = 0.0
    for _, record, summary in runs:
        bad = ~record.ok
        if bad.any():
            ax.scatter(record.intended[bad] + offset, np.full(int(bad.sum()), top * 1.15), marker="x", s=12,
                       color="red", label=None)
        offset += max(summary["window_s"], record.duration)
    handles = [plt.Line2D([], [], color="black", linestyle=QUANTILE_STYLES[q], label=f"p{q:g}") for q in QUANTILES]
    handles.append(plt.Line2D([], [], color="red", marker="x", linestyle="", label="error / timeout / dropped"))
    first = ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.add_artist(first)
    if len(runs) <= 12:
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel("intended send time (s)")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(runs: Sequence[tuple[str, RunRecord]], path: Path, title: str) -> Path:
    """Empirical CDF of the successful requests' latency, one curve per run (log latency axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len(runs))))
    for (label, record), colour in zip(runs, colours, strict=True):
        ms = np.sort(record.latency[record.ok] * 1000.0)
        if ms.size:
            ax.plot(ms, np.arange(1, ms.size + 1) / ms.size, color=colour, label=label)
    for q in QUANTILES:
        ax.axhline(q / 100.0, color="grey", linestyle=QUANTILE_STYLES[q], linewidth=0.8)
    ax.set_xscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel("latency from intended send (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def step_curves(result: dict[str, Any], path: Path, title: str) -> Path:
    """Step mode: p50 and p99 against the offered rate (with the bound), and achieved against offered rate."""
    plt = _pyplot()
    steps = result["steps"]
    offered = np.array([s["offered_rps"] for s in steps])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
        values = np.array([np.nan if s[key] is None else s[key] for s in steps], dtype=float)
        left.plot(offered, values, style, label=key.removesuffix("_ms"))
    left.axhline(result["plan"]["max_p99_ms"], color="red", linestyle="--", linewidth=1, label="p99 bound")
    right.plot(offered, [s["achieved_rps"] for s in steps], "o-", label="achieved")
    right.plot(offered, offered, color="grey", linestyle=":", label="offered")
    saturation = result.get("saturation_rps")
    for ax in (left, right):
        if saturation is not None:
            ax.axvline(saturation, color="green", linestyle="--", linewidth=1, label=f"saturation {saturation:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("offered load (requests/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    half = result.get("half")
    if half is not None and half.get("p99_ms") is not None:
        left.plot([half["offered_rps"]], [half["p99_ms"]], "*", color="green", markersize=12,
                  label="p99 at half saturation")
        left.legend(fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("latency from intended send (ms)")
    right.set_yscale("log")
    right.set_ylabel("successful requests/s")
    plain_log_ticks(left, right)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
