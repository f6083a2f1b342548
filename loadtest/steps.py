"""Step mode: raise the offered rate step by step (xfactor or +add) until a step breaks the bound (p99 above
``max_p99_ms`` or error rate above ``max_error_rate``); the *saturation point* is the last rate that held. A
final step at half the saturation rate gives the p99 a server shows with room to spare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.openloop import LoadTestError

StepRunner = Callable[[float, int], dict[str, Any]]  # (rate, step index; -1 for the half step) -> its summary


@dataclass(frozen=True)
class StepPlan:
    """How the rate climbs and when it stops. ``min_requests`` stretches a step at a low rate so that its p99 is
    over at least that many requests (``duration`` = max(step duration, min_requests / rate))."""

    start: float
    factor: float | None = None
    add: float | None = None
    max_p99_ms: float = 500.0
    max_error_rate: float = 0.01
    max_steps: int = 20
    max_rate: float | None = None
    duration: float = 10.0
    min_requests: int = 0

    def __post_init__(self) -> None:
        if self.start <= 0:
            raise LoadTestError(f"the first step's rate must be > 0 requests/s, got {self.start}", "--step-start")
        if (self.factor is None) == (self.add is None):
            raise LoadTestError("give exactly one of --step-factor (> 1) and --step-add (> 0)", "--step-factor")
        if self.factor is not None and self.factor <= 1.0:
            raise LoadTestError(f"the step factor must be > 1, got {self.factor}", "--step-factor")
        if self.add is not None and self.add <= 0.0:
            raise LoadTestError(f"the step increment must be > 0 requests/s, got {self.add}", "--step-add")
        if self.max_p99_ms <= 0:
            raise LoadTestError(f"the p99 bound must be > 0 ms, got {self.max_p99_ms}", "--max-p99-ms")
        if not 0.0 <= self.max_error_rate < 1.0:
            raise LoadTestError(f"the error-rate bound must be in [0, 1), got {self.max_error_rate}",
                                "--max-error-rate")
        if self.max_steps < 1:
            raise LoadTestError(f"at least one step, got {self.max_steps}", "--max-steps")

    def next_rate(self, rate: float) -> float:
        return rate * self.factor if self.factor is not None else rate + (self.add or 0.0)

    def step_duration(self, rate: float) -> float:
        return max(self.duration, self.min_requests / rate) if self.min_requests else self.duration


def holds(summary: dict[str, Any], plan: StepPlan) -> tuple[bool, str]:
    """Whether a step stayed within the bound, and why not. A step with no successful request fails."""
    p99 = summary.get("p99_ms")
    if p99 is None:
        return False, "no successful request"
    if summary["error_rate"] > plan.max_error_rate:
        return False, f"error rate {summary['error_rate']:.4f} > {plan.max_error_rate}"
    if p99 > plan.max_p99_ms:
        return False, f"p99 {p99:.1f} ms > {plan.max_p99_ms:g} ms"
    return True, "held"


def run_steps(plan: StepPlan, run: StepRunner, *, half_step: bool = True,
              on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Climb until a step fails (or ``max_steps`` / ``max_rate``); then, with ``half_step``, one step at half the
    saturation rate. Returns the steps (each with ``held`` and ``reason``), ``saturation_rps`` (None when even
    the first step failed), ``stopped_because`` and ``half``."""
    steps: list[dict[str, Any]] = []
    rate = plan.start
    saturation: float | None = None
    stopped = f"reached --max-steps {plan.max_steps} without breaking the bound"
    for index in range(plan.max_steps):
        if plan.max_rate is not None and rate > plan.max_rate * (1 + 1e-9):
            stopped = f"reached --max-rate {plan.max_rate:g} without breaking the bound"
            break
        summary = run(rate, index)
        ok, reason = holds(summary, plan)
        step = {"step": index, "held": ok, "reason": reason, **summary}
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if not ok:
            stopped = f"step {index} at {rate:.4g} req/s: {reason}"
            break
        saturation = rate
        rate = plan.next_rate(rate)
    half: dict[str, Any] | None = None
    if half_step and saturation is not None:
        summary = run(saturation / 2.0, -1)
        ok, reason = holds(summary, plan)
        half = {"step": "half", "held": ok, "reason": reason, **summary}
        if on_step is not None:
            on_step(half)
    saturation_step = next((s for s in reversed(steps) if s["held"]), None)
    return {
        "plan": {"start_rps": plan.start, "factor": plan.factor, "add": plan.add, "max_p99_ms": plan.max_p99_ms,
                 "max_error_rate": plan.max_error_rate, "max_steps": plan.max_steps, "max_rate": plan.max_rate,
                 "step_duration_s": plan.duration, "min_requests": plan.min_requests},
        "steps": steps,
        "saturation_rps": saturation,
        "saturation_pairs_per_s": None if saturation_step is None else saturation_step["achieved_pairs_per_s"],
        "saturation_p99_ms": None if saturation_step is None else saturation_step["p99_ms"],
        "stopped_because": stopped,
        "half": half,
        "p99_at_half_saturation_ms": None if half is None else half["p99_ms"],
    }
