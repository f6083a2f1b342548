"""Dynamic micro-batching: concurrent requests' queries are encoded together.

Requests put their text on a bounded queue and await a future; one worker takes everything queued (up to
``max_size``), optionally waits ``max_wait_s`` for more, and runs the blocking encoder on the engine's single
encoder thread. Batches form by themselves under load (requests queue while the encoder is busy), so the wait
can stay 0 and a lone request pays no batching delay. A full queue refuses at once (:class:`Overloaded`),
so overload shows as fast 503s instead of growing latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from service.metrics import Metrics

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(RuntimeError):
    """The encoder queue is full."""


class MicroBatcher(Generic[T, R]):
    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], executor: Executor, *, max_size: int,
                 max_wait_s: float, queue_size: int, metrics: Metrics) -> None:
        self.fn = fn
        self.executor = executor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self.queue: asyncio.Queue[tuple[T, asyncio.Future[R], float]] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="encoder-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self.queue.empty():  # nothing is left hanging
            _, future, _ = self.queue.get_nowait()
            if not future.done():
                future.set_exception(Overloaded("the encoder is shutting down"))

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future, time.perf_counter()))
        except asyncio.QueueFull:
            self.metrics.overloaded.inc()
            raise Overloaded(f"encoder queue full ({self.queue.maxsize} waiting)") from None
        self.metrics.queue_depth.set(self.queue.qsize())
        return await future

    async def _collect(self) -> list[tuple[T, asyncio.Future[R], float]]:
        batch = [await self.queue.get()]
        while len(batch) < self.max_size and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if self.max_wait_s > 0 and len(batch) < self.max_size:
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_size and (remaining := deadline - time.perf_counter()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.metrics.queue_depth.set(self.queue.qsize())
            live = [(item, future, queued) for item, future, queued in batch if not future.cancelled()]
            if not live:
                continue
            started = time.perf_counter()
            for _, _, queued in live:
                self.metrics.stage.labels("queue").observe(started - queued)
            self.metrics.batch_size.observe(len(live))
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [item for item, _, _ in live])
            except Exception as exc:  # the encoder failed: every waiting request gets the error, the worker lives
                for _, future, _ in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.metrics.stage.labels("encode").observe(time.perf_counter() - started)
            for (_, future, _), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
