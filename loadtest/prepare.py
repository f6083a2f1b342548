"""What the side-by-side comparison needs before it measures: the indexed catalogue subset, the cross-encoder
exported twice (ONNX model repository for our stack, a Hugging Face folder for the peer) and the peer's own
virtual environment; each step is skipped when its output exists."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from loadtest.openloop import LoadTestError
from relevance_core.paths import REPO_ROOT

PEER_REQUIREMENTS = Path(__file__).resolve().parent / "peer-requirements.txt"


def run_step(argv: list[str], console: Console, env: dict[str, str] | None = None) -> str:
    """Run one preparation command from the repository root (echoed); its last stdout line, or RuntimeError."""
    console.print(f"$ {shlex.join(argv)}", highlight=False)
    done = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with code {done.returncode}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def find_cross_checkpoint(explicit: Path | None) -> Path:
    """``explicit``, else a trained cross-encoder under work/ (``*/best/student.json`` of family cross), else the
    throwaway /tmp/cross-arch/best (``relevance train --student cross --max-steps 3 --out /tmp/cross-arch``)."""
    candidates = [explicit] if explicit is not None else [
        *sorted((REPO_ROOT / "work").glob("*/best")), Path("/tmp/cross-arch/best")]
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
    run_step([python, "-m", "venv", str(venv)], console)
    run_step([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(PEER_REQUIREMENTS)], console)
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
    run_step([*relevance, "index", "--catalog", str(catalog), "--limit", str(catalog_limit), "--store-dir",
          str(store_dir)], console, env={"HF_HUB_OFFLINE": "1"})
    checkpoint = find_cross_checkpoint(cross_checkpoint)
    repository = work / "cross-repository"
    if not (repository / "cross" / "1" / "model.onnx").is_file():
        run_step([*relevance, "export", "triton", "--checkpoint", str(checkpoint), "--repository", str(repository),
              "--version", "1", "--precision", "fp32", "--force"], console, env={"HF_HUB_OFFLINE": "1"})
    if precision == "int8" and not (repository / "cross" / "2" / "model.onnx").is_file():
        run_step([*relevance, "export", "triton", "--checkpoint", str(checkpoint), "--repository", str(repository),
              "--version", "2", "--precision", "int8", "--force"], console, env={"HF_HUB_OFFLINE": "1"})
    hf_folder = work / "cross-hf"
    if not (hf_folder / "hf_cross.json").is_file():
        run_step([sys.executable, "-m", "loadtest.hf_cross", "--checkpoint", str(checkpoint), "--out", str(hf_folder)],
             console, env={"HF_HUB_OFFLINE": "1"})
    hf_record = json.loads((hf_folder / "hf_cross.json").read_text())
    binary = None
    if want_peer:
        binary = infinity or (work / "peer-venv" / "bin" / "infinity_emb")
        if not binary.is_file():
            raise LoadTestError(f"{binary} does not exist: run `relevance loadtest setup-peer` (its own virtual "
                                "environment: infinity-emb's pins conflict with the project's)", "--infinity")
    return Prepared(store_dir, checkpoint, repository, hf_folder, binary, hf_record)
