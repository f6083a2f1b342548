"""What the gateway serves, and the switch between model versions.

The store's ``active`` pointer (``<store_dir>/active`` locally, ``<namespace>:active`` in Redis; ``relevance
index`` moves it once a version's index is complete) names the version to serve, so the model and the item index
always agree. Without a pinned ``model_version`` the gateway starts on the active version (the highest in the
repository when nothing was ever activated), reads the pointer every ``active_poll_s`` and, when it moves, loads
the new version beside the old one, switches new requests to it in one assignment and retires the old engine once
its last request has finished: no request is dropped.

Readiness (``/readyz``, the ``relevance_ready`` gauge and the gRPC health service, from one function): the model is
loaded, the encoder backend and the store answer (each reports its :class:`~service.health.Health`), the served
version has items whenever some version was activated (a version without an index would answer every stored id as
unknown), and the gateway is not draining (stopping: see ``relevance serve``'s ``drain_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from relevance_core.model_repository import ModelRepositoryError, ModelVersion, resolve_model
from service.core.engine import ScoringEngine
from service.core.runtime import ColBERTModel
from service.health import Health
from service.metrics import Metrics
from service.settings import Settings
from service.store import ItemStore, StoreError
from service.store.factory import open_store, read_active

log = logging.getLogger("service")
DRAIN_LIMIT_S = 60.0  # the longest a retired engine waits for its last requests


class StartupError(Exception):
    """The gateway cannot start as configured: the message (one line) names the setting to change. Raised in the
    lifespan; :class:`service.middleware.GatewayMiddleware` reports it without a traceback and ``relevance serve``
    exits with uvicorn's start-up failure code, as for a taken HTTP port."""


def load_model(settings: Settings, version: ModelVersion) -> ColBERTModel:
    """``version`` on the configured backend (ONNX Runtime in-process or Triton)."""
    if settings.backend == "triton":
        from service.backends.triton import TritonBackend

        backend: Any = TritonBackend(settings.triton_url, version, protocol=settings.triton_protocol,
                                     timeout_s=settings.triton_timeout_s)
    else:
        from service.backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(version.onnx_path, threads=settings.onnx_threads)
    return ColBERTModel(version, backend)


def version_of_label(settings: Settings, label: str) -> ModelVersion:
    """The repository's version for an active label ``<model>:<version>``."""
    name, _, number = label.rpartition(":")
    if name != settings.model_name or not number.isdigit():
        raise ModelRepositoryError(f"the active version {label!r} is not a version of {settings.model_name!r}")
    return resolve_model(settings.model_repository, model=name, version=int(number))


