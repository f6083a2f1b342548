"""The item token-embedding stores and their codec, against real backends: a redis-server child process and the
local memory-mapped store in a temporary directory. The behavioural tests run against both stores."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
import redis

from service.store import ItemTokens, StoreError, pad_items, unpad_items
from service.store import local as local_store
from service.store import redis as redis_store
from service.store.codec import TokenCodec
from service.store.local import LocalItemStore
from service.store.redis import RedisItemStore
from tests.ports import free_port
from tests.service.conftest import RedisServer

DIM = 128
SQ8_MIN_COSINE = 0.99  # the stated tolerance: every decoded sq8 token vs the original


def random_items(n: int, seed: int = 0, *, prefix: str = "p") -> dict[str, ItemTokens]:
    """Unit-length token vectors like the encoder's, 3..32 tokens per item."""
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(n):
        length = int(rng.integers(3, 33))
        vectors = rng.standard_normal((length, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        mask = rng.random(length) > 0.2
        items[f"{prefix}{i}"] = ItemTokens(vectors, mask, rng.integers(0, 30_000, length).astype(np.int32))
    return items


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


ITEMS = random_items(60)
SQ8 = TokenCodec.train_sq8(np.concatenate([item.vectors for item in ITEMS.values()]))
F32 = TokenCodec.float32(DIM)


def assert_same(got: ItemTokens | None, want: ItemTokens, codec: TokenCodec) -> None:
    assert got is not None
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.token_ids, want.token_ids)
    assert got.vectors.dtype == np.float32 and got.vectors.shape == want.vectors.shape
    if codec.name == "float32":
        np.testing.assert_array_equal(got.vectors, want.vectors)
    else:
        assert cosines(got.vectors, want.vectors).min() >= SQ8_MIN_COSINE


# -- the codec -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [SQ8, TokenCodec.sq8_unit(DIM)], ids=["trained", "unit-range"])
def test_sq8_tokens_round_trip_within_tolerance(codec: TokenCodec) -> None:
    fresh = np.concatenate([item.vectors for item in random_items(20, seed=7).values()])  # not the training data
    decoded = codec.decode_vectors(codec.encode_vectors(fresh))
    assert cosines(decoded, fresh).min() >= SQ8_MIN_COSINE
    assert codec.code_size == DIM


def test_numpy_decode_is_what_faiss_decodes() -> None:
    header = 9  # magic, kind, dim (see codec._CODEC_HEADER)
    index = faiss.deserialize_index(np.frombuffer(SQ8.to_bytes(), dtype=np.uint8, offset=header))
    codes = SQ8.encode_vectors(ITEMS["p0"].vectors)
    np.testing.assert_allclose(SQ8.decode_vectors(codes), index.sa_decode(codes), atol=1e-6)


def test_float32_codec_is_exact() -> None:
    vectors = ITEMS["p1"].vectors
    np.testing.assert_array_equal(F32.decode_vectors(F32.encode_vectors(vectors)), vectors)


@pytest.mark.parametrize("codec", [SQ8, F32], ids=["sq8", "float32"])
def test_items_as_bytes(codec: TokenCodec) -> None:
    items = list(ITEMS.values())[:5]
    blobs = codec.encode_items(items)
    for blob, item in zip(blobs, items, strict=True):
        n = len(item)
        assert len(blob) == codec.item_nbytes(n) == 4 + n * (codec.code_size + 4) + (n + 7) // 8
    decoded = codec.decode_items([blobs[0], None, blobs[1], None])
    assert decoded[1] is None and decoded[3] is None
    assert_same(decoded[0], items[0], codec)
    assert_same(decoded[2], items[1], codec)
    restored = TokenCodec.from_bytes(codec.to_bytes())
    assert restored == codec
    assert_same(restored.decode_items(blobs[:1])[0], items[0], codec)


def _clustered_tokens(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 64 directions, as a trained encoder's tokens cluster (random vectors would not)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(64, DIM))
    vectors = centres[rng.integers(0, 64, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pq() -> TokenCodec:
    return TokenCodec.train_pq(_clustered_tokens(4000, 0))


def test_pq32_keeps_clustered_tokens_and_decodes_as_faiss_does(pq: TokenCodec) -> None:
    fresh = _clustered_tokens(2000, 1)  # not the training data
    codes = pq.encode_vectors(fresh)
    assert codes.shape == (2000, 32) and pq.code_size == 32
    decoded = pq.decode_vectors(codes)
    assert cosines(decoded, fresh).mean() > 0.95
    header = 9  # magic, kind, dim (see codec._CODEC_HEADER)
    index = faiss.deserialize_index(np.frombuffer(pq.to_bytes(), dtype=np.uint8, offset=header))
    np.testing.assert_allclose(decoded, index.sa_decode(codes), atol=1e-6)
    restored = TokenCodec.from_bytes(pq.to_bytes())
    assert restored == pq and np.array_equal(restored.decode_vectors(codes), decoded)
    item = ItemTokens(fresh[:21], np.ones(21, bool), np.arange(21, dtype=np.int32))
    blob = pq.encode_items([item])[0]
    assert len(blob) == pq.item_nbytes(21) <= 1024  # a typical title's ~21 tokens under 1 KiB
    got = pq.decode_items([blob])[0]
    assert got is not None and np.array_equal(got.token_ids, item.token_ids)
    with pytest.raises(ValueError, match="at least 256 sample vectors"):
        TokenCodec.train_pq(fresh[:100])


def test_sq8_is_about_four_times_smaller() -> None:
    n = 20
    assert F32.item_nbytes(n) / SQ8.item_nbytes(n) > 3.8


def test_corrupt_entries_raise_store_error() -> None:
    blob = SQ8.encode_items([ITEMS["p0"]])[0]
    with pytest.raises(StoreError, match="corrupt item"):
        SQ8.decode_items([blob[:-1]])
    with pytest.raises(StoreError, match="not by this float32 codec"):
        F32.decode_items([blob])
    with pytest.raises(StoreError, match="corrupt codec"):
        TokenCodec.from_bytes(SQ8.to_bytes()[:20])


def test_pad_and_unpad_are_inverse() -> None:
    items = list(ITEMS.values())[:4]
    vectors, mask = pad_items(items, DIM)
    ids = np.zeros(mask.shape, dtype=np.int64)
    for row, item in enumerate(items):
        ids[row, : len(item)] = item.token_ids
    for got, want in zip(unpad_items(vectors, mask, ids, pad_id=0), items, strict=True):
        assert_same(got, want, F32)


# -- both stores ---------------------------------------------------------------------------------------------------

StoreFactory = Callable[..., "LocalItemStore | RedisItemStore"]


@pytest.fixture(params=["local", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of ``kind`` sharing one backend (one local directory, or one Redis namespace of the session server)
    that differ only by model version."""
    opened: list[LocalItemStore | RedisItemStore] = []
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        namespace = f"test-{request.node.name}"

    def _make(model_version: str = "colbert:1", codec: TokenCodec | None = None) -> LocalItemStore | RedisItemStore:
        store: LocalItemStore | RedisItemStore
        if kind == "local":
            store = LocalItemStore(tmp_path / "index", model_version, codec)
        else:
            store = RedisItemStore(server.url, namespace, model_version, codec)
        opened.append(store)
        return store

    yield _make
    for store in opened:
        store.close()


def persist(store: LocalItemStore | RedisItemStore) -> None:
    """Make written items durable: a new generation for the local store; nothing to do for Redis."""
    store.flush()


def active(store: LocalItemStore | RedisItemStore) -> str | None:
    if isinstance(store, LocalItemStore):
        return local_store.active_version(store.directory)
    return redis_store.active_version(store.url, store.namespace)


@pytest.mark.parametrize("codec", [SQ8, F32], ids=["sq8", "float32"])
def test_round_trip_through_a_fresh_reader(make_store: StoreFactory, codec: TokenCodec) -> None:
    writer = make_store(codec=codec)
    writer.put_many(ITEMS)
    assert_same(writer.get_many(["p3"])[0], ITEMS["p3"], codec)  # readable at once
    persist(writer)
    reader = make_store()  # no codec given: it reads the stored one
    ids = list(ITEMS)
    for got, item_id in zip(reader.get_many(ids), ids, strict=True):
        assert_same(got, ITEMS[item_id], codec)
    assert reader.count() == len(ITEMS)
    assert reader.stored_codec() == codec


def test_unknown_ids_are_none_in_request_order(make_store: StoreFactory) -> None:
    store = make_store(codec=SQ8)
    assert store.get_many(["p0", "p1"]) == [None, None]  # nothing stored yet, not even a codec
    store.put_many({k: ITEMS[k] for k in ("p0", "p1", "p2")})
    persist(store)
    got = store.get_many(["nope", "p2", "p0", "missing", "p2"])
    assert [g is None for g in got] == [True, False, False, True, False]
    assert_same(got[1], ITEMS["p2"], SQ8)
    assert_same(got[2], ITEMS["p0"], SQ8)
    assert_same(got[4], ITEMS["p2"], SQ8)
    assert store.get_many([]) == []
    assert store.missing(["p0", "x", "p2", "y"]) == ["x", "y"]


def test_get_batch_holds_what_get_many_returns(make_store: StoreFactory) -> None:
    """The request path's read: found items concatenated, each with its position in the request; persisted
    items and items still in the local store's overlay together."""
    store = make_store(codec=SQ8)
    assert store.get_batch(["p0"])[1] == []
    store.put_many({k: ITEMS[k] for k in ("p0", "p1")})
    persist(store)
    store.put_many({"p2": ITEMS["p2"]})  # local: overlay only
    ids = ["p2", "nope", "p0", "p1"]
    batch, slots = store.get_batch(ids)
    assert sorted(slots) == [0, 2, 3] and len(batch) == 3
    many = store.get_many(ids)
    at = 0
    for slot, length in zip(slots, batch.lengths.tolist(), strict=True):
        item = many[slot]
        assert item is not None and len(item) == length
        np.testing.assert_array_equal(batch.vectors[at : at + length], item.vectors)
        np.testing.assert_array_equal(batch.mask[at : at + length], item.mask)
        np.testing.assert_array_equal(batch.token_ids[at : at + length], item.token_ids)
        at += length
    assert at == len(batch.vectors)


def test_put_replaces_an_item(make_store: StoreFactory) -> None:
    store = make_store(codec=F32)
    store.put_many({"a": ITEMS["p0"], "b": ITEMS["p1"]})
    persist(store)
    store.put_many({"a": ITEMS["p5"]})
    assert_same(store.get_many(["a"])[0], ITEMS["p5"], F32)
    persist(store)
    assert_same(make_store().get_many(["a"])[0], ITEMS["p5"], F32)
    assert store.count() == 2


def test_model_versions_never_mix(make_store: StoreFactory) -> None:
    one, two = make_store("colbert:1", codec=SQ8), make_store("colbert:2", codec=F32)
    one.put_many({"shared": ITEMS["p0"], "only-1": ITEMS["p1"]})
    two.put_many({"shared": ITEMS["p9"]})
    persist(one)
    persist(two)
    assert_same(one.get_many(["shared"])[0], ITEMS["p0"], SQ8)
    assert_same(two.get_many(["shared"])[0], ITEMS["p9"], F32)
    assert two.get_many(["only-1"]) == [None]
    assert (one.count(), two.count()) == (2, 1)
    assert make_store("colbert:3").get_many(["shared"]) == [None]


def test_writing_needs_a_codec(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.stored_codec() is None
    with pytest.raises(StoreError, match="codec"):
        store.put_many({"a": ITEMS["p0"]})
    assert store.count() == 0
    assert store.set_codec(F32) == F32


def test_the_first_stored_codec_wins(make_store: StoreFactory) -> None:
    first = make_store(codec=SQ8)
    first.put_many({"a": ITEMS["p0"]})
    persist(first)
    second = make_store(codec=F32)  # a writer that would have started with float32
    second.put_many({"b": ITEMS["p1"]})
    persist(second)
    assert second.stored_codec() == SQ8
    reader = make_store()
    assert_same(reader.get_many(["b"])[0], ITEMS["p1"], SQ8)


def test_activation_is_atomic(make_store: StoreFactory) -> None:
    """A reader polling the active pointer while it flips between two versions never sees anything else."""
    one, two = make_store("colbert:1", codec=SQ8), make_store("colbert:2", codec=SQ8)
    assert active(one) is None
    one.activate()
    assert active(one) == "colbert:1"
    seen: set[str | None] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            seen.add(active(one))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(100):
            two.activate()
            one.activate()
    finally:
        done.set()
        reader.join()
    two.activate()
    assert active(one) == "colbert:2"
    assert seen <= {"colbert:1", "colbert:2"}


def test_ping(make_store: StoreFactory) -> None:
    assert make_store(codec=SQ8).ping()


# -- Redis specifics -----------------------------------------------------------------------------------------------


def _calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_redis_get_many_is_one_mget(redis_server: RedisServer) -> None:
    store = RedisItemStore(redis_server.url, "one-round-trip", "colbert:1", SQ8)
    store.put_many(ITEMS)
    reader = RedisItemStore(redis_server.url, "one-round-trip", "colbert:1")
    admin = redis.Redis.from_url(redis_server.url)
    ids = [f"p{i}" for i in range(50)] + [f"unknown{i}" for i in range(50)]
    try:
        assert reader.ping()  # the connection's handshake, so that only the reads are counted
        for _ in range(2):  # the first call also fetches the codec, in the same MGET
            before = _calls(admin)
            got = reader.get_many(ids)
            after = _calls(admin)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            delta = {k: v for k, v in delta.items() if v and k != "info"}
            assert delta == {"mget": 1}
        assert sum(g is not None for g in got) == 50
        keys = {k.decode() for k in admin.keys("one-round-trip:*")}
        assert "one-round-trip:colbert:1:p0" in keys and "one-round-trip:colbert:1#codec" in keys
    finally:
        admin.close()
        store.close()
        reader.close()


def test_redis_ids_cannot_shadow_the_stores_own_keys(redis_server: RedisServer) -> None:
    """Any id is an item, those that look like the store's own keys included; a fresh reader (codec not cached)
    still finds the codec and every item."""
    ids = ["__codec__", "__ids__", "#codec", "#ids", ":codec"]
    store = RedisItemStore(redis_server.url, "reserved", "colbert:1", SQ8)
    store.put_many({item_id: ITEMS[f"p{k}"] for k, item_id in enumerate(ids)})
    reader = RedisItemStore(redis_server.url, "reserved", "colbert:1")
    try:
        for k, got in enumerate(reader.get_many([*ids, "p0"])[:-1]):
            assert_same(got, ITEMS[f"p{k}"], SQ8)
        assert reader.count() == len(ids) and reader.stored_codec() == SQ8
    finally:
        store.close()
        reader.close()


def test_redis_restarted_empty_gets_its_metadata_back_with_the_next_write(
        start_redis: Callable[[], RedisServer]) -> None:
    """A writer that cached the codec writes it again with every batch: after Redis restarts empty, readers
    started later find the codec and the id set for the items written since."""
    server = start_redis()
    writer = RedisItemStore(server.url, "restart", "colbert:1", SQ8)
    writer.put_many({"p0": ITEMS["p0"]})
    server.restart_empty()
    writer.put_many({"p1": ITEMS["p1"]})
    reader = RedisItemStore(server.url, "restart", "colbert:1")
    try:
        got = reader.get_many(["p0", "p1"])
        assert got[0] is None
        assert_same(got[1], ITEMS["p1"], SQ8)
        assert reader.count() == 1 and reader.missing(["p0", "p1"]) == ["p0"]
    finally:
        writer.close()
        reader.close()


def test_redis_down_is_a_store_error() -> None:
    store = RedisItemStore(f"redis://127.0.0.1:{free_port()}/0", "down", "colbert:1", SQ8, timeout_s=0.5)
    assert not store.ping()
    with pytest.raises(StoreError, match=r"redis redis://127\.0\.0\.1:\d+/0: MGET of 1 items"):
        store.get_many(["p0"])
    with pytest.raises(StoreError, match="redis"):
        store.put_many({"p0": ITEMS["p0"]})
    with pytest.raises(StoreError):
        store.count()
    store.close()


def test_redis_stopping_mid_way_is_a_store_error(start_redis: Callable[[], RedisServer]) -> None:
    server = start_redis()
    store = RedisItemStore(server.url, "stops", "colbert:1", SQ8, timeout_s=0.5)
    store.put_many({"p0": ITEMS["p0"]})
    assert store.get_many(["p0"])[0] is not None
    server.stop()
    assert not store.ping()
    with pytest.raises(StoreError, match="MGET"):
        store.get_many(["p0"])
    with pytest.raises(StoreError):
        redis_store.active_version(server.url, "stops")
    store.close()


@pytest.mark.parametrize("form", ["redis://user:hunter2@127.0.0.1:{port}/0",
                                  "redis://127.0.0.1:{port}/0?password=hunter2"])
def test_redis_url_password_stays_out_of_messages(form: str) -> None:
    store = RedisItemStore(form.format(port=free_port()), "pw", "colbert:1", SQ8, timeout_s=0.5)
    with pytest.raises(StoreError) as caught:
        store.get_many(["p0"])
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    store.close()


# -- local store specifics -----------------------------------------------------------------------------------------


def test_local_flush_writes_a_new_generation_and_switches_current(tmp_path: Path) -> None:
    root = tmp_path / "index"
    writer = LocalItemStore(root, "colbert:1", SQ8)
    assert writer.flush() is None  # nothing pending
    writer.put_many({k: ITEMS[k] for k in ("p0", "p1")})
    first = writer.flush()
    assert first is not None and writer.pending == 0
    early_reader = LocalItemStore(root, "colbert:1")
    assert early_reader.generation == first
    writer.put_many({"p2": ITEMS["p2"], "p0": ITEMS["p7"]})
    second = writer.flush()
    assert second is not None and second != first
    assert os.readlink(root / "colbert:1" / local_store.CURRENT) == second.name
    assert not any(p.name.startswith(".current") for p in (root / "colbert:1").iterdir())  # no temp symlink left
    # the early reader still reads its own generation until it reloads
    assert early_reader.get_many(["p2"]) == [None]
    assert_same(early_reader.get_many(["p0"])[0], ITEMS["p0"], SQ8)
    assert early_reader.reload() and not early_reader.reload()
    assert_same(early_reader.get_many(["p0"])[0], ITEMS["p7"], SQ8)
    assert early_reader.count() == 3
    early_reader.close()
    assert not early_reader.ping()
    writer.close()


def test_local_reads_during_flushes_always_find_written_items(tmp_path: Path) -> None:
    """A reader thread never misses an item while the writer keeps flushing overlay items into new generations."""
    store = LocalItemStore(tmp_path, "colbert:1", SQ8)
    ids = list(ITEMS)
    store.put_many({k: ITEMS[k] for k in ids[:10]})
    misses: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            misses.extend(i for i, got in zip(ids[:10], store.get_many(ids[:10]), strict=True) if got is None)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for begin in range(10, len(ids), 10):
            store.put_many({k: ITEMS[k] for k in ids[begin : begin + 10]})
            store.flush()
    finally:
        done.set()
        reader.join()
    assert misses == []
    assert store.count() == len(ITEMS) and store.pending == 0
    store.close()


def test_local_readers_ignore_half_written_generations(tmp_path: Path) -> None:
    root = tmp_path / "index"
    writer = LocalItemStore(root, "colbert:1", F32)
    writer.put_many({"p0": ITEMS["p0"]})
    good = writer.flush()
    assert good is not None
    broken = root / "colbert:1" / "gen-000099"  # e.g. a flush killed before switching current
    broken.mkdir()
    (broken / "codes.npy").write_bytes(b"garbage")
    reader = LocalItemStore(root, "colbert:1")
    assert reader.generation == good
    assert_same(reader.get_many(["p0"])[0], ITEMS["p0"], F32)
    writer.put_many({"p1": ITEMS["p1"]})
    newest = writer.flush()
    assert newest is not None and newest.name == "gen-000100"
    assert not broken.exists()  # pruned with generations older than the previous one
    reader.close()
    writer.close()


def test_local_arrays_are_memory_mapped_read_only(tmp_path: Path) -> None:
    writer = LocalItemStore(tmp_path, "colbert:1", SQ8)
    writer.put_many(ITEMS)
    generation = writer.flush()
    assert generation is not None
    codes = np.load(generation / "codes.npy", mmap_mode="r")
    assert codes.dtype == np.uint8 and codes.shape[1] == SQ8.code_size
    assert len(np.load(generation / "offsets.npy")) == len(ITEMS) + 1
    writer.close()


def test_local_version_labels_must_name_a_directory(tmp_path: Path) -> None:
    for label in ("", "../x", "a/b", ".hidden", "active"):
        with pytest.raises(ValueError):
            LocalItemStore(tmp_path, label)
