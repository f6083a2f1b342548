"""Fixtures of the load-type fault scenarios (`make test-faults`): the shipped ColBERT behind real `relevance serve`
processes, items indexed by `relevance index`, load from `relevance loadtest` (subprocesses, as an operator runs
them), and the report under reports/faults/ that every scenario adds its measured figures to."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relevance_core.data import build_catalogue, default_pairs_path, load_pairs, write_catalogue
from tests.conftest import REPO

REPORT_DIR = REPO / "reports" / "faults"
SHIPPED = REPO / "model_repository"
ITEMS = 1000  # products indexed (the catalogue's first ones; the load test's --catalog-limit)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def relevance(*args: str, timeout_s: float = 600) -> str:
    """Run the CLI; its stdout (raises with stderr on failure)."""
    result = subprocess.run([sys.executable, "-m", "relevance.cli", *args], capture_output=True, text=True,
                            env=ENV, cwd=REPO, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"relevance {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue of the vendored pairs (what `relevance data prepare` writes), first ITEMS products used."""
    path = tmp_path_factory.mktemp("data") / "catalogue.tsv"
    write_catalogue(path, build_catalogue(load_pairs(default_pairs_path())))
    return path


def index(catalogue: Path, *, store_dir: Path | None = None, redis: str | None = None, version: int | None = None,
          repository: Path = SHIPPED, limit: int = ITEMS) -> dict[str, Any]:
    """`relevance index` of the catalogue's first ``limit`` products (it activates the version at the end)."""
    args = ["index", "--catalog", str(catalogue), "--limit", str(limit), "--model-repository", str(repository)]
    args += ["--redis", redis] if redis else ["--store-dir", str(store_dir)]
    if version is not None:
        args += ["--version", str(version)]
    return last_json(relevance(*args))


@pytest.fixture(scope="session")
def store_dir(catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local index of the first ITEMS products, built by `relevance index` with the shipped model."""
    root = tmp_path_factory.mktemp("index")
    index(catalogue, store_dir=root)
    return root


def loadtest(url: str, catalogue: Path, out: Path, *args: str) -> dict[str, Any]:
    """`relevance loadtest` against ``url`` (100 stored items a request; ``args`` may override --catalog-limit);
    its JSON result."""
    output = relevance("loadtest", "--url", url, "--catalog", str(catalogue), "--catalog-limit", str(ITEMS),
                       "--queries", str(default_pairs_path()), "--out", str(out), *args)
    return last_json(output)


class Report:
    """Scenario results, written to reports/faults/report.json and report.md at the end of the session."""

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def add(self, name: str, **figures: Any) -> None:
        self.scenarios[name] = figures

    def write(self) -> None:
        if not self.scenarios:
            return
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        previous: dict[str, Any] = {}
        path = REPORT_DIR / "report.json"
        if path.is_file():  # a run of some scenarios (-k) keeps the others' last figures
            previous = json.loads(path.read_text()).get("scenarios", {})
        merged = {**{k: v for k, v in previous.items() if k != "Overload at 2x saturation"}, **self.scenarios}
        meta = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": f"{platform.machine()}, "
                f"{os.cpu_count()} CPUs", "python": platform.python_version(), "command": "make test-faults"}
        path.write_text(json.dumps({**meta, "scenarios": merged}, indent=2) + "\n", encoding="utf-8")
        lines = ["# Fault scenarios", "", f"`{meta['command']}` on {meta['machine']}, last written "
                 f"{meta['generated']}; each scenario's figures are from its latest run (tests/faults; a run of some "
                 "scenarios keeps the others'). Load comes from `relevance loadtest` (100 stored items per request, "
                 f"{ITEMS} indexed products, the shipped int8 ColBERT).", ""]
        for name, figures in merged.items():
            lines += [f"## {name}", "", figures.get("what", ""), "", "| figure | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in figures.items() if k != "what"]
            lines.append("")
        for plot in sorted(REPORT_DIR.glob("overload_*_latency_over_time.png")):
            lines += [f"![latency over time at 2x saturation]({plot.name})", ""]
        (REPORT_DIR / "report.md").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    collected = Report()
    yield collected
    collected.write()
