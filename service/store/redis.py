"""The Redis item store: one Redis string per item, read back in one round trip per request (per node of a Redis
Cluster).

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

A ``redis+cluster://`` (or ``rediss+cluster://``) URL selects :class:`RedisClusterItemStore`, for a Redis Cluster:
the same item keys, spread over the hash slots by their whole name, and the version's metadata under one hash tag,
``{<namespace>:<model version>}#codec`` and ``{<namespace>:<model version>}#ids``, so that the codec and the id
set live on one slot (a version's metadata is on one node, all or nothing). The active pointer keeps its name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterCrossSlotError, ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry

from relevance_core.redaction import redact_url
from service.health import Health
from service.store import ItemBatch, ItemTokens, PartialReadError, StoreError
from service.store.codec import TokenCodec

log = logging.getLogger(__name__)

CODEC_SUFFIX = "#codec"
IDS_SUFFIX = "#ids"
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_IDS_PER_CHECK = 4096
# what a Redis Cluster node answers a client that is not cluster-aware (MovedError is an AskError)
_CLUSTER_REPLIES = (AskError, ClusterDownError, ClusterCrossSlotError, TryAgainError)

Client = redis.Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    """True for a ``redis+cluster://`` or ``rediss+cluster://`` URL (a Redis Cluster)."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def connect(url: str, *, timeout_s: float = 2.0, retries: int = 1) -> Client:
    """A client that fails fast: ``timeout_s`` to connect and per command, ``retries`` immediate retries on a
    connection error (the request path falls back to encoding rather than waiting on a dead Redis). A single
    server's client connects on its first command; a cluster's reads the slot map from the node the URL names
    now, so a cluster that cannot be reached, or a server that is not one, is a :class:`StoreError` here."""
    scheme, _, rest = url.partition("://")
    retry = Retry(NoBackoff(), retries)
    try:
        if not is_cluster_url(url):
            return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=retry)
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s, retry=retry)
    except ValueError as exc:
        raise StoreError(f"redis {redact_url(url)}: bad URL: {exc}") from None
    except (RedisClusterException, redis.RedisError) as exc:
        if "cluster mode is not enabled" in str(exc).lower():
            raise StoreError(f"redis {redact_url(url)}: the server is not a Redis Cluster node (cluster mode is not "
                             f"enabled on it): use a redis:// URL for a single server") from None
        raise StoreError(f"redis {redact_url(url)}: cannot reach the cluster: {exc}") from None


def _explain(exc: Exception, cluster: bool) -> str:
    """The error, with what to change when a single-server client was pointed at a cluster node."""
    if not cluster and isinstance(exc, _CLUSTER_REPLIES):
        return (f"{type(exc).__name__}: {exc}: the server is a Redis Cluster node: use a redis+cluster:// URL "
                "(cluster mode)")
    return str(exc)


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
    except (RedisClusterException, redis.RedisError) as exc:
        raise StoreError(f"redis {redact_url(url)}: cannot read {active_key(namespace)}: "
                         f"{_explain(exc, is_cluster_url(url))}") from None
    finally:
        client.close()
    raw = _raw(value)
    return None if raw is None else raw.decode()


def open_redis_store(url: str, namespace: str, model_version: str, codec: TokenCodec | None = None, *,
                     timeout_s: float = 2.0) -> RedisItemStore:
    """The store for ``url``: :class:`RedisClusterItemStore` for a ``redis+cluster://`` URL, else
    :class:`RedisItemStore`."""
    kind = RedisClusterItemStore if is_cluster_url(url) else RedisItemStore
    return kind(url, namespace, model_version, codec, timeout_s=timeout_s)