class Serving:
    """The engine requests use (``current``), the active pointer last read, and the switch between versions.
    ``store`` (tests) pins the engine to that store and its version."""

    def __init__(self, settings: Settings, metrics: Metrics, store: ItemStore | None = None,
                 on_switch: Callable[[ScoringEngine | None], None] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fixed_store = store
        self.on_switch = on_switch
        self.current: ScoringEngine | None = None
        self.active: str | None = None
        self.pinned = settings.model_version is not None or store is not None
        self._poller: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.draining = False
        self.readiness_changed = asyncio.Event()
        """Set when readiness changes by decision (the drain), for the followers that would otherwise poll."""

    # --- building and closing engines -----------------------------------------------------------------------
    def _read_active(self) -> str | None:
        try:
            return read_active(self.settings)
        except StoreError as exc:
            log.warning("cannot read the active version: %s", exc)
            return self.active

    def _initial_version(self) -> ModelVersion:
        s = self.settings
        if not self.pinned and self.active is not None:
            try:
                return version_of_label(s, self.active)
            except ModelRepositoryError as exc:
                log.warning("serving the highest version instead of the active one: %s", exc)
        return resolve_model(s.model_repository, model=s.model_name, version=s.model_version)

    def _setting_at_fault(self) -> str:
        """The setting to change when the model cannot be resolved: a pinned version the model does not have, else
        the repository (or the model's name in it)."""
        model_dir = self.settings.model_repository / self.settings.model_name
        if not model_dir.is_dir():
            return "model_repository" if not self.settings.model_repository.is_dir() else "model_name"
        return "model_version" if self.settings.model_version is not None else "model_repository"

    def _build(self, version: ModelVersion) -> ScoringEngine:
        model = load_model(self.settings, version)
        store = self.fixed_store if self.fixed_store is not None else open_store(
            self.settings, version.label, model.meta.dim)
        return ScoringEngine(model, store, self.settings, self.metrics)

    def _publish(self, engine: ScoringEngine) -> None:
        self.current = engine
        meta = engine.model.meta
        self.metrics.model.info({"model": engine.model.version.name, "version": str(engine.model.version.version),
                                 "precision": meta.precision, "backend": self.settings.backend,
                                 "store": type(engine.store).__name__})
        if self.on_switch is not None:
            self.on_switch(engine)

    async def _close(self, engine: ScoringEngine) -> None:
        await engine.stop()
        engine.model.backend.close()
        if self.fixed_store is None:
            try:  # fold the items written at run time into the index (they are journaled already)
                await asyncio.to_thread(engine.store.flush)
            except (StoreError, OSError):
                log.exception("could not persist the store's run-time items")
            engine.store.close()

    # --- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> ScoringEngine:
        self.active = await asyncio.to_thread(self._read_active)
        try:
            version = self._initial_version()
        except ModelRepositoryError as exc:
            raise StartupError(f"{self._setting_at_fault()}: {exc}") from None
        engine = await asyncio.to_thread(self._build, version)
        engine.start()
        self._publish(engine)
        if self.settings.active_poll_s > 0 and self.fixed_store is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="active-version")
        return engine

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        engine, self.current = self.current, None
        if self.on_switch is not None:
            self.on_switch(None)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if engine is not None:
            await self._close(engine)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.active_poll_s)
            active = await asyncio.to_thread(self._read_active)
            if active == self.active:
                continue
            self.active = active
            engine = self.current
            if self.pinned or active is None or engine is None or active == engine.model_version:
                continue
            await self.switch(active)

    async def switch(self, label: str) -> bool:
        """Serve ``label`` from now on; True when switched. The old engine finishes its requests first."""
        try:
            version = version_of_label(self.settings, label)
            engine = await asyncio.to_thread(self._build, version)
        except (ModelRepositoryError, StoreError, OSError, ValueError) as exc:
            self.metrics.version_switches.labels("failed").inc()
            log.error("cannot switch to the active version %s, still serving %s: %s", label,
                      self.current.model_version if self.current else None, exc)
            return False
        engine.start()
        old = self.current
        self._publish(engine)
        self.metrics.version_switches.labels("ok").inc()
        log.info("switched to the active version %s", label)
        if old is not None:
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, engine: ScoringEngine) -> None:
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while engine.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._close(engine)

    # --- readiness --------------------------------------------------------------------------------------------
    def drain(self) -> None:
        """Not ready from now on (the process is stopping); requests are still served."""
        self.draining = True
        self.readiness_changed.set()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the /readyz body). ``dependencies`` holds each dependency's :class:`~service.health.Health`
        (``store``, ``encoder``); ready needs both, and the served version indexed when a version was activated."""
        engine = self.current
        if engine is None:
            return False, {"status": "loading"}
        if self.draining:
            return False, {"status": "draining", "model_version": engine.model_version}
        store = engine.store.health()
        status = "ready" if store.ok else "store unavailable"
        if store.ok and self.active is not None:
            try:
                indexed = engine.store.count() > 0
            except StoreError as exc:
                store, status = Health(False, f"{store.detail}: {exc}"), "store unavailable"
            else:
                if not indexed:
                    status = f"no index for {engine.model_version}"
                    store = Health(False, f"{store.detail}: {status}")
        encoder = engine.model.backend.health()
        if status == "ready" and not encoder.ok:
            status = "encoder unavailable"
        body: dict[str, Any] = {"status": status, "model_version": engine.model_version,
                                "active_version": self.active, "store": type(engine.store).__name__,
                                "store_ok": status != "store unavailable",
                                "dependencies": {"store": store.to_dict(), "encoder": encoder.to_dict()}}
        return status == "ready", body
