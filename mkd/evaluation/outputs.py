"""What the per-pair evaluation reports share (the teacher's explanations, the decision explanations' faithfulness):
the files they write and how they print a figure."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure for a Markdown table ("n/a" when undefined)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def figure_rows(rows: int) -> tuple[Any, Any]:
    """A figure of ``rows`` rows of two panels (one row per endpoint or writer), on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)


def save_figure(fig: Any, path: Path) -> Path:
    """Grid every panel, lay out, write ``path`` and close the figure."""
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, rows: Mapping[str, Sequence[Any]], meta: dict[str, Any], key: str, *,
                 summarise: Callable[[Sequence[Any]], dict[str, Any]], markdown: Callable[[dict[str, Any]], str],
                 plot: Callable[[Path, Mapping[str, Sequence[Any]]], Path]) -> dict[str, Any]:
    """``results.jsonl`` (each row, a dataclass, per line), ``report.json`` (``meta`` with ``key``: each name's
    summary), ``report.md`` and the plot; returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("w") as handle:
        for named in rows.values():
            for row in named:
                handle.write(json.dumps(asdict(row)) + "\n")
    report = meta | {key: {name: summarise(named) for name, named in rows.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(out, rows)
    return report
