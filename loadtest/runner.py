"""One load test from start to end: warm-up, a fixed-rate run or the step mode, the rich table and progress bar,
and the outputs (``loadtest.json`` and the PNG plots)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from loadtest.openloop import (
    Arrival,
    RunRecord,
    Target,
    Workload,
    run_open_loop,
    summarise,
    warm_up,
)
from loadtest.plots import latency_cdf, latency_over_time, step_curves
from loadtest.steps import StepPlan, run_steps


@dataclass(frozen=True)
class LoadTestConfig:
    """A fixed-rate run (``rate``) or, with ``plan``, the step mode; ``duration`` is per run (per step)."""

    target: Target
    items: int
    duration: float
    rate: float | None = None
    plan: StepPlan | None = None
    concurrency: int = 256
    timeout_s: float = 10.0
    arrival: Arrival = "constant"
    seed: int = 0
    warmup: int = 5
    label: str = ""

    def describe(self) -> str:
        t = self.target
        what = f"{t.endpoint} {t.mode}" if t.endpoint == "score" else t.endpoint
        return f"{self.label + ': ' if self.label else ''}POST {t.address} ({what}, {self.items} items/request)"


def err_console() -> Console:
    """The console on stderr; wide when stderr is not a terminal (logs), so that the tables stay readable."""
    return Console(stderr=True, width=None if sys.stderr.isatty() else 180)


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console, transient=True)
    with progress:
        yield progress


class _Session:
    """Runs one after another against one target, numbering requests so that no query repeats between runs."""

    def __init__(self, config: LoadTestConfig, workload: Workload, progress: Progress | None) -> None:
        self.config = config
        self.workload = workload
        self.progress = progress
        self.next_request = 0
        self.runs: list[tuple[str, RunRecord, dict[str, Any]]] = []
        self.stamp = f"{int(time.time())}"

    def run(self, rate: float, duration: float, label: str) -> dict[str, Any]:
        c = self.config
        task = None
        if self.progress is not None:
            n = max(1, round(rate * duration))
            task = self.progress.add_task(f"{label} {rate:.3g} req/s", total=n, status="")

        def update(done: int, errors: int, in_flight: int) -> None:
            if self.progress is not None and task is not None:
                self.progress.update(task, completed=done, status=f"err {errors}  in flight {in_flight}")

        record = run_open_loop(c.target, self.workload, rate=rate, duration=duration, items=c.items,
                               concurrency=c.concurrency, timeout_s=c.timeout_s, arrival=c.arrival,
                               seed=c.seed + len(self.runs), first_request=self.next_request,
                               run_id=f"{self.stamp}-{len(self.runs)}", progress=update)
        if self.progress is not None and task is not None:
            self.progress.remove_task(task)
        self.next_request += len(record.outcome)
        summary = {"label": label, **summarise(record)}
        self.runs.append((label, record, summary))
        return summary


def results_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("run", "offered req/s", "achieved req/s", "pairs/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
                   "errors", "timeouts", "late", "dropped", "send lag p99 ms", "held"):
        table.add_column(column, justify="right")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    for r in rows:
        held = r.get("held")
        table.add_row(str(r.get("label", "")), f"{r['offered_rps']:.3g}", f"{r['achieved_rps']:.3g}",
                      f"{r['achieved_pairs_per_s']:.0f}", ms(r["p50_ms"]), ms(r["p90_ms"]), ms(r["p99_ms"]),
                      ms(r["p99_9_ms"]), str(r["errors"]), str(r["timeouts"]), str(r["late_sends"]),
                      str(r["dropped"]), ms(r["send_lag_p99_ms"]),
                      "" if held is None else ("yes" if held else f"no: {r.get('reason', '')}"))
    return table


def run_loadtest(config: LoadTestConfig, workload: Workload, *, out: Path | None = None,
                 console: Console | None = None, command: str | None = None) -> dict[str, Any]:
    """Warm up, run (fixed rate or steps), print the table, write ``OUT/loadtest.json`` and the plots. Returns the
    JSON-able result: ``run`` (fixed rate) or ``step`` (step mode), with the settings."""
    console = console or err_console()
    if (config.rate is None) == (config.plan is None):
        raise ValueError("a load test is either a fixed rate or a step plan")
    if config.warmup:
        warm_up(config.target, workload, requests=config.warmup, items=config.items)
    result: dict[str, Any] = {
        "target": config.target.address, "endpoint": config.target.endpoint,
        "mode": config.target.mode if config.target.endpoint == "score" else config.target.endpoint,
        "items": config.items, "concurrency": config.concurrency, "arrival": config.arrival,
        "timeout_s": config.timeout_s, "warmup_requests": config.warmup, "label": config.label,
    }
    if command:
        result["command"] = command
    with _progress(console) as progress:
        session = _Session(config, workload, progress)
        if config.plan is not None:
            plan = config.plan

            def step(rate: float, index: int) -> dict[str, Any]:
                label = "half" if index < 0 else f"step {index}"
                return session.run(rate, plan.step_duration(rate), label)

            def show(step_result: dict[str, Any]) -> None:
                verdict = "held" if step_result["held"] else f"broke the bound ({step_result['reason']})"
                console.print(f"  {step_result['label']}: {step_result['offered_rps']:.4g} req/s, p99 "
                              f"{step_result['p99_ms']} ms, errors {step_result['errors']}: {verdict}",
                              highlight=False)

            result["step"] = run_steps(plan, step, on_step=show)
        else:
            assert config.rate is not None
            result["run"] = session.run(config.rate, config.duration, "fixed")
    rows = ([*result["step"]["steps"], *([result["step"]["half"]] if result["step"]["half"] else [])]
            if "step" in result else [result["run"]])
    console.print(results_table(config.describe(), rows))
    if "step" in result:
        s = result["step"]
        console.print(f"saturation: {s['saturation_rps']} req/s ({s['saturation_pairs_per_s']} pairs/s); p99 at half "
                      f"of it: {s['p99_at_half_saturation_ms']} ms; stopped: {s['stopped_because']}", highlight=False)
    if out is not None:
        result["files"] = write_outputs(result, session.runs, out, config.describe())
    return result


def write_outputs(result: dict[str, Any], runs: list[tuple[str, RunRecord, dict[str, Any]]], out: Path,
                  title: str) -> list[str]:
    """``loadtest.json``, ``latency_over_time.png``, ``latency_cdf.png`` and in step mode ``steps.png``."""
    out.mkdir(parents=True, exist_ok=True)
    files = [latency_over_time(runs, out / "latency_over_time.png", title),
             latency_cdf([(label, record) for label, record, _ in runs], out / "latency_cdf.png", title)]
    if "step" in result:
        files.append(step_curves(result["step"], out / "steps.png", title))
    names = ["loadtest.json", *(p.name for p in files)]
    (out / "loadtest.json").write_text(json.dumps({**result, "files": names}, indent=2) + "\n", encoding="utf-8")
    return names
