"""The step mode's stop rule with a stand-in runner whose p99 and errors are functions of the offered rate."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.openloop import LoadTestError
from loadtest.steps import StepPlan, holds, run_steps


def fake(capacity: float, *, error_rate_over: float = 0.0) -> tuple[list[tuple[float, int]], Any]:
    """A server whose p99 is 10 ms below ``capacity`` req/s and 10 s above; errors beyond it if asked."""
    calls: list[tuple[float, int]] = []

    def run(rate: float, index: int) -> dict[str, Any]:
        calls.append((rate, index))
        over = rate > capacity
        return {"offered_rps": rate, "p99_ms": 10_000.0 if over else 10.0 + rate,
                "error_rate": error_rate_over if over else 0.0, "achieved_pairs_per_s": min(rate, capacity) * 100,
                "errors": 0}

    return calls, run


def test_climbs_by_factor_until_p99_breaks_then_runs_half() -> None:
    calls, run = fake(capacity=10.0)
    result = run_steps(StepPlan(start=1.0, factor=2.0, max_p99_ms=500.0), run)
    assert [r for r, _ in calls] == [1.0, 2.0, 4.0, 8.0, 16.0, 4.0]
    assert calls[-1][1] == -1  # the half step
    assert result["saturation_rps"] == 8.0 and result["saturation_pairs_per_s"] == 800.0
    assert [s["held"] for s in result["steps"]] == [True, True, True, True, False]
    assert "p99" in result["stopped_because"] and result["p99_at_half_saturation_ms"] == 14.0


def test_error_rate_bound_and_additive_steps() -> None:
    _, run = fake(capacity=1e9)

    def erroring(rate: float, index: int) -> dict[str, Any]:
        summary = run(rate, index)
        summary["error_rate"] = 0.05 if rate >= 7.0 else 0.0
        return summary

    result = run_steps(StepPlan(start=1.0, add=2.0, max_error_rate=0.01), erroring)
    assert [s["offered_rps"] for s in result["steps"]] == [1.0, 3.0, 5.0, 7.0]
    assert result["saturation_rps"] == 5.0 and "error rate" in result["stopped_because"]
    assert result["half"]["offered_rps"] == 2.5


def test_first_step_failing_has_no_saturation_and_no_half_step() -> None:
    calls, run = fake(capacity=0.5)
    result = run_steps(StepPlan(start=1.0, factor=1.5), run)
    assert result["saturation_rps"] is None and result["half"] is None and len(calls) == 1


def test_max_steps_and_max_rate_bound_the_climb() -> None:
    calls, run = fake(capacity=1e9)
    result = run_steps(StepPlan(start=1.0, factor=2.0, max_steps=3), run, half_step=False)
    assert len(calls) == 3 and result["saturation_rps"] == 4.0 and "--max-steps" in result["stopped_because"]
    calls, run = fake(capacity=1e9)
    result = run_steps(StepPlan(start=1.0, factor=2.0, max_rate=5.0), run, half_step=False)
    assert [r for r, _ in calls] == [1.0, 2.0, 4.0] and "--max-rate" in result["stopped_because"]


def test_a_step_without_successes_fails() -> None:
    assert holds({"p99_ms": None, "error_rate": 1.0}, StepPlan(start=1.0, factor=2.0)) == (
        False, "no successful request")


@pytest.mark.parametrize(("options", "option"), [
    ({"start": 0.0, "factor": 2.0}, "--step-start"),
    ({"start": 1.0}, "--step-factor"),
    ({"start": 1.0, "factor": 2.0, "add": 1.0}, "--step-factor"),
    ({"start": 1.0, "factor": 1.0}, "--step-factor"),
    ({"start": 1.0, "add": -1.0}, "--step-add"),
    ({"start": 1.0, "factor": 2.0, "max_p99_ms": 0.0}, "--max-p99-ms"),
    ({"start": 1.0, "factor": 2.0, "max_error_rate": 1.0}, "--max-error-rate"),
])
def test_bad_plans_name_the_option(options: dict[str, Any], option: str) -> None:
    with pytest.raises(LoadTestError) as info:
        StepPlan(**options)
    assert info.value.option == option


def test_low_rate_steps_are_stretched_to_min_requests() -> None:
    plan = StepPlan(start=0.5, factor=2.0, duration=4.0, min_requests=10)
    assert plan.step_duration(0.5) == 20.0 and plan.step_duration(10.0) == 4.0
