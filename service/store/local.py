"""The in-process item store (the embedded default): memory-mapped numpy arrays on disk plus an in-memory
overlay for items written at run time.

Layout under the store directory (``data/index/`` by default)::

    active -> colbert:1                 symlink: the model version whose index is complete (activate)
    colbert:1/                          one directory per model version
      current -> gen-000002             symlink: the generation readers open
      gen-000002/
        index.json                      format, model version, codec name, counts and the item ids in row order
        codec.bin                       the codec (TokenCodec.to_bytes)
        offsets.npy                     (items + 1,) int64: item r's tokens are rows offsets[r]:offsets[r+1]
        codes.npy                       (tokens, code_size) uint8
        masks.npy                       (tokens,) bool
        token_ids.npy                   (tokens,) int32
        manifest.json                   size and sha256 of each file above, written last
      journal.sqlite                    items written since the last flush (SQLite, WAL mode), and their codec

Generations are immutable and opened read-only with ``np.load(mmap_mode="r")``. :meth:`LocalItemStore.put_many`
commits the items to the journal before it returns (durable: an acknowledged write survives a crash or SIGKILL of
the process; with ``sync="full"`` also a power loss) and adds them to the in-memory overlay that reads consult, so
reads never touch the journal. Opening a store loads its journal into the overlay. :meth:`LocalItemStore.flush`
merges the latest generation and the journal into a new generation directory, replaces ``current`` with one
``os.replace`` of a temporary symlink, so a reader opens either the old or the new generation, never a
half-written one, and then deletes the flushed rows from the journal. Flushes of one version are serialised by
an exclusive lock file (``.lock``), also across processes; the generation before the new one is kept for readers
still opening it, older ones are removed.

Integrity: opening a generation checks every file against its ``manifest.json`` (size and sha256) and the
offsets against the arrays, so a damaged file is refused naming it instead of being read as wrong scores. When
the generation ``current`` names is damaged, the store falls back to the newest intact older generation (the
one kept for readers) and says so in its health (``/readyz``) and the log; the items that only the damaged
generation held are unknown until they are written or indexed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from service.health import Health
from service.store import ItemBatch, ItemTokens, StoreError
from service.store.codec import PackedItems, TokenCodec

FORMAT = 1
CURRENT = "current"
ACTIVE = "active"
JOURNAL = "journal.sqlite"
MANIFEST = "manifest.json"
_DATA_FILES = ("index.json", "codec.bin", "offsets.npy", "codes.npy", "masks.npy", "token_ids.npy")
log = logging.getLogger(__name__)
Sync = Literal["full", "normal", "off"]
_GENERATION_PREFIX = "gen-"
_ROWS_PER_COPY = 4096


def _check_version_label(model_version: str) -> None:
    if not model_version or "/" in model_version or model_version.startswith(".") or model_version == ACTIVE:
        raise ValueError(f"model version {model_version!r} cannot name a store directory")


def _replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new symlink beside it, renamed over it."""
    temporary = link.with_name(f".{link.name}-{uuid.uuid4().hex}")
    os.symlink(target, temporary)
    os.replace(temporary, link)


