"""The documents stay true to the tree: every repository path and project module they name exists, the README
stays a guide (at most 400 lines), and nothing in the repository points at work logs (``runs/`` folders, issue
numbers) that a clone does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from relevance_core.paths import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
TOP = ("relevance_core", "relevance", "service", "mkd", "export", "loadtest", "tests", "helm", "docs", "data",
       "teachers", "model_repository", "reports", "scripts", ".ci")
PATH = re.compile("`((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./-]*)`")
MODULE = re.compile(r"`((?:relevance_core|service|mkd|export|loadtest)(?:\.\w+)+)`")
# produced by commands (`relevance data prepare`, an index, a report run), not committed
GENERATED = ("data/derived", "data/index", "reports/gateway-bench/redis", "reports/loadtest/run",
             "reports/loadtest/steps")


def _exists(path: str) -> bool:
    path = path.rstrip("/.")
    if any(path.startswith(g) for g in GENERATED) or "*" in path or "<" in path:
        return True
    return (REPO_ROOT / path).exists()


def _module_exists(name: str) -> bool:
    """``a.b.c`` names a module or package, or an attribute of one (``mkd.committee.committee.Member``)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO_ROOT.joinpath(*parts[:cut])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_and_module_a_document_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = sorted({p for p in PATH.findall(text) if not _exists(p)})
    missing += sorted({m for m in MODULE.findall(text) if not _module_exists(m)})
    assert not missing, f"{doc.name} names what the tree does not have: {missing}"


def test_the_readme_is_a_guide() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; the detail belongs in docs/"
    text = "\n".join(lines)
    for section in ("Quick start", "API", "Settings"):
        assert re.search(rf"^#+ .*{section}", text, flags=re.MULTILINE | re.IGNORECASE), section


def test_nothing_points_at_work_logs() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    pattern = re.compile(r"(?<![\w/.-])runs/[\w-]|\bissue ?#?\d+\b|\bissues? \d+\b", re.IGNORECASE)
    offenders = []
    for name in tracked:
        if not name.endswith((".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg")) or name.startswith(
                "tests/docs/"):
            continue
        for number, line in enumerate((REPO_ROOT / name).read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
