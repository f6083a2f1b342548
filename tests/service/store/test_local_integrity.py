"""Damage to the local store's files never turns into wrong scores: every file of a generation is checked against
its manifest at open, a damaged generation is refused naming the file, and a store whose current generation is
damaged serves the newest intact older one and says so. Damage is done to real files on disk, as a disk or an
operator would do it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from service.store import StoreError
from service.store.local import MANIFEST, LocalItemStore, _write_manifest
from tests.service.store.test_store import ITEMS, SQ8

FIRST = [f"p{i}" for i in range(30)]
LATER = [f"p{i}" for i in range(30, 60)]


def _flushed(root: Path, *batches: list[str]) -> list[Path]:
    """One generation per batch of ``ITEMS`` ids, flushed in order: their directories."""
    writer = LocalItemStore(root, "colbert:1", SQ8)
    generations = []
    for ids in batches:
        writer.put_many({k: ITEMS[k] for k in ids})
        generation = writer.flush()
        assert generation is not None
        generations.append(generation)
    writer.close()
    return generations


def _one_generation(root: Path) -> Path:
    return _flushed(root, FIRST)[0]


def _two_generations(root: Path) -> tuple[Path, Path]:
    first, second = _flushed(root, FIRST, LATER)
    return first, second


def _garble(path: Path, at: int, count: int = 256) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    at = min(at, len(data) - count)
    data[at : at + count] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _vectors(store: LocalItemStore, ids: list[str]) -> list[np.ndarray | None]:
    return [None if item is None else item.vectors for item in store.get_many(ids)]


@pytest.mark.parametrize("name", ["codes.npy", "masks.npy", "token_ids.npy", "offsets.npy", "codec.bin",
                                  "index.json"])
def test_a_damaged_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    generation = _one_generation(tmp_path)
    _garble(generation / name, at=200, count=16)
    with pytest.raises(StoreError, match=rf"{re.escape(name)}.*damaged"):
        LocalItemStore(tmp_path, "colbert:1")


def test_swapped_ids_in_a_valid_index_json_are_refused(tmp_path: Path) -> None:
    generation = _one_generation(tmp_path)
    index = json.loads((generation / "index.json").read_text())
    index["ids"][0], index["ids"][1] = index["ids"][1], index["ids"][0]
    (generation / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match=r"index\.json.*damaged"):
        LocalItemStore(tmp_path, "colbert:1")


def test_offsets_that_do_not_partition_the_rows_are_refused_even_with_a_matching_manifest(tmp_path: Path) -> None:
    """A writer bug, not a disk: the checksums agree, the offsets do not describe the arrays."""
    generation = _one_generation(tmp_path)
    offsets = np.load(generation / "offsets.npy")
    offsets[5], offsets[6] = offsets[6], offsets[5]
    np.save(generation / "offsets.npy", offsets)
    _write_manifest(generation)
    with pytest.raises(StoreError, match=r"offsets\.npy: offsets do not partition"):
        LocalItemStore(tmp_path, "colbert:1")


def test_a_generation_without_a_manifest_is_refused(tmp_path: Path) -> None:
    generation = _one_generation(tmp_path)
    (generation / MANIFEST).unlink()
    with pytest.raises(StoreError, match=f"no {MANIFEST}"):
        LocalItemStore(tmp_path, "colbert:1")


@pytest.mark.parametrize("name", ["codes.npy", "masks.npy", "offsets.npy"])
def test_a_damaged_current_generation_falls_back_and_never_serves_a_wrong_score(tmp_path: Path, name: str) -> None:
    _, second = _two_generations(tmp_path)
    intact = LocalItemStore(tmp_path, "colbert:1")
    want = _vectors(intact, FIRST + LATER)
    intact.close()
    _garble(second / name, at=(second / name).stat().st_size // 2)
    store = LocalItemStore(tmp_path, "colbert:1")
    assert store.generation is not None and store.generation.name < second.name
    health = store.health()
    assert health.ok and "DEGRADED" in health.detail and name in health.detail
    got = _vectors(store, FIRST + LATER)
    for item_id, g, w in zip(FIRST + LATER, got, want, strict=True):
        assert g is None or np.array_equal(g, w), item_id  # unknown, or exactly what the intact store served
    assert all(g is not None for g in got[: len(FIRST)])  # the older generation holds these
    assert all(g is None for g in got[len(FIRST):])  # only the damaged one held these: unknown, not wrong
    # writing again repairs it: a new generation from the intact one plus the new items
    store.put_many({k: ITEMS[k] for k in LATER})
    newest = store.flush()
    assert newest is not None and newest.name > second.name
    assert "DEGRADED" not in store.health().detail
    assert all(np.array_equal(g, w) for g, w in zip(_vectors(store, FIRST + LATER), want, strict=True))
    store.close()


def test_with_no_intact_generation_the_store_refuses(tmp_path: Path) -> None:
    first, second = _two_generations(tmp_path)
    for generation in (first, second):
        _garble(generation / "codes.npy", at=300)
    with pytest.raises(StoreError, match=r"codes\.npy.*damaged"):
        LocalItemStore(tmp_path, "colbert:1")
    assert os.readlink(tmp_path / "colbert:1" / "current") == second.name  # nothing was rewritten


def test_a_full_journal_reports_the_cause_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """SQLite's own limit on the journal's size (``max_page_count``) gives the error a full disk gives,
    SQLITE_FULL: the write is refused naming that cause, and the items acknowledged before it stay."""
    store = LocalItemStore(tmp_path, "colbert:1", SQ8)
    store.put_many({k: ITEMS[k] for k in FIRST[:5]})
    journal = store._journal
    assert journal is not None
    pages = journal.db.execute("PRAGMA page_count").fetchone()[0]
    journal.db.execute(f"PRAGMA max_page_count={pages + 1}")
    with pytest.raises(StoreError, match="database or disk is full"):
        store.put_many({k: ITEMS[k] for k in LATER})
    store.close()
    reopened = LocalItemStore(tmp_path, "colbert:1")
    assert all(item is not None for item in reopened.get_many(FIRST[:5]))
    assert all(item is None for item in reopened.get_many(LATER))
    reopened.close()
