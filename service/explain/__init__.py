"""Explanations of a (query, title) pair: of the served student's decision (`decision`, from its own evidence read
back into words by `reading`) or the teacher's own judgement (`teacher`); `explainer` serves both to the API,
`result` is what it returns."""

from __future__ import annotations

from service.explain.explainer import Explainer, StudentUnavailable, UnknownItem
from service.explain.result import AspectEvidence, ExplainPage, ExplainResult, Mode, StudentView, Writer
from service.explain.teacher import TeacherResponseError, Teachers, TeacherUnavailable, UnknownTeacher

__all__ = ["AspectEvidence", "ExplainPage", "ExplainResult", "Explainer", "Mode", "StudentUnavailable",
           "StudentView", "TeacherResponseError", "TeacherUnavailable", "Teachers", "UnknownItem", "UnknownTeacher",
           "Writer"]
