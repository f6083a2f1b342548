"""``relevance bench``: closed-loop latency of ``POST /v1/score`` against a running gateway.

Each request scores one real query (test split) against ``--items`` catalogue items, in two modes:

- ``cached``: item ids only, all present in the gateway's store (indexed with ``relevance index``);
- ``uncached``: ids the store does not hold, with titles, so every item is encoded from its title. Titles are
  drawn without replacement across the run, so the gateway's title cache never hits.

Queries are drawn without replacement too, so the query-embedding cache does not hide the encoder. Each of
``--concurrency`` clients sends its next request as soon as the previous answer arrives (closed loop; the
open-loop generator is ``relevance loadtest``). Latency is measured per request by the client; a warm-up of
``--warmup`` requests per mode is not counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from loadtest.openloop import Workload


def _bodies(workload: Workload, mode: str, n_requests: int, n_items: int, offset: int) -> list[dict[str, Any]]:
    """Request bodies ``offset .. offset + n_requests`` of the run (the workload's requests, see
    :meth:`loadtest.openloop.Workload.request`)."""
    bodies = []
    for r in range(n_requests):
        query, chosen = workload.request(offset + r, n_items)
        if mode == "cached":
            items = [{"id": uid} for uid, _ in chosen]
        else:
            items = [{"id": f"bench-{offset + r}-{k}", "title": title} for k, (_, title) in enumerate(chosen)]
        bodies.append({"query": query, "items": items})
    return bodies


async def _run(url: str, bodies: list[dict[str, Any]], concurrency: int, headers: dict[str, str],
               ) -> tuple[list[float], dict[str, int], float]:
    import aiohttp

    payloads = [json.dumps(b).encode() for b in bodies]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cursor = iter(range(len(payloads)))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"content-type": "application/json", **headers},
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def client() -> None:
            for i in cursor:
                started = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/score", data=payloads[i]) as response:
                        await response.read()
                        key = str(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                statuses[key] = statuses.get(key, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return latencies, statuses, wall


def summarise(latencies: list[float], statuses: dict[str, int], wall: float, n_items: int) -> dict[str, Any]:
    ms = np.array(latencies) * 1000.0
    ok = statuses.get("200", 0)
    return {"requests": len(latencies), "ok": ok, "statuses": statuses, "seconds": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 1), "pairs_per_s": round(ok * n_items / wall, 1),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)},
            "mean_ms": round(float(ms.mean()), 3), "max_ms": round(float(ms.max()), 3)}


def run_bench(url: str, workload: Workload, *, modes: list[str], concurrency: list[int], requests: int,
              items: int, warmup: int, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every (mode, concurrency) cell; queries, items and titles never repeat within a run."""
    results = []
    offset = 0
    for mode in modes:
        for clients in concurrency:
            warm = _bodies(workload, mode, warmup, items, offset)
            offset += warmup
            asyncio.run(_run(url, warm, clients, headers or {}))
            bodies = _bodies(workload, mode, requests, items, offset)
            offset += requests
            latencies, statuses, wall = asyncio.run(_run(url, bodies, clients, headers or {}))
            results.append({"mode": mode, "concurrency": clients, "items": items,
                            **summarise(latencies, statuses, wall, items)})
    return results
