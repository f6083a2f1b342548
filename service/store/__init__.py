"""Item token-embedding stores: the contract shared by the indexer (``relevance index``), the gateway and the
stores themselves (Redis; in-process memory-mapped arrays). Items are encoded offline by the ColBERT item
encoder; the request path reads them back in one round trip.

Keys carry the model version (``<namespace>:<model version>:<item id>``, model version as
:attr:`relevance_core.model_repository.ModelVersion.label`, e.g. ``colbert:1``), so embeddings of two model versions
never mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.health import Health


@dataclass(frozen=True, slots=True)
class ItemTokens:
    """One item's token embeddings as the item encoder produced them, real tokens only and in order
    (``[CLS] [D] tokens… [SEP]``): ``vectors`` (n, dim) float32 unit-length (after decoding, approximately),
    ``mask`` (n,) bool of the tokens that take part in MaxSim (skip-list tokens False), ``token_ids`` (n,)
    int32 (to show the matched token as evidence)."""

    vectors: np.ndarray
    mask: np.ndarray
    token_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@dataclass(frozen=True, slots=True)
class ItemBatch:
    """Several items' tokens concatenated (the request path's layout, no per-item arrays): ``vectors`` (T, dim)
    float32, ``mask`` (T,) bool, ``token_ids`` (T,) int32; item j owns ``lengths[j]`` rows, in order."""

    vectors: np.ndarray
    mask: np.ndarray
    token_ids: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def empty(cls, dim: int = 0) -> ItemBatch:
        """No items (``concat`` drops empty batches, so their width does not matter)."""
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, bool), np.zeros(0, np.int32), np.zeros(0, np.int64))

    @classmethod
    def of(cls, items: Sequence[ItemTokens], dim: int) -> ItemBatch:
        if not items:
            return cls.empty(dim)
        return cls(np.concatenate([i.vectors for i in items]).astype(np.float32, copy=False),
                   np.concatenate([i.mask for i in items]).astype(bool, copy=False),
                   np.concatenate([i.token_ids for i in items]).astype(np.int32, copy=False),
                   np.array([len(i) for i in items], dtype=np.int64))

    @classmethod
    def concat(cls, batches: Sequence[ItemBatch], dim: int) -> ItemBatch:
        batches = [b for b in batches if len(b)]
        if len(batches) < 2:
            return batches[0] if batches else cls.empty(dim)
        return cls(np.concatenate([b.vectors for b in batches]), np.concatenate([b.mask for b in batches]),
                   np.concatenate([b.token_ids for b in batches]), np.concatenate([b.lengths for b in batches]))


class StoreError(RuntimeError):
    """The store could not be read or written (connection lost, corrupt entry); the message says which."""


class PartialReadError(StoreError):
    """Part of a ``get_batch`` failed (a Redis Cluster node down): ``found`` is what the read returned for the
    rest, as ``get_batch`` returns it, and ``unread`` the positions in ``ids`` that could not be read."""

    def __init__(self, message: str, found: tuple[ItemBatch, list[int]], unread: list[int]) -> None:
        super().__init__(message)
        self.found = found
        self.unread = unread


class ItemStore(Protocol):
    """What the gateway and the indexer need from a store bound to one model version."""

    model_version: str
    in_process: bool
    """True when reads are memory reads (the gateway then calls them on its event loop, not on a thread)."""

    def get_many(self, ids: Sequence[str]) -> list[ItemTokens | None]:
        """The items in ``ids`` order, None where unknown; one round trip to the backing store (per node of a
        Redis Cluster); :class:`StoreError` when any of them could not be read."""
        ...

    def get_batch(self, ids: Sequence[str]) -> tuple[ItemBatch, list[int]]:
        """The found items concatenated (the request path's read) and, per batch item, its position in ``ids``;
        one round trip (per node of a Redis Cluster), one dequantisation. Raises :class:`StoreError` when
        nothing could be read, :class:`PartialReadError` with what was read when only part could."""
        ...

    def put_many(self, items: Mapping[str, ItemTokens]) -> None:
        """Insert or replace items (pipelined)."""
        ...

    def count(self) -> int:
        """Items stored for this model version."""
        ...

    def ping(self) -> bool:
        """True when the backing store answers."""
        ...

    def health(self) -> Health:
        """:meth:`ping` with what was checked or what failed (readiness)."""
        ...

    def flush(self) -> object:
        """Make the items written at run time part of the index (they are durable already); the gateway calls it
        when it retires a store."""
        ...

    def close(self) -> None: ...


def pad_items(items: Sequence[ItemTokens], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack items into (N, L, dim) float32 vectors and an (N, L) bool mask, L the longest item."""
    width = max((len(item) for item in items), default=1)
    vectors = np.zeros((len(items), width, dim), dtype=np.float32)
    mask = np.zeros((len(items), width), dtype=bool)
    for row, item in enumerate(items):
        vectors[row, : len(item)] = item.vectors
        mask[row, : len(item)] = item.mask
    return vectors, mask


def unpad_items(vectors: np.ndarray, mask: np.ndarray, input_ids: np.ndarray, pad_id: int) -> list[ItemTokens]:
    """Split an item-encoder batch ((B, L, dim) vectors, (B, L) mask and ids) into items of their real tokens;
    row i's length is its number of ids other than ``pad_id`` (padding only ever trails)."""
    lengths = (input_ids != pad_id).sum(axis=1)
    return [ItemTokens(vectors[i, :n], mask[i, :n].astype(bool), input_ids[i, :n].astype(np.int32))
            for i, n in enumerate(lengths.tolist())]
