"""The layering contracts of pyproject.toml ([tool.importlinter]) hold for the tree, and they fail on a forbidden
import: the same check run on a copy of the packages with one gateway module importing the training side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from relevance_core.paths import REPO_ROOT

PACKAGES = ("relevance", "relevance_core", "mkd", "service", "export", "loadtest")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_tree_keeps_the_contracts() -> None:
    done = _lint(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.gguf", "*.onnx",
                        "*.safetensors", "__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _lint(tmp_path).returncode == 0
    (tmp_path / "service" / "leak.py").write_text("from mkd.bm25 import BM25Index\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "service (the gateway) imports neither the training side nor torch BROKEN" in done.stdout
    assert "service.leak -> mkd.bm25" in done.stdout
    (tmp_path / "service" / "leak.py").unlink()
    # the cycle the committee once had: the committee builds its members through the model loader that loads it
    committee = tmp_path / "mkd" / "committee" / "committee.py"
    committee.write_text(committee.read_text() + "\nfrom mkd.scorers import load_scorer  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "no import cycles between sibling modules or packages" in done.stdout and "BROKEN" in done.stdout


def test_relevance_serve_needs_only_the_serving_packages() -> None:
    """The serving image copies relevance, relevance_core and service: with the offline packages absent the CLI
    still starts and offers ``serve``, and the gateway's modules import."""
    code = ("import sys\n"
            "for name in ('mkd', 'export', 'loadtest'): sys.modules[name] = None  # absent, as in the image\n"
            "from typer.testing import CliRunner\n"
            "from relevance.cli import app\n"
            "import service.app, service.grpc.server, service.cli\n"
            "result = CliRunner().invoke(app, ['--help'])\n"
            "assert result.exit_code == 0, result.output\n"
            "assert 'serve' in result.output and 'train' not in result.output, result.output\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
