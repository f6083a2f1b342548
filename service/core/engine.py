"""The scoring engine behind every API: query encoding (micro-batched, LRU-cached), item embeddings from the
store in one round trip (encoded from the title when missing), MaxSim and calibration, token-level evidence.

Threads: the encoder (ONNX Runtime or the Triton client) runs on one dedicated thread, store calls on a small
pool, so the event loop only schedules; numpy MaxSim runs inline (about a millisecond for 100 items).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
from cachetools import LRUCache

from service.core.batching import MicroBatcher
from service.core.maxsim import maxsim_segments
from service.core.runtime import ColBERTModel
from service.metrics import Metrics
from service.settings import Settings
from service.store import ItemBatch, ItemStore, ItemTokens, PartialReadError, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueryTokens:
    """A query's real tokens ([CLS] [Q] tokens… [SEP]): unit vectors (n_q, dim) and their ids."""

    vectors: np.ndarray
    token_ids: np.ndarray


@dataclass(frozen=True, slots=True)
class ItemInput:
    id: str
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Evidence: a query token, the title token it matched best in MaxSim, and their cosine similarity."""

    query_token: str
    title_token: str
    similarity: float


@dataclass(frozen=True, slots=True)
class Interaction:
    """The whole late interaction behind one item's score (what an explanation of the score reads):
    ``similarity``, the MaxSim score before calibration; ``query_ids`` (n_q,), the query's real tokens, specials
    included (MaxSim averages over all of them); the item's token row ``item_ids`` (n,) with ``item_mask`` (n,),
    the tokens that take part; ``sim`` (n_taking_part, n_q), the cosine of each taking-part item token (in row
    order) with each query token."""

    similarity: float
    query_ids: np.ndarray
    item_ids: np.ndarray
    item_mask: np.ndarray
    sim: np.ndarray


@dataclass(slots=True)
class ItemResult:
    id: str
    score: float | None = None
    source: Literal["store", "title"] | None = None
    error: str | None = None
    evidence: list[Match] | None = None
    interaction: Interaction | None = None


@dataclass(slots=True)
class ScoreOutcome:
    items: list[ItemResult]
    timings_ms: dict[str, float] = field(default_factory=dict)


ENTRY_OVERHEAD_BYTES = 256
"""What a cache entry costs beside its arrays (key, objects, the LRU's bookkeeping), roughly."""


def entry_bytes(value: QueryTokens | ItemTokens) -> int:
    """The memory a cached embedding holds: its arrays, plus the entry's overhead."""
    mask = value.mask.nbytes if isinstance(value, ItemTokens) else 0
    return ENTRY_OVERHEAD_BYTES + int(value.vectors.nbytes + value.token_ids.nbytes + mask)


Cached = TypeVar("Cached", bound=QueryTokens | ItemTokens)


class ByteBoundedLRU(LRUCache[str, Cached]):
    """An LRU cache bounded by the bytes its entries hold (`entry_bytes`); an entry larger than the whole bound is
    not kept (cachetools would raise)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=entry_bytes)

    def __setitem__(self, key: str, value: Cached) -> None:
        if self.getsizeof(value) <= self.maxsize:
            super().__setitem__(key, value)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class ScoringEngine:
    def __init__(self, model: ColBERTModel, store: ItemStore, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.model_version = model.version.label
        self.encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.store_threads = ThreadPoolExecutor(4, thread_name_prefix="store")
        self.queries: MicroBatcher[str, QueryTokens] = MicroBatcher(
            self._encode_queries, self.encoder_thread, max_size=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000.0, queue_size=settings.queue_size, metrics=metrics)
        mib = 2**20
        self.query_cache: ByteBoundedLRU[QueryTokens] | None = (
            ByteBoundedLRU(int(settings.query_cache_mib * mib)) if settings.query_cache_mib else None)
        self.title_cache: ByteBoundedLRU[ItemTokens] | None = (
            ByteBoundedLRU(int(settings.title_cache_mib * mib)) if settings.title_cache_mib else None)
        meta = model.meta
        self._special = {i for i in (meta.cls_id, meta.sep_id, meta.pad_id, meta.query_marker_id,
                                     meta.item_marker_id) if i is not None}
        self._write_backs: set[asyncio.Task[None]] = set()
        self._store_in_process = store.in_process
        self.in_flight = 0  # score and upsert calls running (a retired engine stops when none is left)

    # --- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.queries.start()

    async def stop(self) -> None:
        await self.queries.stop()
        if self._write_backs:
            await asyncio.gather(*self._write_backs, return_exceptions=True)
        self.encoder_thread.shutdown(wait=True)
        self.store_threads.shutdown(wait=True)

    # --- encoding ---------------------------------------------------------------------------------------------
    def _encode_queries(self, texts: Sequence[str]) -> list[QueryTokens]:
        started = time.perf_counter()
        encoded = self.model.tokenizer.encode_side(texts, "query")
        self.metrics.stage.labels("tokenize").observe(time.perf_counter() - started)
        batch = self.model.embed(encoded, "query")
        lengths = encoded.attention_mask.sum(axis=1)
        return [QueryTokens(batch.vectors[i, :n].copy(), batch.input_ids[i, :n].copy())
                for i, n in enumerate(lengths.tolist())]

    async def query_tokens(self, text: str) -> QueryTokens:
        cache = self.query_cache
        if cache is not None and (hit := cache.get(text)) is not None:
            self.metrics.query_cache.labels("hit").inc()
            return hit
        self.metrics.query_cache.labels("miss").inc()
        tokens = await self.queries.submit(text)
        if cache is not None:
            cache[text] = tokens
            self.metrics.cache_bytes.labels("query").set(cache.currsize)
        return tokens

    async def encode_titles(self, titles: Sequence[str]) -> list[ItemTokens]:
        """Item token embeddings of titles (cached by title), encoded on the encoder thread."""
        cache = self.title_cache
        out: list[ItemTokens | None] = [cache.get(t) if cache is not None else None for t in titles]
        todo = sorted({t for t, got in zip(titles, out, strict=True) if got is None})
        if cache is not None:
            hits = sum(got is not None for got in out)
            self.metrics.title_cache.labels("hit").inc(hits)
            self.metrics.title_cache.labels("miss").inc(len(out) - hits)
        if todo:
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            encoded: dict[str, ItemTokens] = {}
            for begin in range(0, len(todo), 64):
                chunk = todo[begin : begin + 64]
                tokens = await loop.run_in_executor(self.encoder_thread, self.model.item_tokens, chunk)
                encoded.update(zip(chunk, tokens, strict=True))
            self.metrics.stage.labels("encode_items").observe(time.perf_counter() - started)
            if cache is not None:
                cache.update(encoded)
                self.metrics.cache_bytes.labels("title").set(cache.currsize)
            return [got if got is not None else encoded[t] for t, got in zip(titles, out, strict=True)]
        return [got for got in out if got is not None]  # every title was cached

    # --- items ------------------------------------------------------------------------------------------------
    async def fetch(self, ids: Sequence[str]) -> tuple[ItemBatch, list[int], str | None, set[int]]:
        """Stored embeddings of ``ids`` (one store round trip), their positions in ``ids``, the store's error if
        it failed, and the positions it could not read (all of them, or a cluster's down node's)."""
        if not ids:
            return ItemBatch.empty(), [], None, set()
        started = time.perf_counter()
        try:
            if self._store_in_process:  # a memory read (well under a millisecond): a thread hop would cost more
                batch, slots = self.store.get_batch(ids)
            else:
                batch, slots = await asyncio.get_running_loop().run_in_executor(self.store_threads,
                                                                                self.store.get_batch, ids)
        except PartialReadError as exc:
            self.metrics.store_errors.labels("get").inc()
            log.warning("store read failed in part: %s", exc)
            return *exc.found, f"store unavailable: {exc}", set(exc.unread)
        except StoreError as exc:
            self.metrics.store_errors.labels("get").inc()
            log.warning("store read failed: %s", exc)
            return ItemBatch.empty(), [], f"store unavailable: {exc}", set(range(len(ids)))
        self.metrics.stage.labels("fetch").observe(time.perf_counter() - started)
        return batch, slots, None, set()

    async def resolve_items(self, items: Sequence[ItemInput], *, use_store: bool = True,
                            ) -> tuple[ItemBatch, list[int], list[ItemResult], dict[str, float]]:
        """The items' embeddings, concatenated (from the store, else encoded from the title), each batch item's
        position in ``items``, and per-item results carrying the source or the error."""
        timings: dict[str, float] = {}
        results = [ItemResult(item.id) for item in items]
        batch, slots, store_error, unread = ItemBatch.empty(), list[int](), None, set[int]()
        if use_store:
            started = time.perf_counter()
            batch, slots, store_error, unread = await self.fetch([item.id for item in items])
            timings["fetch"] = _ms(time.perf_counter() - started)
        for slot in slots:
            results[slot].source = "store"
        found = set(slots)
        missing = [k for k in range(len(items)) if k not in found]
        titles = {k: title for k in missing if (title := items[k].title) and self.settings.encode_missing}
        with_title = list(titles)
        if with_title:
            started = time.perf_counter()
            encoded = await self.encode_titles(list(titles.values()))
            timings["encode_items"] = _ms(time.perf_counter() - started)
            batch = ItemBatch.concat([batch, ItemBatch.of(encoded, self.model.meta.dim)], self.model.meta.dim)
            slots = [*slots, *with_title]
            for k in with_title:
                results[k].source = "title"
            if self.settings.write_back and use_store and store_error is None:  # ids of real items only
                self._write_back({items[k].id: tokens for k, tokens in zip(with_title, encoded, strict=True)})
        for k in set(missing) - set(with_title):
            if k in unread:
                results[k].error = store_error
                self.metrics.item_errors.labels("store_unavailable").inc()
                continue
            results[k].error = ("unknown item and no title to encode" if self.settings.encode_missing
                                else "unknown item (encoding from titles is disabled)")
            self.metrics.item_errors.labels("unknown_item").inc()
        return batch, slots, results, timings

    def _write_back(self, items: dict[str, ItemTokens]) -> None:
        async def write() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(self.store_threads, self.store.put_many, items)
            except StoreError as exc:
                self.metrics.store_errors.labels("put").inc()
                log.warning("store write-back failed: %s", exc)

        task = asyncio.get_running_loop().create_task(write())
        self._write_backs.add(task)
        task.add_done_callback(self._write_backs.discard)

    async def upsert(self, items: Sequence[ItemInput]) -> int:
        """Encode titles and write them to the store (raises StoreError)."""
        self.in_flight += 1
        try:
            return await self._upsert(items)
        finally:
            self.in_flight -= 1

    async def _upsert(self, items: Sequence[ItemInput]) -> int:
        tokens = await self.encode_titles([item.title or "" for item in items])
        payload = {item.id: t for item, t in zip(items, tokens, strict=True)}
        try:
            await asyncio.get_running_loop().run_in_executor(self.store_threads, self.store.put_many, payload)
        except StoreError:
            self.metrics.store_errors.labels("put").inc()
            raise
        return len(payload)

    # --- scoring ----------------------------------------------------------------------------------------------
    async def score(self, query: str, items: Sequence[ItemInput], *, evidence: bool = False,
                    use_store: bool = True, interaction: bool = False) -> ScoreOutcome:
        """Scores in ``items`` order; ``use_store=False`` encodes every item from its title (rerank);
        ``interaction`` attaches each scored item's whole token interaction (`Interaction`)."""
        self.in_flight += 1
        try:
            return await self._score(query, items, evidence=evidence, use_store=use_store, interaction=interaction)
        finally:
            self.in_flight -= 1

    async def _score(self, query: str, items: Sequence[ItemInput], *, evidence: bool, use_store: bool,
                     interaction: bool) -> ScoreOutcome:
        started = time.perf_counter()
        query_task = asyncio.ensure_future(self.query_tokens(query))
        await asyncio.sleep(0)  # let the query reach the encoder before an in-process store read runs
        try:
            batch, slots, results, timings = await self.resolve_items(items, use_store=use_store)
            q = await query_task
        finally:
            if not query_task.done():
                query_task.cancel()
        timings["query"] = _ms(time.perf_counter() - started)
        t0 = time.perf_counter()
        self._maxsim(q, batch, slots, results, evidence, interaction)
        self.metrics.stage.labels("maxsim").observe(time.perf_counter() - t0)
        timings["maxsim"] = _ms(time.perf_counter() - t0)
        timings["total"] = _ms(time.perf_counter() - started)
        for source in ("store", "title"):
            n = sum(1 for r in results if r.source == source and r.score is not None)
            if n:
                self.metrics.items_scored.labels(source).inc(n)
        return ScoreOutcome(results, timings)

    def _maxsim(self, q: QueryTokens, batch: ItemBatch, slots: list[int], results: list[ItemResult],
                evidence: bool, interaction: bool) -> None:
        """MaxSim of the query against every item of ``batch`` (item j's result is ``results[slots[j]]``)."""
        if not len(batch):
            return
        starts = np.cumsum(batch.lengths) - batch.lengths  # every item has at least [CLS] and [SEP]
        counts = np.add.reduceat(batch.mask.astype(np.int64), starts)  # interacting tokens per item
        live = counts > 0
        for j in np.flatnonzero(~live).tolist():
            results[slots[j]].error = "item has no token that takes part in scoring"
        if not live.any():
            return
        live_counts = counts[live]
        offsets = np.cumsum(live_counts) - live_counts
        similarity, sim = maxsim_segments(q.vectors, batch.vectors[batch.mask], offsets)
        live_items = np.flatnonzero(live).tolist()
        live_slots = [slots[j] for j in live_items]
        for slot, p in zip(live_slots, self.model.probability(similarity).tolist(), strict=True):
            results[slot].score = p
        if evidence:
            self._evidence(q, sim, batch.token_ids[batch.mask], offsets, live_counts, live_slots, results)
        if interaction:
            for k, (j, slot) in enumerate(zip(live_items, live_slots, strict=True)):
                row = slice(int(starts[j]), int(starts[j] + batch.lengths[j]))
                block = slice(int(offsets[k]), int(offsets[k] + live_counts[k]))
                results[slot].interaction = Interaction(float(similarity[k]), q.token_ids, batch.token_ids[row],
                                                        batch.mask[row], sim[block])

    def _evidence(self, q: QueryTokens, sim: np.ndarray, token_ids: np.ndarray, offsets: np.ndarray,
                  sizes: np.ndarray, rows: list[int], results: list[ItemResult]) -> None:
        tokenizer = self.model.tokenizer
        shown = [i for i, t in enumerate(q.token_ids.tolist()) if t not in self._special]
        query_tokens = tokenizer.tokens(q.token_ids[shown].tolist())
        for k, begin, size in zip(rows, offsets.tolist(), sizes.tolist(), strict=True):
            block = sim[begin : begin + size, shown]  # (item tokens, shown query tokens)
            best = block.argmax(axis=0)
            title_tokens = tokenizer.tokens(token_ids[begin + best].tolist())
            results[k].evidence = [Match(qt, tt, round(float(block[j, i]), 4))
                                   for i, (qt, tt, j) in enumerate(zip(query_tokens, title_tokens, best.tolist(),
                                                                       strict=True))]
