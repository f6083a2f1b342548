"""Compact byte encodings of item token embeddings for the stores.

A :class:`TokenCodec` turns token vectors into fixed-size codes and back:

- ``sq8``: FAISS 8-bit scalar quantisation (``QT_8bit``: one trained range per dimension), 1 byte per dimension
  instead of 4. :meth:`TokenCodec.train_sq8` fits the ranges on a sample of token vectors (the indexer uses its
  first batches), each widened by 20 % of its width on both sides so that tokens unseen in the sample rarely
  clip; :meth:`TokenCodec.sq8_unit` needs no data (one range [-1, 1], which bounds every component of a unit
  vector) for a store that starts empty and is filled by write-back.
- ``pq32``: FAISS product quantisation, 32 sub-vectors of 4 dimensions, 256 centroids each (``IndexPQ(dim, 32,
  8)``), trained on a sample of the catalogue's tokens: 32 bytes per token instead of 128, which brings an item of
  ~21 tokens under 1 KiB (:meth:`TokenCodec.train_pq`). Decoding is a centroid lookup per sub-vector.
- ``float32``: the identity (no compression), the reference every codec's cost is measured against.

Measured on the tiny test ColBERT (56,608 item tokens of 3,000 test pairs, ranges fitted on half of them),
cosine of decoded vs original token: ``QT_8bit`` with the 20 % margin min 0.99995 / mean 0.99996;
``QT_8bit`` plain min/max 0.99739 / 0.99998 (unseen tokens clip); ``QT_8bit_uniform`` (one range for all
dimensions) 0.99974 / 0.99995; the data-free [-1, 1] range 0.99957 / 0.99968; ROC-AUC moved by < 0.0003 in
every case. With the chosen codec, ``relevance index --evaluate data/derived/test.tsv`` (6,659 pairs) measured
ROC-AUC 0.57654 with float32 items and 0.57640 with sq8 (-0.00013). The tiny model is random: measure a trained
one the same way (:func:`export.indexer.evaluate_codec`).

One item is stored as one byte string, with no text or JSON inside::

    header  <B format version> <B codec kind> <H n tokens>      4 bytes, little-endian
    codes   n * code_size bytes                                 (sq8: n * dim, pq32: n * 32, float32: n * 4 * dim)
    mask    ceil(n / 8) bytes                                   the MaxSim mask, np.packbits
    ids     n * int32 little-endian                             token ids (the evidence shown to users)

A codec itself serialises to bytes (:meth:`TokenCodec.to_bytes`: a header and, for ``sq8`` and ``pq32``, the
serialized FAISS index holding the trained ranges or centroids), so a store keeps it beside the items it encoded.

FAISS trains and encodes; decoding, which is on the request path, is the same per-dimension affine map
(``vmin + (code + 0.5) / 255 · vdiff``) in numpy, read off the trained quantiser: FAISS's ``sa_decode`` runs
through OpenMP, whose thread hand-off alone cost ~5 ms per 100-item request on a busy 2-core host (0.3 ms on one
thread), and the gateway's ONNX Runtime threads need those cores. Many items are unpacked and decoded together
(:meth:`TokenCodec.decode_items`): a Python step per item only slices bytes, the arrays are built once.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import faiss
import numpy as np

from service.store import ItemBatch, ItemTokens, StoreError

CodecName = Literal["sq8", "pq32", "float32"]
CODEC_NAMES: tuple[CodecName, ...] = ("sq8", "pq32", "float32")
PQ_SUBVECTORS = 32
PQ_BITS = 8

SQ8_RANGE_MARGIN = 0.2

_EIGHT_BIT = (faiss.ScalarQuantizer.QT_8bit, faiss.ScalarQuantizer.QT_8bit_uniform)
_KIND: dict[CodecName, int] = {"float32": 0, "sq8": 1, "pq32": 2}
_ITEM_FORMAT = 1
_ITEM_HEADER = struct.Struct("<BBH")
_CODEC_MAGIC = b"RTC1"
_CODEC_HEADER = struct.Struct("<4sBI")  # magic, codec kind, dim
_TOKEN_ID = np.dtype("<i4")


@dataclass(frozen=True, slots=True)
class PackedItems:
    """Several stored items before decoding, concatenated: ``codes`` (T, code_size) uint8, ``masks`` (T,) bool,
    ``token_ids`` (T,) int32, and ``lengths`` (k,) tokens per item (item j is rows ``sum(lengths[:j])`` on)."""

    codes: np.ndarray
    masks: np.ndarray
    token_ids: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


class TokenCodec:
    """Token vectors ⇄ fixed-size uint8 codes, and items ⇄ byte strings (see the module docstring)."""

    def __init__(self, name: CodecName, dim: int, index: faiss.Index | None = None) -> None:
        if (name == "float32") != (index is None):
            raise ValueError(f"a {name} codec {'takes no' if name == 'float32' else 'needs its trained'} FAISS index")
        self.name: CodecName = name
        self.dim = dim
        self._index = index
        self._kind = _KIND[name]
        self.code_size = dim * 4
        if name == "sq8":
            sq = cast(faiss.IndexScalarQuantizer, index)
            if not isinstance(sq, faiss.IndexScalarQuantizer) or sq.sq.qtype not in _EIGHT_BIT \
                    or not sq.is_trained or sq.d != dim:
                raise ValueError(f"sq8 needs a trained {dim}-d 8-bit IndexScalarQuantizer")
            self.code_size = dim
            trained = faiss.vector_to_array(sq.sq.trained)  # [vmin, vdiff], per dimension or one of each
            vmin, vdiff = np.split(trained.astype(np.float32), 2)
            self._scale = (vdiff / 255.0).astype(np.float32)
            self._offset = (vmin + 0.5 * self._scale).astype(np.float32)
        elif name == "pq32":
            pq = cast(faiss.IndexPQ, index)
            if not isinstance(pq, faiss.IndexPQ) or pq.pq.M != PQ_SUBVECTORS or pq.pq.nbits != PQ_BITS \
                    or not pq.is_trained or pq.d != dim:
                raise ValueError(f"pq32 needs a trained {dim}-d IndexPQ of {PQ_SUBVECTORS} x {PQ_BITS} bits")
            self.code_size = PQ_SUBVECTORS
            # decoding picks one centroid per sub-vector: the (M * 256, dim / M) table, row m * 256 + code
            self._centroids = faiss.vector_to_array(pq.pq.centroids).astype(np.float32).reshape(
                PQ_SUBVECTORS << PQ_BITS, dim // PQ_SUBVECTORS)
            self._table_offset = np.arange(PQ_SUBVECTORS, dtype=np.intp) << PQ_BITS

    @classmethod
    def float32(cls, dim: int) -> TokenCodec:
        return cls("float32", dim)

    @classmethod
    def train_sq8(cls, sample: np.ndarray) -> TokenCodec:
        """8-bit codes with per-dimension ranges fitted on ``sample`` (N, dim) token vectors: min/max widened by
        ``SQ8_RANGE_MARGIN`` of the range on both sides."""
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[0] < 2:
            raise ValueError(f"need at least 2 sample vectors (N, dim) to train sq8, got shape {sample.shape}")
        index = faiss.IndexScalarQuantizer(sample.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
        index.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        index.sq.rangestat_arg = SQ8_RANGE_MARGIN
        index.train(sample)
        return cls("sq8", sample.shape[1], index)

    @classmethod
    def sq8_unit(cls, dim: int) -> TokenCodec:
        """8-bit codes over the fixed range [-1, 1] (every component of a unit vector lies in it): no training
        data needed, a little coarser than :meth:`train_sq8`."""
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT)
        index.train(np.stack([np.full(dim, -1.0, np.float32), np.full(dim, 1.0, np.float32)]))
        return cls("sq8", dim, index)

    @classmethod
    def train_pq(cls, sample: np.ndarray) -> TokenCodec:
        """32-byte product-quantisation codes with centroids fitted on ``sample`` (N, dim) token vectors (k-means
        per sub-vector; at least 256 vectors, a few thousand for good centroids)."""
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[0] < 1 << PQ_BITS or sample.shape[1] % PQ_SUBVECTORS:
            raise ValueError(f"need at least {1 << PQ_BITS} sample vectors of a dim divisible by {PQ_SUBVECTORS} "
                             f"to train pq32, got shape {sample.shape}")
        index = faiss.IndexPQ(sample.shape[1], PQ_SUBVECTORS, PQ_BITS, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.seed = 0
        index.train(sample)
        return cls("pq32", sample.shape[1], index)

    @classmethod
    def create(cls, name: CodecName, sample: np.ndarray) -> TokenCodec:
        """The codec ``name`` for vectors like ``sample`` (N, dim); ``sq8`` and ``pq32`` learn from it."""
        if name == "float32":
            return cls.float32(int(sample.shape[1]))
        return cls.train_pq(sample) if name == "pq32" else cls.train_sq8(sample)

    # -- the codec itself as bytes -------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        body = b"" if self._index is None else faiss.serialize_index(self._index).tobytes()
        return _CODEC_HEADER.pack(_CODEC_MAGIC, self._kind, self.dim) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> TokenCodec:
        try:
            magic, kind, dim = _CODEC_HEADER.unpack_from(data)
        except struct.error:
            raise StoreError(f"corrupt codec: {len(data)} bytes, shorter than its header") from None
        names = {v: k for k, v in _KIND.items()}
        if magic != _CODEC_MAGIC or kind not in names:
            raise StoreError(f"corrupt codec: unknown header {magic!r} kind {kind}")
        name = names[kind]
        if name == "float32":
            return cls.float32(dim)
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=_CODEC_HEADER.size))
            return cls(name, dim, index)  # faiss returns the concrete class
        except (RuntimeError, ValueError, AttributeError) as exc:
            raise StoreError(f"corrupt codec: not the {dim}-d FAISS index of a {name} codec: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenCodec) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"TokenCodec({self.name!r}, dim={self.dim}, code_size={self.code_size})"

    # -- vectors ⇄ codes -----------------------------------------------------------------------------------------

    def encode_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) float → (n, code_size) uint8."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got shape {vectors.shape}")
        if self._index is None:
            return vectors.view(np.uint8).reshape(len(vectors), self.code_size)
        return self._index.sa_encode(vectors)

    def decode_vectors(self, codes: np.ndarray) -> np.ndarray:
        """(n, code_size) uint8 → (n, dim) float32 (what FAISS's ``sa_decode`` gives, computed in numpy)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, self.code_size)
        if self._index is None:
            return codes.view(np.float32)
        if self.name == "pq32":
            rows = codes.astype(np.intp)
            rows += self._table_offset
            return np.take(self._centroids, rows.ravel(), axis=0).reshape(len(codes), self.dim)
        vectors = codes.astype(np.float32)
        vectors *= self._scale
        vectors += self._offset
        return vectors

    # -- items ⇄ bytes -------------------------------------------------------------------------------------------

    def item_nbytes(self, n_tokens: int) -> int:
        """Bytes one stored item of ``n_tokens`` tokens takes."""
        return _ITEM_HEADER.size + n_tokens * (self.code_size + _TOKEN_ID.itemsize) + (n_tokens + 7) // 8

    def encode_items(self, items: Sequence[ItemTokens]) -> list[bytes]:
        """Items → byte strings, with one quantiser call for all their tokens."""
        for item in items:
            if not len(item) == len(item.mask) == len(item.token_ids):
                raise ValueError(f"item arrays disagree in length: {len(item)}, {len(item.mask)}, "
                                 f"{len(item.token_ids)}")
        if not items:
            return []
        codes = self.encode_vectors(np.concatenate([item.vectors for item in items]))
        out = []
        at = 0
        for item in items:
            n = len(item)
            out.append(b"".join((_ITEM_HEADER.pack(_ITEM_FORMAT, self._kind, n), codes[at : at + n].tobytes(),
                                 np.packbits(np.asarray(item.mask, dtype=bool)).tobytes(),
                                 np.asarray(item.token_ids, dtype=_TOKEN_ID).tobytes())))
            at += n
        return out

    def unpack(self, blobs: Sequence[bytes]) -> PackedItems:
        """Byte strings → their codes, masks and ids concatenated; StoreError for one this codec did not write."""
        lengths = np.empty(len(blobs), dtype=np.int64)
        codes, masks, token_ids = [], [], []
        for j, blob in enumerate(blobs):
            try:
                version, kind, n = _ITEM_HEADER.unpack_from(blob)
            except struct.error:
                raise StoreError(f"corrupt item: {len(blob)} bytes, shorter than its header") from None
            if version != _ITEM_FORMAT or kind != self._kind:
                raise StoreError(f"item written in format {version} by codec kind {kind}, not by this {self.name} "
                                 "codec")
            if len(blob) != self.item_nbytes(n):
                raise StoreError(f"corrupt item: {len(blob)} bytes for {n} tokens, expected {self.item_nbytes(n)}")
            mask_at = _ITEM_HEADER.size + n * self.code_size
            ids_at = mask_at + (n + 7) // 8
            codes.append(blob[_ITEM_HEADER.size : mask_at])
            masks.append(blob[mask_at:ids_at])
            token_ids.append(blob[ids_at:])
            lengths[j] = n
        # each item's mask bits start on a byte boundary: keep the first n bits of each item's bytes
        packed_bytes = (lengths + 7) // 8
        first_bit = 8 * (np.cumsum(packed_bytes) - packed_bytes)
        bit_index = np.repeat(first_bit - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        bits = np.unpackbits(np.frombuffer(b"".join(masks), dtype=np.uint8))
        return PackedItems(np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(-1, self.code_size),
                           bits[bit_index].astype(bool),
                           np.frombuffer(b"".join(token_ids), dtype=_TOKEN_ID).astype(np.int32), lengths)

    def decode(self, packed: PackedItems) -> list[ItemTokens]:
        """Unpacked items → items, with one dequantisation for all their tokens."""
        if not len(packed):
            return []
        vectors, masks, token_ids = self.decode_vectors(packed.codes), packed.masks, packed.token_ids
        bounds = itertools.pairwise([0, *np.cumsum(packed.lengths).tolist()])
        return [ItemTokens(vectors[a:b], masks[a:b], token_ids[a:b]) for a, b in bounds]

    def decode_batch(self, packed: PackedItems) -> ItemBatch:
        """Unpacked items → one concatenated batch, with one dequantisation and no per-item arrays."""
        return ItemBatch(self.decode_vectors(packed.codes), packed.masks, packed.token_ids, packed.lengths)

    def decode_items(self, blobs: Sequence[bytes | None]) -> list[ItemTokens | None]:
        """Byte strings (None for absent items) → items in the same order, None kept."""
        decoded = iter(self.decode(self.unpack([blob for blob in blobs if blob is not None])))
        return [None if blob is None else next(decoded) for blob in blobs]
