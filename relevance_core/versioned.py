"""Versioned JSON records (``student.json``, ``serving.json``): a dataclass written with a ``format_version``,
read back strictly (the version must match, unknown fields are refused, the fields must fit the class)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def read_json(path: Path, error: type[Exception]) -> Any:
    """The JSON value in ``path``; a missing or malformed file raises ``error`` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def load_versioned(cls: type[T], path: Path, version: int, error: type[Exception] = ValueError) -> T:
    """An instance of the dataclass ``cls`` from the JSON object in ``path``, whose ``format_version`` must be
    ``version``; every problem raises ``error`` with a message that starts with the path."""
    data = read_json(path, error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    if data.get("format_version") != version:
        raise error(f"{path}: unsupported format_version {data.get('format_version')!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{path}: unknown field(s) {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise error(f"{path}: {exc}") from None
