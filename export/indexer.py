"""``relevance index``: encode a catalogue's titles with the served ColBERT item encoder into an item store, and
measure what the store's codec costs in ranking quality.

Resuming: the ids already stored for the model version are skipped (Redis: one SMISMEMBER per 4096 ids on the
version's id set; local store: the current generation and the overlay), so a run that stopped part-way encodes
only the rest when started again. Items are durable batch by batch (Redis: when ``put_many`` returns; local
store: a new generation every ``flush_every`` items and at the end), and the codec is stored before the first
item, so a resumed run keeps encoding with it.

Order: when the version has no codec yet, a seeded random sample of the titles is encoded first and the codec is
trained on its tokens (the sample is written like any other batch, not encoded twice); the remaining titles are
encoded shortest first, so that a batch pads little.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from relevance_core.data import Product, load_pairs
from service.core.maxsim import maxsim
from service.core.runtime import ColBERTModel
from service.store import ItemStore, ItemTokens, pad_items
from service.store.codec import CodecName, TokenCodec

CODEC_SAMPLE_ITEMS = 1024
FLUSH_EVERY = 10_000


class IndexingError(ValueError):
    """The index cannot be built as asked (e.g. the stored codec differs from the one requested)."""


class IndexTarget(ItemStore, Protocol):
    """What the indexer needs beyond :class:`ItemStore` (both :class:`service.store.redis.RedisItemStore` and
    :class:`service.store.local.LocalItemStore` have it)."""

    def missing(self, ids: Sequence[str]) -> list[str]: ...

    def stored_codec(self) -> TokenCodec | None: ...

    def set_codec(self, codec: TokenCodec) -> TokenCodec: ...

    def flush(self) -> object: ...

    def activate(self) -> None: ...


def _work_order(products: Sequence[Product], sample: int, seed: int) -> list[Product]:
    """``sample`` random products first (the codec's training data), then the rest shortest title first."""
    chosen = set(random.Random(seed).sample(range(len(products)), min(sample, len(products))))
    head = [products[i] for i in sorted(chosen)]
    tail = sorted((p for i, p in enumerate(products) if i not in chosen), key=lambda p: len(p.product_title))
    return head + tail


def index_catalogue(products: Sequence[Product], model: ColBERTModel, store: IndexTarget, *,
                    codec: CodecName = "sq8", batch_size: int = 64, activate: bool = True,
                    flush_every: int = FLUSH_EVERY, codec_sample_items: int = CODEC_SAMPLE_ITEMS, seed: int = 0,
                    show_progress: bool = False) -> dict[str, Any]:
    """Encode and store the products not yet stored for ``store``'s model version; activate the version at the
    end unless ``activate`` is False. Products are keyed by ``product_uid`` (the first title of a repeated uid
    wins). Returns the run's summary (items written, seconds, items/s, bytes per item, ...)."""
    start = time.perf_counter()
    first: dict[str, Product] = {}
    for product in products:
        first.setdefault(product.product_uid, product)
    unique = list(first.values())
    stored = store.stored_codec()
    if stored is not None and stored.name != codec:
        raise IndexingError(f"{store!r} already holds items encoded with {stored.name}, not {codec}: index with "
                            f"--codec {stored.name}, or into another namespace / store directory")
    todo_ids = set(store.missing([p.product_uid for p in unique]))
    todo = [p for p in unique if p.product_uid in todo_ids]
    work = _work_order(todo, 0 if stored is not None else codec_sample_items, seed)

    written = stored_bytes = tokens = 0
    since_flush = 0
    pending: dict[str, ItemTokens] = {}  # encoded before the codec exists (its training sample)
    with tqdm(total=len(work), unit="item", desc=f"index {store.model_version}", disable=not show_progress) as bar:
        for begin in range(0, len(work), batch_size):
            batch = work[begin : begin + batch_size]
            items = dict(zip((p.product_uid for p in batch),
                             model.item_tokens([p.product_title for p in batch]), strict=True))
            if stored is None:
                pending.update(items)
                if len(pending) < min(codec_sample_items, len(work)):
                    bar.update(len(batch))
                    continue
                sample = np.concatenate([item.vectors for item in pending.values()])
                stored = store.set_codec(TokenCodec.create(codec, sample))
                items, pending = pending, {}
            store.put_many(items)
            written += len(items)
            since_flush += len(items)
            tokens += sum(len(item) for item in items.values())
            stored_bytes += sum(stored.item_nbytes(len(item)) for item in items.values())
            if since_flush >= flush_every:
                store.flush()
                since_flush = 0
            bar.update(len(batch))
    store.flush()
    if activate:
        store.activate()
    seconds = time.perf_counter() - start
    return {
        "items": written,
        "skipped": len(unique) - len(todo),
        "total": store.count(),
        "seconds": round(seconds, 3),
        "items_per_second": round(written / seconds, 1) if seconds > 0 else None,
        "bytes_per_item": round(stored_bytes / written, 1) if written else None,
        "tokens_per_item": round(tokens / written, 2) if written else None,
        "codec": None if stored is None else stored.name,
        "model_version": store.model_version,
        "activated": activate,
    }


def evaluate_codec(model: ColBERTModel, pairs_path: str | Path, codec: TokenCodec, *, batch_size: int = 128,
                   show_progress: bool = False) -> dict[str, Any]:
    """ROC-AUC (Good = relevance > 2.0) on a labelled pairs TSV with item embeddings as the encoder gives them
    (float32) and after a round trip through ``codec``, and the difference: the ranking cost of the codec."""
    from sklearn.metrics import roc_auc_score

    pairs = load_pairs(pairs_path)
    if len({p.good for p in pairs}) < 2:
        raise IndexingError(f"{pairs_path}: ROC-AUC needs both Good and Bad pairs")
    queries = sorted({p.query for p in pairs})
    titles = sorted({p.product_title for p in pairs}, key=len)
    meta = model.meta
    q_vectors = np.zeros((len(queries), meta.query_len, meta.dim), dtype=np.float32)
    q_mask = np.zeros((len(queries), meta.query_len), dtype=bool)
    exact: list[ItemTokens] = []
    decoded: list[ItemTokens] = []
    with tqdm(total=len(queries) + len(titles), unit="text", desc="encode", disable=not show_progress) as bar:
        for begin in range(0, len(queries), batch_size):
            encoded = model.encode_queries(queries[begin : begin + batch_size])
            width = encoded.vectors.shape[1]
            q_vectors[begin : begin + len(encoded), :width] = encoded.vectors
            q_mask[begin : begin + len(encoded), :width] = encoded.mask
            bar.update(len(encoded))
        for begin in range(0, len(titles), batch_size):
            items = model.item_tokens(titles[begin : begin + batch_size])
            exact.extend(items)
            decoded.extend(codec.decode(codec.unpack(codec.encode_items(items))))
            bar.update(len(items))
    q_row = {q: i for i, q in enumerate(queries)}
    t_row = {t: i for i, t in enumerate(titles)}
    scores: dict[str, list[np.ndarray]] = {"reference": [], "codec": []}
    for begin in range(0, len(pairs), 1024):
        chunk = pairs[begin : begin + 1024]
        q = np.array([q_row[p.query] for p in chunk])
        rows = [t_row[p.product_title] for p in chunk]
        for name, items in (("reference", exact), ("codec", decoded)):
            d, d_mask = pad_items([items[r] for r in rows], meta.dim)
            scores[name].append(model.probability(maxsim(q_vectors[q], q_mask[q], d, d_mask)))
    labels = np.array([p.good for p in pairs])
    reference, coded = np.concatenate(scores["reference"]), np.concatenate(scores["codec"])
    auc_reference, auc_codec = float(roc_auc_score(labels, reference)), float(roc_auc_score(labels, coded))
    return {
        "n": len(pairs),
        "codec": codec.name,
        "roc_auc_float32": auc_reference,
        "roc_auc_codec": auc_codec,
        "roc_auc_delta": auc_codec - auc_reference,
        "max_abs_score_delta": float(np.abs(coded - reference).max()),
    }
