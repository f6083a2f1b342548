"""The Redis item store: one Redis string per item, one MGET per request.

Keys (``<model version>`` is :attr:`relevance_core.model_repository.ModelVersion.label`, e.g. ``colbert:1``)::

    <namespace>:<model version>:<item id>     the item's bytes (see :mod:`service.store.codec`)
    <namespace>:<model version>#codec         the codec its items were encoded with
    <namespace>:<model version>#ids           a set of the item ids (count, and resume in the indexer)
    <namespace>:active                        the model version whose index is complete (see activate)

Every item key has a ``:`` after the model version and no metadata key does, so no item id (``__codec__``
included) can name a metadata key. The first MGET of a store also fetches the codec, so every ``get_many`` is one
round trip. Items are written with the stored codec; a codec given at construction (or to
:meth:`RedisItemStore.set_codec`) is stored (SET NX) when the version has none yet, and the stored one wins when
another writer got there first. Every write pipeline sets the codec again (SET NX) beside the items and adds
their ids to the set, so a Redis that restarted empty gets its metadata back with the first write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from relevance_core.redaction import redact_url
from service.health import Health
from service.store import ItemBatch, ItemTokens, StoreError
from service.store.codec import TokenCodec

CODEC_SUFFIX = "#codec"
IDS_SUFFIX = "#ids"
_IDS_PER_CHECK = 4096


def connect(url: str, *, timeout_s: float = 2.0, retries: int = 1) -> redis.Redis:
    """A client that fails fast: ``timeout_s`` to connect and per command, ``retries`` immediate retries on a
    connection error (the request path falls back to encoding rather than waiting on a dead Redis)."""
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                    retry=Retry(NoBackoff(), retries))
    except ValueError as exc:
        raise StoreError(f"redis {redact_url(url)}: bad URL: {exc}") from None


def _raw(value: bytes | str | None) -> bytes | None:
    """A reply as the bytes it is: `connect`'s clients never decode replies, though redis-py types every reply
    ``bytes | str``."""
    if isinstance(value, str):
        raise StoreError("redis returned text where bytes were expected (a client with decode_responses on)")
    return value


def active_key(namespace: str) -> str:
    return f"{namespace}:active"


def active_version(url: str, namespace: str) -> str | None:
    """The model version the last completed index of ``namespace`` activated, None when none did."""
    client = connect(url)
    try:
        value = client.get(active_key(namespace))
    except redis.RedisError as exc:
        raise StoreError(f"redis {redact_url(url)}: cannot read {active_key(namespace)}: {exc}") from None
    finally:
        client.close()
    raw = _raw(value)
    return None if raw is None else raw.decode()


class RedisItemStore:
    """Items of one model version in Redis (see the module docstring for the keys)."""

    in_process = False  # every read is a round trip: the gateway calls reads on its store thread pool

    def __init__(self, url: str, namespace: str, model_version: str, codec: TokenCodec | None = None, *,
                 chunk_size: int = 256, timeout_s: float = 2.0) -> None:
        self.url = redact_url(url)
        self.namespace = namespace
        self.model_version = model_version
        self.chunk_size = chunk_size
        self._prefix = f"{namespace}:{model_version}:"
        self._codec_key = f"{namespace}:{model_version}{CODEC_SUFFIX}"
        self._ids_key = f"{namespace}:{model_version}{IDS_SUFFIX}"
        self._initial_codec = codec
        self._codec: TokenCodec | None = None  # the stored codec, once read
        self._client = connect(url, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"RedisItemStore({self.url!r}, namespace={self.namespace!r}, model_version={self.model_version!r})"

    def _error(self, action: str, exc: Exception) -> StoreError:
        return StoreError(f"redis {self.url}: {action} ({self._prefix}*): {exc}")

    def key(self, item_id: str) -> str:
        return self._prefix + item_id

    def stored_codec(self) -> TokenCodec | None:
        """The codec this version's items are stored with, None while it has none (read once, then cached)."""
        if self._codec is None:
            try:
                data = self._client.get(self._codec_key)
            except redis.RedisError as exc:
                raise self._error("read the codec", exc) from None
            raw = _raw(data)
            self._codec = None if raw is None else TokenCodec.from_bytes(raw)
        return self._codec

    def _mget(self, ids: Sequence[str]) -> tuple[TokenCodec | None, list[bytes | None]]:
        """One MGET of the items (and of the codec, until it is known); codec None when nothing was written."""
        keys = [self.key(i) for i in ids]
        fetch_codec = self._codec is None
        try:
            values = [_raw(v) for v in self._client.mget([self._codec_key, *keys] if fetch_codec else keys)]
        except redis.RedisError as exc:
            raise self._error(f"MGET of {len(keys)} items", exc) from None
        if fetch_codec:
            codec_bytes, values = values[0], values[1:]
            if codec_bytes is None:  # nothing was ever written for this version
                return None, [None] * len(ids)
            self._codec = TokenCodec.from_bytes(codec_bytes)
        return self._codec, values

    def get_many(self, ids: Sequence[str]) -> list[ItemTokens | None]:
        if not ids:
            return []
        codec, values = self._mget(ids)
        return [None] * len(ids) if codec is None else codec.decode_items(values)

    def get_batch(self, ids: Sequence[str]) -> tuple[ItemBatch, list[int]]:
        slots = []
        if ids:
            codec, values = self._mget(ids)
            slots = [slot for slot, value in enumerate(values) if value is not None]
            if codec is not None and slots:
                return codec.decode_batch(codec.unpack([v for v in values if v is not None])), slots
        return ItemBatch.empty(), []

    def set_codec(self, codec: TokenCodec) -> TokenCodec:
        """Store ``codec`` for this version unless one is stored already (SET NX); returns the codec in force."""
        try:
            self._client.set(self._codec_key, codec.to_bytes(), nx=True)
        except redis.RedisError as exc:
            raise self._error("store the codec", exc) from None
        self._codec = None
        stored = self.stored_codec()  # ours, or a concurrent writer's
        assert stored is not None
        return stored

    def _writing_codec(self) -> TokenCodec:
        stored = self.stored_codec()
        if stored is not None:
            return stored
        if self._initial_codec is None:
            raise StoreError(f"redis {self.url}: no codec stored for {self.model_version} and none given to write "
                             "with")
        return self.set_codec(self._initial_codec)

    def put_many(self, items: Mapping[str, ItemTokens]) -> None:
        """Insert or replace ``items``: one pipeline of SET NX of the codec + MSET + SADD per ``chunk_size`` items
        (the metadata travels with every batch: a Redis restarted empty gets it back)."""
        if not items:
            return
        codec = self._writing_codec()
        codec_bytes = codec.to_bytes()
        ids = list(items)
        try:
            for begin in range(0, len(ids), self.chunk_size):
                chunk = ids[begin : begin + self.chunk_size]
                blobs = codec.encode_items([items[i] for i in chunk])
                pipe = self._client.pipeline(transaction=False)
                pipe.set(self._codec_key, codec_bytes, nx=True)
                pipe.mset({self.key(i): blob for i, blob in zip(chunk, blobs, strict=True)})
                pipe.sadd(self._ids_key, *chunk)
                pipe.execute()
        except redis.RedisError as exc:
            raise self._error(f"write {len(ids)} items", exc) from None

    def missing(self, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` not stored for this version (one SMISMEMBER per 4096 ids)."""
        out: list[str] = []
        try:
            for begin in range(0, len(ids), _IDS_PER_CHECK):
                chunk = ids[begin : begin + _IDS_PER_CHECK]
                present = self._client.smismember(self._ids_key, list(chunk))
                out.extend(i for i, here in zip(chunk, present, strict=True) if not here)
        except redis.RedisError as exc:
            raise self._error(f"check {len(ids)} ids", exc) from None
        return out

    def count(self) -> int:
        try:
            return int(self._client.scard(self._ids_key))
        except redis.RedisError as exc:
            raise self._error("count items", exc) from None

    def ping(self) -> bool:
        return self.health().ok

    def health(self) -> Health:
        try:
            ok = bool(self._client.ping())
        except redis.RedisError as exc:
            return Health(False, f"redis: {type(exc).__name__}")
        return Health(ok, "redis answers PING" if ok else "redis did not answer PING")

    def flush(self) -> None:
        """Nothing to do: every ``put_many`` is on the server when it returns (the indexer's checkpoint)."""

    def activate(self) -> None:
        """Point ``<namespace>:active`` at this model version (one SET; readers switch on their next read)."""
        try:
            self._client.set(active_key(self.namespace), self.model_version)
        except redis.RedisError as exc:
            raise self._error("activate", exc) from None

    def close(self) -> None:
        self._client.close()
