"""The query micro-batcher: concurrent submissions share an encoder call, a full queue refuses at once, an
encoder failure reaches every waiting request and the worker lives on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.core.batching import MicroBatcher, Overloaded
from service.metrics import Metrics


class GatedEncoder:
    """A blocking 'encoder' that records its batches and holds each call until the gate opens."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, texts: Sequence[str]) -> list[str]:
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("encoder failed")
        return [t.upper() for t in texts]


def _batcher(encoder: GatedEncoder, pool: ThreadPoolExecutor, queue_size: int = 16) -> MicroBatcher[str, str]:
    return MicroBatcher(encoder, pool, max_size=4, max_wait_s=0.0, queue_size=queue_size, metrics=Metrics())


def test_requests_queued_while_the_encoder_is_busy_share_a_batch() -> None:
    async def main() -> list[str]:
        encoder, pool = GatedEncoder(), ThreadPoolExecutor(1)
        batcher = _batcher(encoder, pool)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("a"))
        await asyncio.get_running_loop().run_in_executor(None, encoder.entered.wait, 10)
        rest = [asyncio.ensure_future(batcher.submit(t)) for t in "bcdef"]
        await asyncio.sleep(0.05)
        encoder.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        pool.shutdown()
        assert encoder.batches == [["a"], ["b", "c", "d", "e"], ["f"]]
        return results

    assert asyncio.run(main()) == ["A", "B", "C", "D", "E", "F"]


def test_a_full_queue_refuses_and_failures_reach_every_waiter() -> None:
    async def main() -> None:
        encoder, pool = GatedEncoder(), ThreadPoolExecutor(1)
        batcher = _batcher(encoder, pool, queue_size=2)
        batcher.start()
        busy = asyncio.ensure_future(batcher.submit("x"))
        await asyncio.get_running_loop().run_in_executor(None, encoder.entered.wait, 10)
        queued = [asyncio.ensure_future(batcher.submit(t)) for t in ("boom", "y")]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="queue full"):
            await batcher.submit("z")
        encoder.gate.set()
        assert await busy == "X"
        for future in queued:
            with pytest.raises(RuntimeError, match="encoder failed"):
                await future
        assert await batcher.submit("after") == "AFTER"  # the worker survived
        assert batcher.metrics.overloaded._value.get() == 1
        await batcher.stop()
        pool.shutdown()

    asyncio.run(main())
