"""The open-loop load generator behind ``relevance loadtest``.

Requests leave on a fixed schedule (constant rate, or Poisson arrivals with the same mean), computed before the
run and independent of the answers: a slow server does not slow the sender down. Latency is measured from each
request's *intended* send time to the end of its answer, so time spent queueing, in the server or in the client
waiting for a free slot, is part of the latency (no coordinated omission).

``concurrency`` bounds the requests in flight. A request whose send time comes while the bound is reached waits
for a slot; it is counted as *late* (and its wait is in its latency); one that cannot get a slot within the request
timeout is *dropped* (never sent, counted as an error). The time the sender itself fell behind its schedule (a
busy event loop) is reported as the *send lag*: when its p99 is large, the client, not the server, was the limit.

Targets are our gateway's ``POST /v1/score`` (``mode`` cached: ids in the gateway's store; titles: ids the
store does not hold, with titles, so every item is encoded) or any Cohere/Jina-style rerank endpoint
(``POST {query, documents, model?}``: our ``/v1/rerank``, infinity's ``/rerank``, ...). Queries and items are
real: queries of the train/test splits, items of the catalogue. ``explain`` sends our ``POST /v1/explain``
``{query, title, model?}`` with the request's first item as the title (one pair per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from relevance_core.data import default_pairs_path, derived_dir, load_catalogue, load_pairs

Endpoint = Literal["score", "rerank", "explain"]
Mode = Literal["cached", "titles"]
Arrival = Literal["constant", "poisson"]
DEFAULT_PATHS: dict[str, str] = {"score": "/v1/score", "rerank": "/v1/rerank", "explain": "/v1/explain"}
QUANTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)
# keys of the latency quantiles in summaries: p50_ms, p90_ms, p99_ms, p99_9_ms
QUANTILE_KEYS: dict[float, str] = {q: f"p{q:g}".replace(".", "_") + "_ms" for q in QUANTILES}
DROPPED = "dropped"
TIMEOUT = "timeout"
ITEMS_FAILED = "items_failed"  # a 200 of /v1/score in which no item got a score: a failure, not a success
SHED_STATUSES = ("429", "503")  # answers of a server refusing load (admission control, not ready)


class LoadTestError(ValueError):
    """A bad setting or an unusable target; ``option`` names the CLI option at fault."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


# --- percentiles -----------------------------------------------------------------------------------------------


def percentiles(values: Sequence[float] | np.ndarray, qs: Sequence[float] = QUANTILES) -> list[float | None]:
    """Percentiles of ``values`` by linear interpolation between the closest ranks (numpy's default method, so
    ``np.percentile`` agrees): rank ``q/100 · (n - 1)`` in the sorted values. ``None`` for every q when empty."""
    data = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = data.size
    if n == 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile {q} outside [0, 100]")
        rank = q / 100.0 * (n - 1)
        low = math.floor(rank)
        high = min(low + 1, n - 1)
        frac = rank - low
        out.append(float(data[low] + (data[high] - data[low]) * frac))
    return out


# --- the schedule ----------------------------------------------------------------------------------------------


def schedule(rate: float, duration: float, arrival: Arrival = "constant", seed: int = 0) -> np.ndarray:
    """Intended send times (seconds from the start) of a run: ``rate`` per second for ``duration`` seconds;
    constant spacing ``1/rate`` (at least one request), or Poisson arrivals (exponential gaps of mean ``1/rate``)."""
    if rate <= 0:
        raise LoadTestError(f"the rate must be > 0 requests/s, got {rate}", "--rate")
    if duration <= 0:
        raise LoadTestError(f"the duration must be > 0 s, got {duration}", "--duration")
    if arrival == "constant":
        n = max(1, round(rate * duration))
        return np.arange(n, dtype=np.float64) / rate
    rng = np.random.default_rng(seed)
    times: list[float] = []
    t = 0.0
    while True:
        t += float(rng.exponential(1.0 / rate))
        if t >= duration:
            break
        times.append(t)
    return np.array(times or [0.0], dtype=np.float64)


