"""The Redis store against a real three-master Redis Cluster (redis-server nodes joined by ``redis-cli --cluster
create``): items spread over every master and read back with one pipeline per master, the version's metadata on
one slot, a master down mid-way costing only its own items, and clear errors when the URL's mode does not match
the server."""

from __future__ import annotations

import time

import pytest
import redis
from pydantic import ValidationError
from redis.crc import key_slot

from service.settings import Settings
from service.store import PartialReadError, StoreError
from service.store import redis as redis_store
from service.store.redis import RedisClusterItemStore, RedisItemStore, open_redis_store
from tests.ports import free_port
from tests.service.conftest import RedisClusterNodes, RedisServer
from tests.service.store.test_store import ITEMS, SQ8, assert_same


def _calls(port: int, command: str) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    finally:
        client.close()


def test_round_trip_spread_over_every_master(redis_cluster: RedisClusterNodes) -> None:
    writer = open_redis_store(redis_cluster.url, "spread", "colbert:1", SQ8)
    assert isinstance(writer, RedisClusterItemStore)
    writer.put_many(ITEMS)
    writer.activate()
    reader = open_redis_store(redis_cluster.url, "spread", "colbert:1")
    try:
        ids = [*ITEMS, "unknown"]
        got = reader.get_many(ids)
        for item_id, item in zip(ids[:-1], got, strict=False):
            assert_same(item, ITEMS[item_id], SQ8)
        assert got[-1] is None
        batch, slots = reader.get_batch(ids)
        assert slots == list(range(len(ITEMS))) and len(batch) == len(ITEMS)
        assert reader.count() == len(ITEMS) and reader.missing(["p0", "x"]) == ["x"]
        assert redis_store.active_version(redis_cluster.url, "spread") == "colbert:1"
        holders = {redis_cluster.master_of(writer.key(i)).port for i in ITEMS}
        assert holders == {node.port for node in redis_cluster.nodes}  # not all on one slot or one master
        # the codec and the id set share a hash tag: one slot, one master
        assert key_slot(b"{spread:colbert:1}#codec") == key_slot(b"{spread:colbert:1}#ids")
        assert reader.health().ok and "3 masters" in reader.health().detail
    finally:
        writer.close()
        reader.close()


def test_a_read_is_one_pipeline_per_master(redis_cluster: RedisClusterNodes) -> None:
    """Every master serving some of the items gets MGETs (one per slot) and no master is asked twice."""
    writer = open_redis_store(redis_cluster.url, "pipelines", "colbert:1", SQ8)
    writer.put_many(ITEMS)
    reader = open_redis_store(redis_cluster.url, "pipelines", "colbert:1")
    try:
        assert reader.stored_codec() == SQ8  # the codec's own round trip, once, before counting
        ports = [node.port for node in redis_cluster.nodes]
        before = {port: _calls(port, "mget") for port in ports}
        reader.get_batch(list(ITEMS))
        after = {port: _calls(port, "mget") for port in ports}
        slots_per_master: dict[int, set[int]] = {}
        for item_id in ITEMS:
            key = reader.key(item_id)
            slots_per_master.setdefault(redis_cluster.master_of(key).port, set()).add(key_slot(key.encode()))
        assert {port: after[port] - before[port] for port in ports} == {
            port: len(slots) for port, slots in slots_per_master.items()}
    finally:
        writer.close()
        reader.close()


def test_a_master_down_costs_only_its_items() -> None:
    """A master killed mid-way: the items of the others are still read (PartialReadError carries them, naming
    the unread positions); get_many, all or nothing, fails; health names the master. Restarted (empty), it
    serves again, its items are unknown and missing (though the id set still lists them)."""
    cluster = RedisClusterNodes.start()
    try:
        store = open_redis_store(cluster.url, "down", "colbert:1", SQ8, timeout_s=0.5)
        store.put_many(ITEMS)
        metadata = cluster.master_of("{down:colbert:1}#codec")
        victim = next(n for n in cluster.nodes if n is not metadata and n is not cluster.nodes[0])
        ids = list(ITEMS)
        lost = {k for k, i in enumerate(ids) if cluster.master_of(store.key(i)) is victim}
        assert 0 < len(lost) < len(ids)
        victim.kill()
        with pytest.raises(PartialReadError) as caught:
            store.get_batch(ids)
        (batch, slots), unread = caught.value.found, caught.value.unread
        assert set(unread) == lost and set(slots) == set(range(len(ids))) - lost and len(batch) == len(slots)
        assert f"127.0.0.1:{victim.port}" in str(caught.value) and f"{len(lost)} of {len(ids)}" in str(caught.value)
        with pytest.raises(StoreError, match="items unread"):
            store.get_many(ids)
        health = store.health()
        assert not health.ok and f"127.0.0.1:{victim.port}" in health.detail and "1 of 3" in health.detail
        victim.restart_empty()
        cluster.wait_ok()
        batch, slots = store.get_batch(ids)
        assert set(slots) == set(range(len(ids))) - lost
        assert store.health().ok
        assert store.missing(ids) == [ids[k] for k in sorted(lost)]  # what the indexer writes again
        store.close()
    finally:
        cluster.stop()


