"""The JSONL files of the offline flow (annotations, teacher files): one reader that names the file and the line
of a bad row, and the resume rule of the runs that append to them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from relevance_core.data import Pair


def read_jsonl(path: Path, error: type[Exception]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each JSON object of ``path``, ``where`` being ``path:line`` for messages; blank lines
    are skipped. A missing file, a line that is not JSON or not an object raise ``error``."""
    if not path.is_file():
        raise error(f"{path}: no such file")
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{where}: expected a JSON object")
            yield where, row


def pending_pairs(pairs: Sequence[Pair], out: Path) -> list[Pair]:
    """The pairs of ``pairs`` that the JSONL ``out`` (an annotation or teacher file being appended to) does not
    hold yet: what a resumed run still has to do."""
    done = set()
    if out.is_file():
        done = {(row["query"], row["product_title"]) for _, row in read_jsonl(out, ValueError)}
    return [p for p in pairs if (p.query, p.product_title) not in done]
