"""Where the repository is (the default locations of data, model repository, runs and reports hang off it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