def test_a_replica_promoted_in_place_of_a_dead_master_serves_its_items() -> None:
    """With replicas, the store reads the slot map again after a master fails to answer: once the cluster has
    promoted the master's replica, every item is read again, from it."""
    cluster = RedisClusterNodes.start(replicas=1)  # the first three nodes are the masters
    try:
        store = open_redis_store(cluster.url, "failover", "colbert:1", SQ8, timeout_s=0.5)
        store.put_many(ITEMS)
        metadata = cluster.master_of("{failover:colbert:1}#codec")
        victim = next(n for n in cluster.nodes[1:3] if n is not metadata)
        ids = list(ITEMS)
        assert any(cluster.master_of(store.key(i)) is victim for i in ids)
        primary = redis.Redis(port=victim.port)
        assert primary.execute_command("WAIT", 1, 5000) == 1  # its replica has every write
        primary.close()
        victim.kill()
        deadline = time.monotonic() + 25
        while True:
            try:
                batch, slots = store.get_batch(ids)
                break
            except PartialReadError:
                assert time.monotonic() < deadline, "the replica was not promoted, or the store kept the old map"
                time.sleep(0.2)
        assert slots == list(range(len(ids))) and len(batch) == len(ids)
        store.close()
    finally:
        cluster.stop()


def test_a_cluster_url_against_a_single_server_says_what_to_change(redis_server: RedisServer) -> None:
    url = redis_server.url.replace("redis://", "redis+cluster://")
    store = open_redis_store(url, "mode", "colbert:1", SQ8)
    with pytest.raises(StoreError) as caught:
        store.get_many(["p0"])
    assert str(caught.value) == (f"redis {url}: the server is not a Redis Cluster node (cluster mode is not enabled "
                                 "on it): use a redis:// URL for a single server")
    assert not store.health().ok


def test_a_single_server_url_against_a_cluster_says_what_to_change(redis_cluster: RedisClusterNodes) -> None:
    writer = open_redis_store(redis_cluster.url, "wrong-mode", "colbert:1", SQ8)
    writer.put_many(ITEMS)
    single = redis_cluster.url.replace("redis+cluster://", "redis://")
    store = open_redis_store(single, "wrong-mode", "colbert:1", SQ8)
    assert type(store) is RedisItemStore
    try:
        with pytest.raises(StoreError) as caught:  # the codec and the items are on several masters
            store.get_many(list(ITEMS))
        assert "use a redis+cluster:// URL" in str(caught.value) and single in str(caught.value)
        with pytest.raises(StoreError, match="redis\\+cluster://"):
            for namespace in ("a", "b", "c", "d", "e", "f", "g", "h"):  # some pointer is on another master
                redis_store.active_version(single, namespace)
    finally:
        writer.close()
        store.close()


def test_a_cluster_down_at_start_up_is_reported_without_the_password() -> None:
    """Opening the store does not fail (the gateway starts and says why it is not ready); every use names the
    URL, password redacted."""
    port = free_port()
    url, shown = (f"redis+cluster://user:hunter2@127.0.0.1:{port}/0", f"redis+cluster://user:***@127.0.0.1:{port}/0")
    store = open_redis_store(url, "late", "colbert:1", SQ8, timeout_s=0.5)
    health = store.health()
    assert not health.ok and f"redis {shown}: cannot reach the cluster" in health.detail
    with pytest.raises(StoreError) as caught:
        store.get_batch(["p0"])
    assert str(caught.value).startswith(f"redis {shown}: cannot reach the cluster") and "hunter2" not in str(
        caught.value)
    with pytest.raises(StoreError, match="cannot reach the cluster"):
        redis_store.active_version(url, "late")
    store.close()


def test_braces_in_the_namespace_are_refused(redis_cluster: RedisClusterNodes) -> None:
    with pytest.raises(StoreError, match="one cluster slot"):
        open_redis_store(redis_cluster.url, "a{b}", "colbert:1")
    with pytest.raises(ValidationError, match="with a Redis Cluster, braces make a hash tag"):
        Settings(redis_url=redis_cluster.url, namespace="a{b}")  # type: ignore[call-arg]
    assert Settings(redis_url="redis://127.0.0.1:6379/0", namespace="a{b}").namespace == "a{b}"  # type: ignore[call-arg]