# --- the workload ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Real queries and catalogue items, shuffled once with a fixed seed: every target sees the same requests."""

    queries: list[str]
    items: list[tuple[str, str]]

    def request(self, index: int, n_items: int) -> tuple[str, list[tuple[str, str]]]:
        """The query and the ``n_items`` candidate (id, title) of request ``index`` (deterministic)."""
        query = self.queries[index % len(self.queries)]
        span = max(1, len(self.items) - n_items + 1)
        start = (index * n_items) % span
        return query, self.items[start : start + n_items]


def default_query_files() -> list[Path]:
    """data/derived/{train,test}.tsv when ``relevance data prepare`` ran, else the vendored pairs file."""
    derived = [derived_dir() / "train.tsv", derived_dir() / "test.tsv"]
    return derived if all(p.is_file() for p in derived) else [default_pairs_path()]


def load_workload(query_files: Sequence[Path], catalogue: Path, *, catalogue_limit: int | None = None,
                  seed: int = 0) -> Workload:
    """Distinct queries of ``query_files`` and the first ``catalogue_limit`` products of ``catalogue`` (the ones
    ``relevance index --limit`` stores), both shuffled with ``seed``."""
    rng = random.Random(seed)
    queries: set[str] = set()
    for path in query_files:
        if not path.is_file():
            raise LoadTestError(f"no such pairs file {str(path)!r} (run `relevance data prepare`)", "--queries")
        queries.update(p.query for p in load_pairs(path))
    if not catalogue.is_file():
        raise LoadTestError(f"no such catalogue {str(catalogue)!r} (run `relevance data prepare`)", "--catalog")
    products = load_catalogue(catalogue)[:catalogue_limit]
    ordered = sorted(queries)
    rng.shuffle(ordered)
    items = [(p.product_uid, p.product_title) for p in products]
    rng.shuffle(items)
    if not ordered or not items:
        raise LoadTestError("the workload has no queries or no items", "--catalog")
    return Workload(ordered, items)


@dataclass(frozen=True)
class Target:
    """Where and how to send: ``url`` is the server's base URL; ``path`` defaults to the endpoint's route."""

    url: str
    endpoint: Endpoint = "score"
    mode: Mode = "cached"
    path: str | None = None
    model: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    explain_mode: str | None = None  # explain: "decision" (the served verdict) or "teacher"; None: the gateway's

    @property
    def route(self) -> str:
        return self.path or DEFAULT_PATHS[self.endpoint]

    @property
    def address(self) -> str:
        return self.url.rstrip("/") + self.route


def request_body(target: Target, workload: Workload, index: int, n_items: int, run_id: str) -> bytes:
    """The JSON body of request ``index``. Titles mode gives every item an id the store does not hold
    (``lt-<run>-<request>-<k>``), so each one is encoded from its title."""
    query, chosen = workload.request(index, n_items)
    if target.endpoint == "explain":
        body: dict[str, Any] = {"query": query, "title": chosen[0][1]}
        if target.model:
            body["model"] = target.model
        if target.explain_mode:
            body["mode"] = target.explain_mode
    elif target.endpoint == "rerank":
        body = {"query": query, "documents": [title for _, title in chosen],
                                "return_documents": False}
        if target.model:
            body["model"] = target.model
    elif target.mode == "cached":
        body = {"query": query, "items": [{"id": uid} for uid, _ in chosen]}
    else:
        body = {"query": query, "items": [{"id": f"lt-{run_id}-{index}-{k}", "title": title}
                                          for k, (_, title) in enumerate(chosen)]}
    return json.dumps(body, separators=(",", ":")).encode()


# --- reachability ----------------------------------------------------------------------------------------------


