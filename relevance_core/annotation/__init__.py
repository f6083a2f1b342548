"""CoT annotation by rules, torch-free: the programmatic stand-in for the annotating L-LLM (`rules`). The teacher's
SFT data, the committee's teacher file and the gateway's explanations of the served decision all write their
CoTs with it."""

from __future__ import annotations

from relevance_core.annotation.rules import ROUTES, Annotator, Lexicons, Requirement

__all__ = ["ROUTES", "Annotator", "Lexicons", "Requirement"]
