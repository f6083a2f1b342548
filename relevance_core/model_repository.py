"""Reading the Triton-layout model repository that ``relevance export triton`` writes (torch-free).

Layout, one Triton model per exported student::

    model_repository/
      colbert/                     # Triton model name
        config.pbtxt               # Triton ModelConfig (onnxruntime_onnx platform)
        1/                         # version 1
          model.onnx               # the encoder graph (int8, fp16 or fp32)
          serving.json             # what the gateway needs besides the graph (see ServingMeta)
          tokenizer.json           # the student's tokenizer (Hugging Face `tokenizers` format)
          MODEL_CARD.md
        2/ ...

Triton reads ``config.pbtxt`` and ``<version>/model.onnx`` and ignores the other files; the gateway and
``relevance evaluate --model model_repository [--version N]`` read all of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from relevance_core.calibration import CalibrationMap
from relevance_core.versioned import load_versioned

CONFIG_FILE = "config.pbtxt"
ONNX_FILE = "model.onnx"
SERVING_FILE = "serving.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
SERVING_FORMAT_VERSION = 1
DEFAULT_MODEL = "colbert"

Precision = Literal["fp32", "fp16", "int8"]


class ModelRepositoryError(ValueError):
    """The repository, model or version asked for is missing or malformed."""


@dataclass(frozen=True)
class ServingMeta:
    """Everything besides the ONNX graph that turns text into a calibrated p(Good), per model version.

    Two-tower (``colbert``) layout per side: ``[CLS] [marker] tokens… [SEP]`` within ``query_len`` /
    ``title_len`` tokens; item tokens whose id is in ``skip_token_ids`` take no part in MaxSim.
    p0 = sigmoid(``calibration_scale`` · s + ``calibration_bias``), s the MaxSim score averaged over the
    query tokens. The cross-encoder (``cross``) takes ``[CLS] query [SEP] title [SEP]`` within ``pair_len``
    (longest first) and its graph outputs the logit of Good directly: p0 = sigmoid(logit). With
    ``calibration_map`` (`relevance_core.calibration`, fitted on held-out pairs), p(Good) is that map of p0.
    """

    family: Literal["colbert", "cross"]
    precision: Precision
    query_len: int
    title_len: int
    pair_len: int
    dim: int
    cls_id: int
    sep_id: int
    pad_id: int
    query_marker_id: int | None = None
    item_marker_id: int | None = None
    skip_token_ids: list[int] = field(default_factory=list)
    calibration_scale: float = 1.0
    calibration_bias: float = 0.0
    calibration_map: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    format_version: int = SERVING_FORMAT_VERSION

    def save(self, directory: Path) -> Path:
        path = directory / SERVING_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> ServingMeta:
        meta = load_versioned(cls, path, SERVING_FORMAT_VERSION, ModelRepositoryError)
        try:
            meta.probability_map()
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelRepositoryError(f"{path}: field 'calibration_map': {exc}") from None
        return meta

    def probability_map(self) -> CalibrationMap | None:
        """The calibration map of p0, if the version has one."""
        return None if self.calibration_map is None else CalibrationMap.from_dict(self.calibration_map)


@dataclass(frozen=True)
class ModelVersion:
    """One servable version: ``<repository>/<name>/<version>/``."""

    name: str
    version: int
    directory: Path
    meta: ServingMeta

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER_FILE

    @property
    def config_path(self) -> Path:
        return self.directory.parent / CONFIG_FILE

    def uncalibrated(self) -> ModelVersion:
        """This version without its calibration map: the model's own probability p0 (what a map is fitted on, and
        what a committee combines: its combiner is a calibration of its own)."""
        return replace(self, meta=replace(self.meta, calibration_map=None))

    @property
    def label(self) -> str:
        """``name:version``, the model version reported by the gateway and used in store keys."""
        return f"{self.name}:{self.version}"


def list_versions(model_dir: Path) -> list[int]:
    """The numeric version directories of a model directory, ascending."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _model_dir(repository: Path, model: str | None) -> Path:
    if (repository / CONFIG_FILE).is_file():  # a model directory was given
        if model is not None and model != repository.name:
            raise ModelRepositoryError(f"{repository} is the model {repository.name!r}, not {model!r}")
        return repository
    name = model or DEFAULT_MODEL
    candidate = repository / name
    if not (candidate / CONFIG_FILE).is_file():
        present = sorted(p.name for p in repository.iterdir() if (p / CONFIG_FILE).is_file()) \
            if repository.is_dir() else []
        raise ModelRepositoryError(
            f"{repository}: no model {name!r} (no {name}/{CONFIG_FILE}); models present: {present or 'none'}")
    return candidate


def resolve_model(repository: str | os.PathLike[str], *, model: str | None = None, version: int | None = None,
                  ) -> ModelVersion:
    """The model version to serve: ``model`` (default ``colbert``) in ``repository`` (a repository root or a
    model directory), ``version`` or else the highest one present."""
    root = Path(repository)
    if not root.is_dir():
        raise ModelRepositoryError(f"model repository {str(root)!r} is not a directory")
    model_dir = _model_dir(root, model)
    versions = list_versions(model_dir)
    if not versions:
        raise ModelRepositoryError(f"{model_dir}: no version directories")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ModelRepositoryError(f"{model_dir}: no version {chosen}; versions present: {versions}")
    return load_version_directory(model_dir / str(chosen), name=model_dir.name, version=chosen)


def load_version_directory(directory: str | os.PathLike[str], *, name: str | None = None, version: int = 0,
                           ) -> ModelVersion:
    """One version directory (``model.onnx``, ``serving.json``, ``tokenizer.json``), also outside a repository
    (``relevance export onnx`` writes one per precision)."""
    path = Path(directory)
    for required in (ONNX_FILE, SERVING_FILE, TOKENIZER_FILE):
        if not (path / required).is_file():
            raise ModelRepositoryError(f"{path}: missing {required}")
    return ModelVersion(name or path.name, version, path, ServingMeta.load(path / SERVING_FILE))


def is_model_repository(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` looks like a repository root or a model directory (a ``config.pbtxt`` is found)."""
    root = Path(path)
    if (root / CONFIG_FILE).is_file():
        return True
    return root.is_dir() and any((p / CONFIG_FILE).is_file() for p in root.iterdir() if p.is_dir())
