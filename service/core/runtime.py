"""The exported students as torch-free runtime models: text → token embeddings → calibrated p(Good) for the
ColBERT student, text pairs → p(Good) for the cross-encoder. Used by the gateway and by
``relevance evaluate --model model_repository``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from relevance_core.model_repository import ModelRepositoryError, ModelVersion, resolve_model
from service.backends import Backend
from service.core.maxsim import calibrate, maxsim, sigmoid
from service.core.tokenization import Encoded, Side, StudentTokenizer
from service.store import ItemTokens, unpad_items

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TokenEmbeddings:
    """A padded batch of token embeddings: ``vectors`` (B, L, dim) float32 (zero at padding), ``mask`` (B, L)
    bool of the tokens that take part in MaxSim, ``input_ids`` (B, L) int64."""

    vectors: np.ndarray
    mask: np.ndarray
    input_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _chunks(n: int, size: int) -> range:
    return range(0, n, size)


class ColBERTModel:
    """The late-interaction student: separate query and item encoding, MaxSim and calibration."""

    def __init__(self, version: ModelVersion, backend: Backend) -> None:
        if version.meta.family != "colbert":
            raise ModelRepositoryError(f"{version.directory}: a {version.meta.family!r} model, not colbert")
        self.version = version
        self.meta = version.meta
        self.backend = backend
        self.tokenizer = StudentTokenizer(version.tokenizer_path, version.meta)
        self._skip = np.array(sorted(self.meta.skip_token_ids), dtype=np.int64)
        self._map = version.meta.probability_map()

    def _encode(self, texts: Sequence[str], side: Side) -> TokenEmbeddings:
        return self.embed(self.tokenizer.encode_side(texts, side), side)

    def embed(self, encoded: Encoded, side: Side) -> TokenEmbeddings:
        """Token embeddings of an already tokenized side (the gateway times tokenization on its own)."""
        vectors = self.backend.run(encoded.feed(self.backend.input_names)).astype(np.float32, copy=False)
        mask = encoded.attention_mask.astype(bool)
        if side == "item" and self._skip.size:
            mask &= ~np.isin(encoded.input_ids, self._skip)
        return TokenEmbeddings(vectors, mask, encoded.input_ids)

    def encode_queries(self, texts: Sequence[str]) -> TokenEmbeddings:
        return self._encode(texts, "query")

    def encode_items(self, titles: Sequence[str]) -> TokenEmbeddings:
        return self._encode(titles, "item")

    def item_tokens(self, titles: Sequence[str]) -> list[ItemTokens]:
        """Each title's token embeddings trimmed to its real tokens, as the item store keeps them."""
        batch = self.encode_items(titles)
        return unpad_items(batch.vectors, batch.mask, batch.input_ids, self.meta.pad_id)

    def probability(self, similarity: np.ndarray) -> np.ndarray:
        p0 = calibrate(similarity, self.meta.calibration_scale, self.meta.calibration_bias)
        return p0 if self._map is None else self._map(p0)

    def score_pairs(self, queries: Sequence[str], titles: Sequence[str], *, batch_size: int = 128,
                    progress: Progress | None = None) -> np.ndarray:
        """p(Good) per (query, title). Each distinct text is encoded once, in batches of ``batch_size``."""
        q_index = _encode_unique(self._encode, queries, "query", self.meta.query_len, batch_size, progress)
        t_index = _encode_unique(self._encode, titles, "item", self.meta.title_len, batch_size, progress)
        q_rows = np.array([q_index.position[q] for q in queries], dtype=np.int64)
        t_rows = np.array([t_index.position[t] for t in titles], dtype=np.int64)
        scores = np.empty(len(queries), dtype=np.float64)
        for begin in _chunks(len(queries), 1024):
            q, t = q_rows[begin : begin + 1024], t_rows[begin : begin + 1024]
            s = maxsim(q_index.vectors[q], q_index.mask[q], t_index.vectors[t], t_index.mask[t])
            scores[begin : begin + len(q)] = self.probability(s)
        return scores


@dataclass(frozen=True, slots=True)
class _UniqueEncoded:
    position: dict[str, int]
    vectors: np.ndarray
    mask: np.ndarray


def _encode_unique(encode: Callable[[Sequence[str], Side], TokenEmbeddings], texts: Sequence[str], side: Side,
                   width: int, batch_size: int, progress: Progress | None) -> _UniqueEncoded:
    """Encode the distinct ``texts`` (texts of a length together, so batches pad little; in a fixed order, since an
    int8 graph's activation scales depend on the batch) into full-width arrays."""
    distinct = sorted(set(texts), key=lambda text: (len(text), text))
    position = {text: i for i, text in enumerate(distinct)}
    vectors: np.ndarray | None = None
    mask = np.zeros((len(distinct), width), dtype=bool)
    for begin in _chunks(len(distinct), batch_size):
        batch = encode(distinct[begin : begin + batch_size], side)
        if vectors is None:
            vectors = np.zeros((len(distinct), width, batch.vectors.shape[2]), dtype=np.float32)
        length = batch.vectors.shape[1]
        vectors[begin : begin + len(batch), :length] = batch.vectors
        mask[begin : begin + len(batch), :length] = batch.mask
        if progress is not None:
            progress(len(batch))
    if vectors is None:
        vectors = np.zeros((0, width, 1), dtype=np.float32)
    return _UniqueEncoded(position, vectors, mask)


class CrossEncoderModel:
    """The interaction student: one graph call per (query, title) batch; its output is the logit of Good."""

    def __init__(self, version: ModelVersion, backend: Backend) -> None:
        if version.meta.family != "cross":
            raise ModelRepositoryError(f"{version.directory}: a {version.meta.family!r} model, not cross")
        self.version = version
        self.meta = version.meta
        self.backend = backend
        self.tokenizer = StudentTokenizer(version.tokenizer_path, version.meta)
        self._map = version.meta.probability_map()

    def score_pairs(self, queries: Sequence[str], titles: Sequence[str], *, batch_size: int = 128,
                    progress: Progress | None = None) -> np.ndarray:
        scores = np.empty(len(queries), dtype=np.float64)
        for begin in _chunks(len(queries), batch_size):
            encoded = self.tokenizer.encode_pairs(queries[begin : begin + batch_size],
                                                  titles[begin : begin + batch_size])
            logits = self.backend.run(encoded.feed(self.backend.input_names))
            p0 = sigmoid(logits.reshape(-1))
            scores[begin : begin + len(logits)] = p0 if self._map is None else self._map(p0)
            if progress is not None:
                progress(len(logits))
        return scores


RuntimeModel = ColBERTModel | CrossEncoderModel


def runtime_model(version: ModelVersion, *, threads: int = 0) -> RuntimeModel:
    """The runtime model of an exported version (ColBERT or cross-encoder) on in-process ONNX Runtime."""
    from service.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(version.onnx_path, threads=threads)
    if version.meta.family == "colbert":
        return ColBERTModel(version, backend)
    return CrossEncoderModel(version, backend)


def load_runtime_model(repository: str | os.PathLike[str], *, model: str | None = None,
                       version: int | None = None, threads: int = 0) -> RuntimeModel:
    """A model version of the repository with the in-process ONNX Runtime backend."""
    return runtime_model(resolve_model(repository, model=model, version=version), threads=threads)
