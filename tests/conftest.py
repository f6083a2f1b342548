from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEADER = "id\tquery\tproduct_uid\tproduct_title\trelevance\n"


@pytest.fixture
def write_tsv(tmp_path: Path) -> Callable[..., Path]:
    """Write a TSV file from a header line and rows; returns its path."""

    def _write(rows: list[str], header: str = HEADER, name: str = "pairs.tsv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes((header + "".join(r + "\n" for r in rows)).encode(encoding))
        return path

    return _write


@pytest.fixture(scope="session")
def vendored_pairs() -> Path:
    return REPO / "data" / "homedepot" / "pairs.tsv"