class RedisItemStore:
    """Items of one model version in one Redis server (see the module docstring for the keys)."""

    in_process = False  # every read is a round trip: the gateway calls reads on its store thread pool
    cluster = False

    def __init__(self, url: str, namespace: str, model_version: str, codec: TokenCodec | None = None, *,
                 chunk_size: int = 256, timeout_s: float = 2.0) -> None:
        self.url = redact_url(url)
        self.namespace = namespace
        self.model_version = model_version
        self.chunk_size = chunk_size
        self._prefix = f"{namespace}:{model_version}:"
        metadata = self._metadata_prefix()
        self._codec_key = metadata + CODEC_SUFFIX
        self._ids_key = metadata + IDS_SUFFIX
        self._initial_codec = codec
        self._codec: TokenCodec | None = None  # the stored codec, once read
        self._secret_url = url
        self._timeout_s = timeout_s
        self._client: Client | None = None if self.cluster else connect(url, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.url!r}, namespace={self.namespace!r}, "
                f"model_version={self.model_version!r})")

    def _metadata_prefix(self) -> str:
        return f"{self.namespace}:{self.model_version}"

    def _redis(self) -> Client:
        """The client (a cluster's is made on first use, and again after a failed attempt)."""
        if self._client is None:
            self._client = connect(self._secret_url, timeout_s=self._timeout_s)
        return self._client

    def _error(self, action: str, exc: Exception) -> StoreError:
        return StoreError(f"redis {self.url}: {action} ({self._prefix}*): {_explain(exc, self.cluster)}")

    def key(self, item_id: str) -> str:
        return self._prefix + item_id

    def stored_codec(self) -> TokenCodec | None:
        """The codec this version's items are stored with, None while it has none (read once, then cached)."""
        if self._codec is None:
            try:
                data = self._redis().get(self._codec_key)
            except (RedisClusterException, redis.RedisError) as exc:
                raise self._error("read the codec", exc) from None
            raw = _raw(data)
            self._codec = None if raw is None else TokenCodec.from_bytes(raw)
        return self._codec

    def _read(self, ids: Sequence[str]) -> tuple[TokenCodec | None, list[bytes | None], list[int], str]:
        """The items' bytes in ``ids`` order and the codec (None when nothing was written), the positions that
        could not be read and why. Here one MGET of the items (and of the codec, until it is known), all or
        nothing."""
        keys = [self.key(i) for i in ids]
        fetch_codec = self._codec is None
        try:
            values = [_raw(v) for v in self._redis().mget([self._codec_key, *keys] if fetch_codec else keys)]
        except redis.RedisError as exc:
            raise self._error(f"MGET of {len(keys)} items", exc) from None
        if fetch_codec:
            codec_bytes, values = values[0], values[1:]
            if codec_bytes is None:  # nothing was ever written for this version
                return None, [None] * len(ids), [], ""
            self._codec = TokenCodec.from_bytes(codec_bytes)
        return self._codec, values, [], ""

    def get_many(self, ids: Sequence[str]) -> list[ItemTokens | None]:
        if not ids:
            return []
        codec, values, unread, error = self._read(ids)
        if unread:
            raise StoreError(error)
        return [None] * len(ids) if codec is None else codec.decode_items(values)

    def get_batch(self, ids: Sequence[str]) -> tuple[ItemBatch, list[int]]:
        if not ids:
            return ItemBatch.empty(), []
        codec, values, unread, error = self._read(ids)
        slots = [slot for slot, value in enumerate(values) if value is not None]
        found = ItemBatch.empty(), list[int]()
        if codec is not None and slots:
            found = codec.decode_batch(codec.unpack([v for v in values if v is not None])), slots
        if unread:
            raise PartialReadError(error, found, unread)
        return found

    def set_codec(self, codec: TokenCodec) -> TokenCodec:
        """Store ``codec`` for this version unless one is stored already (SET NX); returns the codec in force."""
        try:
            self._redis().set(self._codec_key, codec.to_bytes(), nx=True)
        except (RedisClusterException, redis.RedisError) as exc:
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

    def _queue_items(self, pipe: Pipeline | ClusterPipeline, blobs: Mapping[str, bytes]) -> None:
        """Queue the writes of ``blobs`` (key -> bytes) on ``pipe``: one MSET."""
        pipe.mset(blobs)

    def put_many(self, items: Mapping[str, ItemTokens]) -> None:
        """Insert or replace ``items``: one pipeline of SET NX of the codec + the items + SADD per ``chunk_size``
        items (the metadata travels with every batch: a Redis restarted empty gets it back)."""
        if not items:
            return
        codec = self._writing_codec()
        codec_bytes = codec.to_bytes()
        ids = list(items)
        try:
            for begin in range(0, len(ids), self.chunk_size):
                chunk = ids[begin : begin + self.chunk_size]
                blobs = codec.encode_items([items[i] for i in chunk])
                pipe = self._redis().pipeline(transaction=False)
                pipe.set(self._codec_key, codec_bytes, nx=True)
                self._queue_items(pipe, {self.key(i): blob for i, blob in zip(chunk, blobs, strict=True)})
                pipe.sadd(self._ids_key, *chunk)
                pipe.execute()
        except (RedisClusterException, redis.RedisError) as exc:
            raise self._error(f"write {len(ids)} items", exc) from None

    def missing(self, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` not stored for this version (one SMISMEMBER per 4096 ids)."""
        out: list[str] = []
        try:
            for begin in range(0, len(ids), _IDS_PER_CHECK):
                chunk = ids[begin : begin + _IDS_PER_CHECK]
                present = self._redis().smismember(self._ids_key, list(chunk))
                out.extend(i for i, here in zip(chunk, present, strict=True) if not here)
        except (RedisClusterException, redis.RedisError) as exc:
            raise self._error(f"check {len(ids)} ids", exc) from None
        return out

    def count(self) -> int:
        try:
            return int(self._redis().scard(self._ids_key))
        except (RedisClusterException, redis.RedisError) as exc:
            raise self._error("count items", exc) from None

    def ping(self) -> bool:
        return self.health().ok

    def health(self) -> Health:
        try:
            ok = bool(self._redis().ping())
        except redis.RedisError as exc:
            return Health(False, f"redis: {type(exc).__name__}")
        return Health(ok, "redis answers PING" if ok else "redis did not answer PING")

    def flush(self) -> None:
        """Nothing to do: every ``put_many`` is on the server when it returns (the indexer's checkpoint)."""

    def activate(self) -> None:
        """Point ``<namespace>:active`` at this model version (one SET; readers switch on their next read)."""
        try:
            self._redis().set(active_key(self.namespace), self.model_version)
        except (RedisClusterException, redis.RedisError) as exc:
            raise self._error("activate", exc) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class RedisClusterItemStore(RedisItemStore):
    """Items of one model version in a Redis Cluster (a ``redis+cluster://`` URL; see the module docstring).

    A read groups the items' keys by hash slot and the slots by the master that serves them, and sends each
    master one pipeline of one MGET per slot; a master that cannot be reached costs only its own items, which
    ``get_batch`` reports as unread (:class:`~service.store.PartialReadError`). The client is made on first use,
    so a store opened while the cluster is down reports it (``health``) and works once the cluster is back."""

    cluster = True

    def __init__(self, url: str, namespace: str, model_version: str, codec: TokenCodec | None = None, *,
                 chunk_size: int = 256, timeout_s: float = 2.0) -> None:
        if "{" in namespace or "}" in namespace:
            raise StoreError(f"redis {redact_url(url)}: namespace {namespace!r}: braces would make a hash tag "
                             "that puts every item on one cluster slot; choose a namespace without { and }")
        super().__init__(url, namespace, model_version, codec, chunk_size=chunk_size, timeout_s=timeout_s)

    def _metadata_prefix(self) -> str:
        return "{" + super()._metadata_prefix() + "}"

    def _cluster(self) -> RedisCluster:
        client = self._redis()
        assert isinstance(client, RedisCluster)
        return client

    def _by_master(self, keys: Sequence[str]) -> dict[str, tuple[ClusterNode, dict[int, list[int]]]]:
        """The positions of ``keys`` by the master that serves them (by its name) and by hash slot."""
        client = self._cluster()
        by_node: dict[str, tuple[ClusterNode, dict[int, list[int]]]] = {}
        try:
            for position, key in enumerate(keys):
                slot = key_slot(key.encode())
                node = client.nodes_manager.get_node_from_slot(slot)
                by_node.setdefault(node.name, (node, {}))[1].setdefault(slot, []).append(position)
        except RedisClusterException as exc:  # e.g. a slot no master serves
            raise self._error(f"route {len(keys)} keys", exc) from None
        return by_node

    def _read(self, ids: Sequence[str]) -> tuple[TokenCodec | None, list[bytes | None], list[int], str]:
        codec = self.stored_codec()  # its own round trip, once: the codec lives on one slot of its own
        if codec is None:
            return None, [None] * len(ids), [], ""
        client = self._cluster()
        keys = [self.key(i) for i in ids]
        values: list[bytes | None] = [None] * len(ids)
        unread: list[int] = []
        errors: list[str] = []
        unreachable: str | None = None
        for name, (node, slots) in self._by_master(keys).items():
            try:
                pipe = client.get_redis_connection(node).pipeline(transaction=False)
                for positions in slots.values():
                    pipe.mget([keys[p] for p in positions])
                replies = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:  # the node cannot be reached: all of its items are unread
                unread.extend(p for positions in slots.values() for p in positions)
                errors.append(f"{name}: {exc}")
                unreachable = name
                continue
            for positions, reply in zip(slots.values(), replies, strict=True):
                if isinstance(reply, AskError):  # the slot moved (resharding): the cluster client follows it
                    try:
                        reply = client.mget([keys[p] for p in positions])
                    except (RedisClusterException, redis.RedisError) as exc:
                        reply = exc
                if isinstance(reply, Exception):
                    unread.extend(positions)
                    errors.append(f"{name}: {reply}")
                    continue
                for p, value in zip(positions, reply, strict=True):
                    values[p] = _raw(value)
        if unreachable is not None:
            self._refresh_slots(unreachable)
        if not unread:
            return codec, values, [], ""
        if len(unread) == len(ids):
            raise StoreError(f"redis {self.url}: read of {len(ids)} items ({self._prefix}*): {'; '.join(errors)}")
        return codec, values, sorted(unread), (f"redis {self.url}: {len(unread)} of {len(ids)} items unread "
                                               f"({self._prefix}*): {'; '.join(errors)}")

    def _refresh_slots(self, failed: str) -> None:
        """Read the slot map again after master ``failed`` could not be reached, so that the next read goes to
        the replica promoted in its place. Best effort: while no node answers, the old map stays in use."""
        try:
            self._cluster().nodes_manager.initialize(last_failed_node_name=failed)
        except (RedisClusterException, redis.RedisError, StoreError) as exc:
            log.debug("cannot refresh the slot map of %s: %s", self.url, exc)

    def missing(self, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` whose item key does not exist (one pipeline of EXISTS per master per 4096 ids): not
        the id set, which outlives the items of a master that restarted empty, so that ``relevance index`` writes
        them again."""
        client = self._cluster()
        absent: list[int] = []  # positions in ids
        try:
            for begin in range(0, len(ids), _IDS_PER_CHECK):
                keys = [self.key(i) for i in ids[begin : begin + _IDS_PER_CHECK]]
                for node, slots in self._by_master(keys).values():
                    pipe = client.get_redis_connection(node).pipeline(transaction=False)
                    positions = [p for group in slots.values() for p in group]
                    for p in positions:
                        pipe.exists(keys[p])
                    absent.extend(begin + p for p, here in zip(positions, pipe.execute(), strict=True) if not here)
        except redis.RedisError as exc:
            raise self._error(f"check {len(ids)} ids", exc) from None
        return [ids[p] for p in sorted(absent)]

    def _queue_items(self, pipe: Pipeline | ClusterPipeline, blobs: Mapping[str, bytes]) -> None:
        """One SET per item: the items are on many slots, which one MSET may not span."""
        for key, blob in blobs.items():
            pipe.set(key, blob)

    def health(self) -> Health:
        """Every master of the slot map answering PING (a down master fails it, naming the master)."""
        try:
            client = self._cluster()
        except StoreError as exc:
            return Health(False, str(exc))
        masters = client.get_primaries()
        down = []
        for node in masters:
            try:
                client.get_redis_connection(node).ping()
            except redis.RedisError as exc:
                down.append(f"{node.name} ({type(exc).__name__})")
        if down:
            return Health(False, f"redis cluster: {len(down)} of {len(masters)} masters do not answer PING: "
                                 f"{', '.join(down)}")
        return Health(True, f"redis cluster: {len(masters)} masters answer PING")