def active_version(directory: str | os.PathLike[str]) -> str | None:
    """The model version the last completed index under ``directory`` activated, None when none did."""
    try:
        return os.readlink(Path(directory) / ACTIVE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{directory}: cannot read the active pointer: {exc}") from None


def _token_index(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The token rows of items ``rows``, concatenated in order."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(path: Path) -> None:
    """``manifest.json``: each data file's size and sha256; written (and synced) after them, renamed into place."""
    files = {name: {"bytes": (path / name).stat().st_size, "sha256": _sha256(path / name)} for name in _DATA_FILES}
    temporary = path / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps({"format": FORMAT, "files": files}, indent=1), encoding="utf-8")
    _fsync(temporary)
    os.replace(temporary, path / MANIFEST)


def _verify(path: Path) -> None:
    """Refuse a generation whose files are not the ones its manifest lists, naming the first that differs."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise StoreError(f"{path}: no {MANIFEST} (an unfinished flush, or a generation written before checksums: "
                         f"remove {path.parent} and run `relevance index` again)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path / MANIFEST}: unreadable ({exc})") from None
    for name in _DATA_FILES:
        expected = files.get(name) if isinstance(files, dict) else None
        if not isinstance(expected, dict):
            raise StoreError(f"{path / MANIFEST}: no entry for {name}")
        try:
            size = (path / name).stat().st_size
            if size != expected.get("bytes"):
                raise StoreError(f"{path / name}: {size} bytes, the manifest says {expected.get('bytes')}: damaged")
            if _sha256(path / name) != expected.get("sha256"):
                raise StoreError(f"{path / name}: checksum mismatch against {MANIFEST}: damaged")
        except OSError as exc:
            raise StoreError(f"{path / name}: cannot read: {exc}") from None


@dataclass(frozen=True)
class _Generation:
    """One opened generation: the id → row mapping in memory, the arrays memory-mapped."""

    path: Path
    codec: TokenCodec
    ids: list[str]
    position: dict[str, int]
    offsets: np.ndarray
    codes: np.ndarray
    masks: np.ndarray
    token_ids: np.ndarray

    @classmethod
    def open(cls, path: Path, model_version: str) -> _Generation:
        _verify(path)
        try:
            index = json.loads((path / "index.json").read_text(encoding="utf-8"))
            codec = TokenCodec.from_bytes((path / "codec.bin").read_bytes())
            arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r")
                      for name in ("offsets", "codes", "masks", "token_ids")}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: cannot open the index generation: {exc}") from None
        if index.get("format") != FORMAT or index.get("model_version") != model_version:
            raise StoreError(f"{path}: format {index.get('format')!r} of model version "
                             f"{index.get('model_version')!r}, expected format {FORMAT} of {model_version!r}")
        ids = index.get("ids")
        if not isinstance(ids, list):
            raise StoreError(f"{path}: index.json has no list of ids")
        if len(arrays["offsets"]) != len(ids) + 1 or arrays["codes"].shape[1:] != (codec.code_size,):
            raise StoreError(f"{path}: arrays disagree with index.json ({len(ids)} items, codec {codec!r})")
        offsets, tokens = arrays["offsets"], len(arrays["codes"])
        if (offsets[0] != 0 or offsets[-1] != tokens or np.any(np.diff(offsets) <= 0)
                or len(arrays["masks"]) != tokens or len(arrays["token_ids"]) != tokens):
            raise StoreError(f"{path / 'offsets.npy'}: offsets do not partition the {tokens} token rows")
        if len(set(ids)) != len(ids):
            raise StoreError(f"{path / 'index.json'}: an item id is listed twice")
        return cls(path, codec, ids, {item_id: row for row, item_id in enumerate(ids)}, arrays["offsets"],
                   arrays["codes"], arrays["masks"], arrays["token_ids"])

    def packed(self, rows: Sequence[int]) -> PackedItems:
        """Rows' codes, masks and ids, gathered with one fancy index per array."""
        rows_array = np.asarray(rows, dtype=np.int64)
        index = _token_index(self.offsets, rows_array)
        return PackedItems(self.codes[index], self.masks[index], self.token_ids[index],
                           self.offsets[rows_array + 1] - self.offsets[rows_array])


class _Journal:
    """The write-ahead journal of one version: SQLite in WAL mode, one transaction per ``put_many``. ``sync`` is
    SQLite's ``synchronous``: full fsyncs the WAL at every commit, normal leaves the last commits to the OS page
    cache (safe from a process crash, not from a power loss), off never fsyncs."""

    def __init__(self, path: Path, sync: Sync) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute("CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                            "id TEXT NOT NULL UNIQUE, blob BLOB NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the journal: {exc}") from None

    def read(self) -> tuple[dict[str, bytes], int, bytes | None]:
        """The journaled items, the last sequence number among them, and the codec they were written with."""
        try:
            rows = self.db.execute("SELECT seq, id, blob FROM items ORDER BY seq").fetchall()
            codec = self.db.execute("SELECT value FROM meta WHERE key = 'codec'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the journal: {exc}") from None
        return ({item_id: bytes(blob) for _, item_id, blob in rows}, rows[-1][0] if rows else 0,
                None if codec is None else bytes(codec[0]))

    def write(self, blobs: Mapping[str, bytes], codec: bytes) -> None:
        """Commit ``blobs`` (and the codec, when the journal has none): on disk when this returns."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('codec', ?)", (codec,))
                self.db.executemany("INSERT OR REPLACE INTO items (id, blob) VALUES (?, ?)", blobs.items())
                self.db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): the original error is the cause to report
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot journal {len(blobs)} items: {exc}") from None

    def trim(self, last: int) -> None:
        """Delete the rows up to sequence number ``last`` (flushed into a generation)."""
        try:
            self.db.execute("DELETE FROM items WHERE seq <= ?", (last,))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot trim the journal: {exc}") from None

    def close(self) -> None:
        self.db.close()


class LocalItemStore:
    """Items of one model version in ``<directory>/<model version>/`` (see the module docstring)."""

    in_process = True  # reads are memory reads: the gateway calls them on its event loop

    def __init__(self, directory: str | os.PathLike[str], model_version: str, codec: TokenCodec | None = None,
                 *, sync: Sync = "full") -> None:
        _check_version_label(model_version)
        self.directory = Path(directory)
        self.model_version = model_version
        self.version_dir = self.directory / model_version
        self.sync = sync
        self._codec = codec  # to write with while no generation exists
        self._overlay: dict[str, bytes] = {}
        self._lock = threading.Lock()  # the generation and the overlay, as one pair
        self._write_lock = threading.Lock()  # journal and overlay writes, in one order
        self._closed = False
        self._generation: _Generation | None = None
        self._journal: _Journal | None = None
        self._damage: str | None = None  # why the generation `current` names is not the one being read
        self._fallback_of: Path | None = None
        self.reload()
        if (self.version_dir / JOURNAL).is_file():  # writes acknowledged before a crash or a stop without flush
            overlay, _, codec_bytes = self._open_journal().read()
            if codec_bytes is not None and self._generation is None:
                self._codec = TokenCodec.from_bytes(codec_bytes)
            self._overlay = overlay

    def __repr__(self) -> str:
        return f"LocalItemStore({str(self.directory)!r}, model_version={self.model_version!r})"

    @property
    def generation(self) -> Path | None:
        """The directory of the generation being read, None before the first flush."""
        generation = self._generation
        return None if generation is None else generation.path

    def reload(self) -> bool:
        """Open the generation ``current`` points at when it is not the one being read; True when it switched.
        A damaged ``current`` falls back to the newest intact older generation (see the module docstring); with
        none, the damage is a `StoreError` naming the file."""
        try:
            target = os.readlink(self.version_dir / CURRENT)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"{self.version_dir}: cannot read {CURRENT}: {exc}") from None
        path = self.version_dir / target
        if self._generation is not None and self._generation.path in (path, self._fallback_of):
            return False
        try:
            generation = _Generation.open(path, self.model_version)
            self._damage = None
            self._fallback_of = None
        except StoreError as damage:
            older = self._intact_older(path)
            if older is None:
                raise
            generation, self._damage, self._fallback_of = older, str(damage), path
            log.error("%s; serving the older generation %s instead: items written since are unknown until "
                      "written or indexed again", damage, generation.path.name)
        with self._lock:
            self._generation = generation
        return True

    def _intact_older(self, damaged: Path) -> _Generation | None:
        """The newest generation older than ``damaged`` that opens intact, if any."""
        older = sorted((p for p in self.version_dir.glob(f"{_GENERATION_PREFIX}*") if p.name < damaged.name),
                       reverse=True)
        for path in older:
            try:
                return _Generation.open(path, self.model_version)
            except StoreError:
                continue
        return None

    def stored_codec(self) -> TokenCodec | None:
        """The codec of the generation being read, else the codec items are written with, else None."""
        generation = self._generation
        return self._codec if generation is None else generation.codec

    def set_codec(self, codec: TokenCodec) -> TokenCodec:
        """Write with ``codec`` unless a generation (with its codec) exists; returns the codec in force."""
        with self._lock:
            if self._generation is None and not self._overlay:
                self._codec = codec
        stored = self.stored_codec()
        assert stored is not None
        return stored

    def _snapshot(self) -> tuple[_Generation | None, dict[str, bytes]]:
        """The generation and the overlay as one consistent pair (a flush replaces the overlay, never trims it)."""
        with self._lock:
            return self._generation, self._overlay

    def _lookup(self, ids: Sequence[str]) -> tuple[TokenCodec | None, list[tuple[list[int], PackedItems]]]:
        """The codec and, for the overlay and the generation, the slots found there with their packed items."""
        generation, overlay = self._snapshot()
        codec = self._codec if generation is None else generation.codec
        if codec is None:
            return None, []
        overlay_slots: list[int] = []
        blobs: list[bytes] = []
        base_slots: list[int] = []
        rows: list[int] = []
        for slot, item_id in enumerate(ids):
            blob = overlay.get(item_id)
            if blob is not None:
                overlay_slots.append(slot)
                blobs.append(blob)
            elif generation is not None and (row := generation.position.get(item_id)) is not None:
                base_slots.append(slot)
                rows.append(row)
        parts = []
        if blobs:
            parts.append((overlay_slots, codec.unpack(blobs)))
        if rows:
            assert generation is not None
            parts.append((base_slots, generation.packed(rows)))
        return codec, parts

    def get_many(self, ids: Sequence[str]) -> list[ItemTokens | None]:
        out: list[ItemTokens | None] = [None] * len(ids)
        codec, parts = self._lookup(ids)
        for slots, packed in parts:
            assert codec is not None
            for slot, item in zip(slots, codec.decode(packed), strict=True):
                out[slot] = item
        return out

    def get_batch(self, ids: Sequence[str]) -> tuple[ItemBatch, list[int]]:
        codec, parts = self._lookup(ids)
        if codec is None or not parts:
            return ItemBatch.empty(), []
        batches = [codec.decode_batch(packed) for _, packed in parts]
        return ItemBatch.concat(batches, codec.dim), [slot for slots, _ in parts for slot in slots]

    def _open_journal(self) -> _Journal:
        if self._journal is None:
            try:
                self.version_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.version_dir}: cannot create the journal: {exc}") from None
            self._journal = _Journal(self.version_dir / JOURNAL, self.sync)
        return self._journal

    def put_many(self, items: Mapping[str, ItemTokens]) -> None:
        """Insert or replace ``items``: committed to the journal (durable) when this returns, readable at once
        from the in-memory overlay, folded into a generation by :meth:`flush`."""
        codec = self.stored_codec()
        if codec is None:
            raise StoreError(f"{self.version_dir}: no index and no codec given to write with")
        if not items:
            return
        blobs = dict(zip(items, codec.encode_items(list(items.values())), strict=True))
        with self._write_lock:
            self._open_journal().write(blobs, codec.to_bytes())
            with self._lock:
                self._overlay.update(blobs)

    def missing(self, ids: Sequence[str]) -> list[str]:
        """The ids of ``ids`` neither in the generation being read nor in the overlay."""
        generation, overlay = self._snapshot()
        position = {} if generation is None else generation.position
        return [i for i in ids if i not in position and i not in overlay]

    def count(self) -> int:
        generation, overlay = self._snapshot()
        position = {} if generation is None else generation.position
        return len(position) + sum(1 for item_id in list(overlay) if item_id not in position)

    @property
    def pending(self) -> int:
        """Items in the overlay, not yet flushed."""
        return len(self._overlay)

    def ping(self) -> bool:
        return self.health().ok

    def health(self) -> Health:
        if self._closed:
            return Health(False, f"local index {self.version_dir} (closed)")
        if self._damage is not None:
            generation = self._generation
            return Health(True, f"local index {self.version_dir}: DEGRADED, {self._damage}; serving "
                                f"{None if generation is None else generation.path.name}")
        return Health(True, f"local index {self.version_dir}")

    @contextmanager
    def _flush_lock(self) -> Iterator[None]:
        self.version_dir.mkdir(parents=True, exist_ok=True)
        with (self.version_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def flush(self) -> Path | None:
        """Fold the journal into a new generation (the latest generation on disk merged with it, journaled items
        replacing stored ones), switch ``current`` to it and trim the journal; returns the generation's directory,
        None when nothing was pending."""
        if self._journal is None and not (self.version_dir / JOURNAL).is_file():
            return None
        with self._write_lock:
            snapshot, last, _ = self._open_journal().read()
        if not snapshot:
            return None
        try:
            with self._flush_lock():
                self.reload()  # another process may have flushed since this one opened its generation
                base = self._generation
                codec = self.stored_codec()
                assert codec is not None
                path = self._write_generation(codec, base, snapshot)
                _replace_symlink(self.version_dir / CURRENT, path.name)
                self.reload()
                self._prune(keep={path.name} | (set() if base is None else {base.path.name}))
        except OSError as exc:
            raise StoreError(f"{self.version_dir}: cannot write a new index generation: {exc}") from None
        with self._write_lock:  # items written again during the flush stay pending (a later sequence number)
            self._open_journal().trim(last)
            with self._lock:
                self._overlay = {k: blob for k, blob in self._overlay.items() if snapshot.get(k) != blob}
        return path

    def _new_generation_dir(self) -> Path:
        numbers = [int(p.name.removeprefix(_GENERATION_PREFIX)) for p in self.version_dir.glob(f"{_GENERATION_PREFIX}*")
                   if p.name.removeprefix(_GENERATION_PREFIX).isdigit()]
        path = self.version_dir / f"{_GENERATION_PREFIX}{max(numbers, default=0) + 1:06d}"
        path.mkdir()
        return path

    def _write_generation(self, codec: TokenCodec, base: _Generation | None, overlay: Mapping[str, bytes]) -> Path:
        """Write ``base``'s items not in ``overlay`` followed by ``overlay``'s, in a new generation directory."""
        if base is not None and base.codec != codec:
            raise StoreError(f"{base.path}: written with {base.codec!r}, the overlay with {codec!r}")
        kept = (np.zeros(0, dtype=np.int64) if base is None else
                np.flatnonzero([item_id not in overlay for item_id in base.ids]))
        added = codec.unpack(list(overlay.values()))
        lengths = np.concatenate([np.zeros(0, np.int64) if base is None else np.diff(base.offsets)[kept],
                                  added.lengths])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = int(offsets[-1])
        path = self._new_generation_dir()
        out = {"codes": np.lib.format.open_memmap(path / "codes.npy", "w+", np.uint8, (tokens, codec.code_size)),
               "masks": np.lib.format.open_memmap(path / "masks.npy", "w+", np.bool_, (tokens,)),
               "token_ids": np.lib.format.open_memmap(path / "token_ids.npy", "w+", np.int32, (tokens,))}
        at = 0
        for begin in range(0, len(kept), _ROWS_PER_COPY):
            assert base is not None
            index = _token_index(base.offsets, kept[begin : begin + _ROWS_PER_COPY])
            out["codes"][at : at + len(index)] = base.codes[index]
            out["masks"][at : at + len(index)] = base.masks[index]
            out["token_ids"][at : at + len(index)] = base.token_ids[index]
            at += len(index)
        out["codes"][at:] = added.codes
        out["masks"][at:] = added.masks
        out["token_ids"][at:] = added.token_ids
        for array in out.values():
            array.flush()
        del out
        np.save(path / "offsets.npy", offsets)
        (path / "codec.bin").write_bytes(codec.to_bytes())
        ids = ([] if base is None else [base.ids[r] for r in kept.tolist()]) + list(overlay)
        manifest = {"format": FORMAT, "model_version": self.model_version, "codec": codec.name, "items": len(ids),
                    "tokens": tokens, "ids": ids}
        (path / "index.json").write_text(json.dumps(manifest), encoding="utf-8")
        for name in os.listdir(path):
            _fsync(path / name)
        _write_manifest(path)
        _fsync(path)
        return path

    def _prune(self, keep: set[str]) -> None:
        """Remove generations not in ``keep`` (and leftovers of interrupted flushes)."""
        for path in self.version_dir.glob(f"{_GENERATION_PREFIX}*"):
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def activate(self) -> None:
        """Point ``<directory>/active`` at this model version (one atomic symlink replacement)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _replace_symlink(self.directory / ACTIVE, self.model_version)
        except OSError as exc:
            raise StoreError(f"{self.directory}: cannot activate {self.model_version}: {exc}") from None

    def close(self) -> None:
        """Release the memory maps and the journal (pending items stay journaled: the next open reads them)."""
        with self._write_lock, self._lock:
            self._closed = True
            self._generation = None
            self._overlay = {}
            if self._journal is not None:
                self._journal.close()
                self._journal = None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
