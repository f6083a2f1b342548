"""Provenance of training and export records: the sha256 of the data files and the git commit of the code."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from relevance_core.paths import REPO_ROOT


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes (data provenance in training records), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