def check_url(url: str, timeout_s: float = 3.0) -> None:
    """Raise :class:`LoadTestError` (option ``--url``) unless ``url`` is http(s) and a TCP connection to it opens."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000", "--url")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise LoadTestError(f"cannot connect to {url} ({parts.hostname}:{port}): {exc.strerror or exc}",
                            "--url") from None


# --- one run ---------------------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """Per-request results of one run, index-aligned with the schedule. Times are seconds; ``latency`` is from
    the intended send time to the end of the answer (NaN when dropped), ``service`` from the actual send."""

    rate: float
    duration: float
    items: int
    concurrency: int
    intended: np.ndarray
    send_lag: np.ndarray
    latency: np.ndarray
    service: np.ndarray
    outcome: list[str]
    late: np.ndarray
    wall: float

    @property
    def ok(self) -> np.ndarray:
        return np.array([o.startswith("2") and o.isdigit() for o in self.outcome], dtype=bool)


Progress = Callable[[int, int, int], None]  # (completed, errors, in flight)


async def _run(target: Target, bodies: list[bytes], intended: np.ndarray, *, concurrency: int, timeout_s: float,
               progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray, float]:
    import aiohttp

    n = len(bodies)
    send_lag = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    service = np.full(n, np.nan)
    late = np.zeros(n, dtype=bool)
    outcome = [""] * n
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    counters = {"done": 0, "errors": 0, "in_flight": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    headers = {"content-type": "application/json", **target.headers}
    address = target.address
    request_timeout = aiohttp.ClientTimeout(total=timeout_s)
    check_items = target.endpoint == "score"

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int, due: float) -> None:
            if slots.locked():
                late[i] = True
                try:
                    await asyncio.wait_for(slots.acquire(), timeout=max(0.0, due + timeout_s - loop.time()))
                except TimeoutError:
                    outcome[i] = DROPPED
                    counters["done"] += 1
                    counters["errors"] += 1
                    return
            else:
                await slots.acquire()
            counters["in_flight"] += 1
            sent = loop.time()
            send_lag[i] = sent - due
            try:
                async with session.post(address, data=bodies[i], timeout=request_timeout) as response:
                    payload = await response.read()
                    outcome[i] = str(response.status)
                    if check_items and response.status == 200 and _all_items_failed(payload):
                        outcome[i] = ITEMS_FAILED
            except TimeoutError:
                outcome[i] = TIMEOUT
            except aiohttp.ClientError as exc:
                outcome[i] = type(exc).__name__
            finally:
                slots.release()
                counters["in_flight"] -= 1
            end = loop.time()
            latency[i] = end - due
            service[i] = end - sent
            counters["done"] += 1
            if not (outcome[i].isdigit() and outcome[i].startswith("2")):
                counters["errors"] += 1

        async def report() -> None:
            while True:
                if progress is not None:
                    progress(counters["done"], counters["errors"], counters["in_flight"])
                await asyncio.sleep(0.2)

        reporter = asyncio.create_task(report())
        start = loop.time() + 0.02
        tasks = []
        for i in range(n):
            due = start + float(intended[i])
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        wall = loop.time() - start
        reporter.cancel()
        if progress is not None:
            progress(counters["done"], counters["errors"], 0)
    return send_lag, latency, service, outcome, late, wall


def _all_items_failed(payload: bytes) -> bool:
    """True when a /v1/score answer scored none of its items (every one has an error)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return True
    return not isinstance(body, dict) or (body.get("n_scored") == 0 and bool(body.get("scores")))


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # the serving extra is not installed: the standard loop is fine, only slower
        return None
    return uvloop.new_event_loop


def run_open_loop(target: Target, workload: Workload, *, rate: float, duration: float, items: int,
                  concurrency: int, timeout_s: float = 10.0, arrival: Arrival = "constant", seed: int = 0,
                  first_request: int = 0, run_id: str = "0", progress: Progress | None = None) -> RunRecord:
    """One open-loop run. Request bodies are built before the clock starts; request ``k`` of the run is the
    workload's request ``first_request + k``."""
    if concurrency < 1:
        raise LoadTestError(f"the concurrency must be >= 1, got {concurrency}", "--concurrency")
    if items < 1:
        raise LoadTestError(f"the items per request must be >= 1, got {items}", "--items")
    if timeout_s <= 0:
        raise LoadTestError(f"the timeout must be > 0 s, got {timeout_s}", "--timeout")
    intended = schedule(rate, duration, arrival, seed)
    bodies = [request_body(target, workload, first_request + k, items, run_id) for k in range(len(intended))]
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        send_lag, latency, service, outcome, late, wall = runner.run(
            _run(target, bodies, intended, concurrency=concurrency, timeout_s=timeout_s, progress=progress))
    return RunRecord(rate, duration, items, concurrency, intended, send_lag, latency, service, outcome, late, wall)


