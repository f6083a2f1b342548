"""The shadow teacher (service/shadow.py): with every scored pair sampled, a teacher that stalls (a real process
that accepts connections and never answers) or is down (a refused port) leaves /v1/score's answers and latency
as they are, the queue stays bounded and the overflow is dropped and counted. A real teacher's judgements feeding
the agreement series are tested in tests/mkd/teacher/test_llama_teacher.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.mkd.teacher.servers import refused_port
from tests.ports import free_port

TITLES = ["Simpson Strong-Tie 12-Gauge Angle", "Everbilt 2 in. Zinc-Plated Corner Brace",
          "BEHR Premium Textured DeckOver 1-gal."]
STALLING_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(64)
held = []
while True:  # accept, read nothing, answer nothing
    held.append(server.accept()[0])
"""


@contextmanager
def stalling_teacher() -> Iterator[str]:
    """A teacher process that accepts every connection and never answers (a wedged or overloaded server)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", STALLING_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the stalling server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.kill()
        process.wait()


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}


def _score(client: TestClient, k: int) -> tuple[float, list[float]]:
    items = [{"id": f"x-{k}-{j}", "title": title} for j, title in enumerate(TITLES)]
    started = time.perf_counter()
    response = client.post("/v1/score", json={"query": f"angle bracket {k % 5}", "items": items})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, [s["score"] for s in response.json()["scores"]]


@pytest.mark.parametrize("teacher", ["stalled", "down"])
def test_scoring_is_unaffected_by_a_stalled_or_down_shadow_teacher(teacher: str, tiny_model_repository: Path,
                                                                  tmp_path: Path) -> None:
    common = {"model_repository": tiny_model_repository, "store": "local", "store_dir": tmp_path, "grpc_port": None}
    with TestClient(create_app(Settings(**common))) as client:  # type: ignore[arg-type]
        baseline = [_score(client, k)[1] for k in range(5)]

    with stalling_teacher() if teacher == "stalled" else refused_port() as url:
        settings = Settings(**common, teacher_url=url, teacher_timeout_s=30.0, teacher_retries=0,  # type: ignore[arg-type]
                            shadow_rate=1.0, shadow_queue_size=4, shadow_concurrency=2)
        with TestClient(create_app(settings)) as client:
            latencies = []
            for k in range(30):
                elapsed, scores = _score(client, k)
                latencies.append(elapsed)
                if k < 5:
                    assert scores == pytest.approx(baseline[k], abs=1e-6)
            metrics = samples(client)
            depth = metrics[("relevance_shadow_queue_depth", ())]
            if teacher == "down":  # each call fails at once: wait for the workers to empty the queue
                deadline = time.monotonic() + 10
                while samples(client)[("relevance_shadow_queue_depth", ())] > 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                metrics = samples(client)
    pairs = {outcome: metrics[("relevance_shadow_pairs_total", (("outcome", outcome),))]
             for outcome in ("queued", "dropped", "no_title")}
    # a stalled teacher call lasts 30 s; scoring never waits for one (10 s: room for a starved CPU, not for a wait)
    assert max(latencies) < 10.0, latencies
    assert pairs["queued"] + pairs["dropped"] == 90 and pairs["no_title"] == 0
    assert depth <= 4
    judgements = {o: metrics[("relevance_shadow_judgements_total", (("outcome", o),))]
                  for o in ("ok", "unavailable", "teacher_error", "unscored")}
    assert judgements["ok"] == 0 and metrics[("relevance_shadow_comparisons_total", (("result", "agree"),))] == 0
    if teacher == "stalled":  # two calls in flight, four waiting: everything else dropped
        assert pairs["queued"] <= 4 + 2 + 2 and pairs["dropped"] >= 80
    else:
        assert judgements["unavailable"] == pairs["queued"] > 0


def test_the_shadow_needs_a_configured_teacher(tiny_model_repository: Path, tmp_path: Path) -> None:
    common = {"model_repository": tiny_model_repository, "store": "local", "store_dir": tmp_path, "grpc_port": None,
              "shadow_rate": 0.5}
    with TestClient(create_app(Settings(**common))) as client:  # type: ignore[arg-type]  # no teacher: no shadow
        _score(client, 0)
        assert samples(client)[("relevance_shadow_pairs_total", (("outcome", "queued"),))] == 0
    settings = Settings(**common, teacher_url="http://127.0.0.1:9/v1", shadow_model="gpt-9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shadow_model 'gpt-9' is not a configured teacher"), \
            TestClient(create_app(settings)):
        pass
