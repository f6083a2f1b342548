"""The open-loop generator's pieces without a server: percentiles against numpy, the schedule, the bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadtest.openloop import (
    LoadTestError,
    RunRecord,
    Target,
    Workload,
    percentiles,
    request_body,
    schedule,
    summarise,
)

QS = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000, 4321])
def test_percentiles_equal_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.lognormal(mean=3.0, sigma=1.0, size=n)
    np.testing.assert_allclose(percentiles(values, QS), np.percentile(values, QS), rtol=1e-12, atol=1e-12)


def test_percentiles_of_nothing_and_bad_quantiles() -> None:
    assert percentiles([], (50.0, 99.0)) == [None, None]
    with pytest.raises(ValueError, match="outside"):
        percentiles([1.0], (101.0,))


def test_constant_schedule_is_evenly_spaced() -> None:
    times = schedule(rate=40.0, duration=2.0)
    assert len(times) == 80
    np.testing.assert_allclose(np.diff(times), 1 / 40.0)
    assert times[0] == 0.0
    assert len(schedule(rate=0.1, duration=1.0)) == 1  # at least one request


def test_poisson_schedule_has_the_mean_rate_and_is_seeded() -> None:
    times = schedule(rate=200.0, duration=50.0, arrival="poisson", seed=3)
    assert np.all(np.diff(times) > 0) and times[-1] < 50.0
    assert abs(len(times) / 50.0 - 200.0) < 200.0 * 0.05  # 10,000 arrivals: 5% is > 7 standard deviations
    gaps = np.diff(times)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: coefficient of variation 1
    np.testing.assert_array_equal(times, schedule(rate=200.0, duration=50.0, arrival="poisson", seed=3))


@pytest.mark.parametrize(("rate", "duration", "option"), [(0.0, 1.0, "--rate"), (-2.0, 1.0, "--rate"),
                                                          (1.0, 0.0, "--duration")])
def test_bad_schedule_names_the_option(rate: float, duration: float, option: str) -> None:
    with pytest.raises(LoadTestError) as info:
        schedule(rate, duration)
    assert info.value.option == option


def test_bodies_for_score_rerank_and_explain() -> None:
    workload = Workload(["q0", "q1"], [("1", "t1"), ("2", "t2"), ("3", "t3")])
    cached = json.loads(request_body(Target("http://x"), workload, 0, 2, "r"))
    assert cached == {"query": "q0", "items": [{"id": "1"}, {"id": "2"}]}
    titles = json.loads(request_body(Target("http://x", mode="titles"), workload, 1, 1, "r"))
    assert titles["query"] == "q1" and [i["title"] for i in titles["items"]] == ["t2"]
    assert all(i["id"].startswith("lt-r-1-") for i in titles["items"])  # never an id of the store
    rerank = json.loads(request_body(Target("http://x", "rerank", model="m"), workload, 0, 3, "r"))
    assert rerank == {"query": "q0", "documents": ["t1", "t2", "t3"], "return_documents": False, "model": "m"}
    assert Target("http://x/", "rerank", path="/rerank").address == "http://x/rerank"
    explain = json.loads(request_body(Target("http://x", "explain"), workload, 1, 1, "r"))
    assert explain == {"query": "q1", "title": "t2"}
    assert json.loads(request_body(Target("http://x", "explain", model="m"), workload, 0, 1, "r"))["model"] == "m"
    assert json.loads(request_body(Target("http://x", "explain", explain_mode="teacher"), workload, 0, 1, "r")
                      )["mode"] == "teacher"
    assert Target("http://x", "explain").address == "http://x/v1/explain"


def test_summary_counts_outcomes_and_uses_intended_time() -> None:
    n = 6
    record = RunRecord(rate=2.0, duration=3.0, items=10, concurrency=2, intended=np.arange(n) / 2.0,
                       send_lag=np.array([0.0, 0.0, 0.5, 0.0, np.nan, 0.0]),
                       latency=np.array([0.1, 0.2, 0.9, 0.3, np.nan, 0.4]),
                       service=np.array([0.1, 0.2, 0.4, 0.3, np.nan, 0.4]),
                       outcome=["200", "200", "200", "503", "dropped", "timeout"],
                       late=np.array([False, False, True, False, True, False]), wall=3.5)
    s = summarise(record)
    assert s["ok"] == 3 and s["errors"] == 3 and s["error_rate"] == 0.5
    assert s["statuses"] == {"200": 3, "503": 1} and s["dropped"] == 1 and s["timeouts"] == 1
    assert s["late_sends"] == 2 and s["sent"] == 5
    assert s["p50_ms"] == pytest.approx(200.0) and s["max_ms"] == pytest.approx(900.0)  # the late one's wait counts
    assert s["achieved_rps"] == pytest.approx(3 / 3.0) and s["achieved_pairs_per_s"] == pytest.approx(10.0)