def warm_up(target: Target, workload: Workload, *, requests: int, items: int, timeout_s: float = 30.0,
            run_id: str = "warmup") -> None:
    """``requests`` sequential, unmeasured requests (model and connection warm-up), from the workload's end so
    that they do not repeat the measured queries first."""
    import httpx

    with httpx.Client(timeout=timeout_s, headers={"content-type": "application/json", **target.headers}) as client:
        for k in range(requests):
            body = request_body(target, workload, len(workload.queries) - 1 - k, items, run_id)
            with contextlib.suppress(httpx.HTTPError):
                client.post(target.address, content=body)


def probe_latency(target: Target, workload: Workload, *, requests: int, items: int,
                  timeout_s: float = 60.0) -> float:
    """Median seconds of ``requests`` sequential requests (closed loop): a first estimate of a server's capacity,
    used to choose where a step run starts."""
    import httpx

    times = []
    with httpx.Client(timeout=timeout_s, headers={"content-type": "application/json", **target.headers}) as client:
        for k in range(requests):
            body = request_body(target, workload, len(workload.queries) // 2 + k, items, "probe")
            started = time.perf_counter()
            response = client.post(target.address, content=body)
            times.append(time.perf_counter() - started)
            if response.status_code >= 400:
                raise LoadTestError(f"{target.address} answered {response.status_code}: {response.text[:300]}",
                                    "--url")
    return float(np.median(times))


# --- summary ---------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def summarise(record: RunRecord) -> dict[str, Any]:
    """Offered vs achieved load, latency quantiles (of the successful requests, from the intended send time),
    outcomes by HTTP status and transport error, late and dropped sends."""
    ok = record.ok
    n = len(record.outcome)
    counts = Counter(record.outcome)
    statuses = {k: v for k, v in sorted(counts.items()) if k.isdigit()}
    transport = {k: v for k, v in sorted(counts.items())
                 if not k.isdigit() and k not in (DROPPED, TIMEOUT, ITEMS_FAILED)}
    n_ok = int(ok.sum())
    errors = n - n_ok
    finished = record.intended + np.nan_to_num(record.latency, nan=0.0)
    window = max(record.duration, float(finished.max()) if n else 0.0)
    lat_ok = record.latency[ok]
    sent = ~np.isnan(record.send_lag)
    quantiles = percentiles(lat_ok, QUANTILES)
    lag = percentiles(record.send_lag[sent], (50.0, 99.0))
    svc = percentiles(record.service[ok], (50.0, 99.0))
    shed = np.array([o in SHED_STATUSES for o in record.outcome], dtype=bool)
    shed_lat = percentiles(record.service[shed], (50.0, 99.0))
    return {
        "offered_rps": round(record.rate, 4),
        "offered_pairs_per_s": round(record.rate * record.items, 2),
        "duration_s": record.duration,
        "items": record.items,
        "concurrency": record.concurrency,
        "scheduled": n,
        "sent": int(sent.sum()),
        "ok": n_ok,
        "errors": errors,
        "error_rate": round(errors / n, 6) if n else 0.0,
        "statuses": statuses,
        "transport_errors": transport,
        "timeouts": counts.get(TIMEOUT, 0),
        "items_failed": counts.get(ITEMS_FAILED, 0),
        "shed": int(shed.sum()),
        "shed_service_p50_ms": _ms(shed_lat[0]),
        "shed_service_p99_ms": _ms(shed_lat[1]),
        "late_sends": int(record.late.sum()),
        "dropped": counts.get(DROPPED, 0),
        "window_s": round(window, 3),
        "achieved_rps": round(n_ok / window, 3) if window else 0.0,
        "achieved_pairs_per_s": round(n_ok * record.items / window, 2) if window else 0.0,
        **{QUANTILE_KEYS[q]: _ms(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "mean_ms": _ms(float(lat_ok.mean())) if lat_ok.size else None,
        "max_ms": _ms(float(lat_ok.max())) if lat_ok.size else None,
        "service_p50_ms": _ms(svc[0]),
        "service_p99_ms": _ms(svc[1]),
        "send_lag_p50_ms": _ms(lag[0]),
        "send_lag_p99_ms": _ms(lag[1]),
    }
