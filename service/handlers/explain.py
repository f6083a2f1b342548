"""``explain`` and ``explain_page``: explanations of a pair or of a result page through
:class:`service.explain.Explainer` (whose logic stays there); this handler owns the checks both transports share
(gRPC messages have no schema), the outcome metrics and the error mapping: an unknown item → NOT_FOUND naming the
field, no teacher or a teacher down → UNAVAILABLE with a retry hint, a teacher answering with an error or off the
decision grammar → UPSTREAM_ERROR."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from service.backends import BackendUnavailable
from service.core.batching import Overloaded
from service.core.engine import ItemInput
from service.explain import (
    Explainer,
    ExplainPage,
    ExplainResult,
    Mode,
    StudentUnavailable,
    TeacherResponseError,
    TeacherUnavailable,
    UnknownItem,
    UnknownTeacher,
    Writer,
)
from service.handlers.errors import ApiError, Kind
from service.handlers.limits import check_item, check_query, check_text, invalid
from service.handlers.scoring import EngineRef, current_engine, encoder_unavailable, overloaded
from service.metrics import Metrics
from service.settings import Settings

NO_TEACHER_RETRY_S = 300  # no teacher configured: retrying soon will not help
T = TypeVar("T")


MODES: dict[str, Mode] = {"decision": "decision", "teacher": "teacher"}
WRITERS: dict[str, Writer] = {"rules": "rules", "llm": "llm"}


def _choice(value: str | None, allowed: dict[str, T], field: str) -> T | None:
    """``allowed[value]`` (None stays None); INVALID_ARGUMENT naming ``field`` for any other value (gRPC strings
    have no schema)."""
    if value is None:
        return None
    if value not in allowed:
        raise invalid((field,), f"must be one of {', '.join(allowed)}; got {value!r}", "literal_error")
    return allowed[value]


class ExplainHandler:
    def __init__(self, settings: Settings, metrics: Metrics, explainer: Callable[[], Explainer | None],
                 engine: EngineRef) -> None:
        self.settings = settings
        self.metrics = metrics
        self.explainer = explainer  # set once the gateway has started
        self.engine = engine  # the served student: what decision mode explains, and teacher mode compares with

    def _ready(self) -> Explainer:
        explainer = self.explainer()
        if explainer is None:
            raise ApiError(Kind.UNAVAILABLE, "the gateway is starting", retry_after_s=1)
        return explainer

    async def __call__(self, query: str, title: str | None = None, *, item_id: str | None = None,
                       mode: str | None = None, writer: str | None = None, counterfactual: bool = False,
                       model: str | None = None) -> ExplainResult:
        check_query(query, self.settings)
        if title is not None:
            if not title.strip():
                raise invalid(("title",), "must not be empty or whitespace only", "value_error")
            check_text(title, ("title",), self.settings.max_title_chars)
        if item_id is not None:
            if not item_id:
                raise invalid(("item_id",), "must not be empty", "value_error")
            check_text(item_id, ("item_id",), self.settings.max_id_chars)
        if title is None and item_id is None:
            raise invalid(("title",), "give the title to explain, or the item_id of a catalogue item", "missing")
        chosen_mode = _choice(mode, MODES, "mode")
        chosen_writer = _choice(writer, WRITERS, "writer")
        if model is not None:
            check_text(model, ("model",), self.settings.max_id_chars)
        explainer = self._ready()
        resolved = explainer.mode(chosen_mode)
        if resolved == "decision" and model is not None and (chosen_writer or self.settings.explain_writer) == "rules":
            raise invalid(("model",), "picks the teacher that writes (mode=teacher, or writer=llm); the rules "
                                      "writer uses none", "value_error")
        if resolved == "teacher" and chosen_writer is not None:
            raise invalid(("writer",), "chooses who writes a decision explanation; in mode teacher the teacher "
                                       "writes its own judgement", "value_error")
        if resolved == "teacher" and counterfactual:
            raise invalid(("counterfactual",), "is the edit a decision explanation implies; mode teacher has none",
                          "value_error")
        engine = current_engine(self.engine)
        return await self._observe(resolved, explainer.explain(
            engine, query, title=title, item_id=item_id, mode=resolved, writer=chosen_writer,
            counterfactual=counterfactual, model=model))

    async def page(self, query: str, items: Sequence[ItemInput], *, mode: str | None = None,
                   writer: str | None = None, counterfactual: bool = False) -> ExplainPage:
        """Decision explanations of up to ``explain_page_max_items`` items of one query, in order."""
        check_query(query, self.settings)
        if not items:
            raise invalid(("items",), "at least one item is required", "too_short")
        limit = self.settings.explain_page_max_items
        if len(items) > limit:
            raise invalid(("items",), f"at most {limit} items per page, got {len(items)}")
        for i, item in enumerate(items):
            check_item(item.id, item.title, i, self.settings)
            if item.title is not None and not item.title.strip():
                raise invalid(("items", i, "title"), "must not be empty or whitespace only", "value_error")
        if _choice(mode, MODES, "mode") == "teacher":
            raise invalid(("mode",), "a page is explained in decision mode; ask /v1/explain for the teacher's "
                                     "judgement of one pair", "value_error")
        if _choice(writer, WRITERS, "writer") == "llm":
            raise invalid(("writer",), "a page is written by the rules writer; the llm writer explains one pair at "
                                       "a time (about a second each on CPU) through /v1/explain", "value_error")
        explainer = self._ready()
        engine = current_engine(self.engine)
        return await self._observe("page", explainer.explain_page(engine, query, items,
                                                                  counterfactual=counterfactual))

    async def _observe(self, mode: str, work: Awaitable[T]) -> T:
        """Run ``work``, counting its outcome and latency under ``mode``, and map its errors to `ApiError`."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await work
        except UnknownItem as exc:
            outcome = "unknown_item"
            raise ApiError(Kind.NOT_FOUND, str(exc), field=("item_id",)) from None
        except UnknownTeacher as exc:
            outcome = "invalid"
            raise invalid(("model",), str(exc), "value_error") from None
        except (TeacherUnavailable, StudentUnavailable) as exc:
            outcome = "unavailable"
            retry = getattr(exc, "retry_after_s", 1)
            raise ApiError(Kind.UNAVAILABLE, str(exc),
                           retry_after_s=retry if retry is not None else NO_TEACHER_RETRY_S) from None
        except TeacherResponseError as exc:
            outcome = "teacher_error"
            raise ApiError(Kind.UPSTREAM_ERROR, f"the teacher answered with an error: {exc}") from None
        except Overloaded as exc:
            outcome = "overloaded"
            raise overloaded(exc) from None
        except BackendUnavailable as exc:
            outcome = "unavailable"
            raise encoder_unavailable(exc) from None
        finally:
            self.metrics.explain.labels(mode, outcome).inc()
            self.metrics.explain_latency.labels(mode).observe(time.perf_counter() - started)
