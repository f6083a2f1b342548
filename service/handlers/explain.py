"""``explain``: the teacher's explanation of a (query, title) pair through :class:`service.explain.Explainer`
(whose logic stays there); this handler owns the limits, the outcome metrics and the error mapping: no teacher or
a teacher down → UNAVAILABLE with a retry hint, a teacher answering with an error → UPSTREAM_ERROR."""

from __future__ import annotations

import time
from collections.abc import Callable

from service.explain import Explainer, ExplainResult, TeacherResponseError, TeacherUnavailable, UnknownTeacher
from service.handlers.errors import ApiError, Kind
from service.handlers.limits import check_query, check_text
from service.handlers.scoring import EngineRef
from service.metrics import Metrics
from service.settings import Settings

NO_TEACHER_RETRY_S = 300  # no teacher configured: retrying soon will not help


class ExplainHandler:
    def __init__(self, settings: Settings, metrics: Metrics, explainer: Callable[[], Explainer | None],
                 engine: EngineRef) -> None:
        self.settings = settings
        self.metrics = metrics
        self.explainer = explainer  # set once the gateway has started
        self.engine = engine  # the served student, whose score and evidence go beside the teacher's

    async def __call__(self, query: str, title: str, model: str | None = None) -> ExplainResult:
        check_query(query, self.settings)
        if not title.strip():
            raise ApiError(Kind.INVALID_ARGUMENT, "must not be empty or whitespace only", field=("title",),
                           error_type="value_error")
        check_text(title, ("title",), self.settings.max_title_chars)
        if model is not None:
            check_text(model, ("model",), self.settings.max_id_chars)
        explainer = self.explainer()
        if explainer is None:
            raise ApiError(Kind.UNAVAILABLE, "the gateway is starting", retry_after_s=1)
        started = time.perf_counter()
        try:
            result = await explainer.explain(query, title, model=model, student=self.engine(),
                                             good_threshold=self.settings.good_threshold)
        except UnknownTeacher as exc:
            raise ApiError(Kind.INVALID_ARGUMENT, str(exc), field=("model",), error_type="value_error") from None
        except TeacherUnavailable as exc:
            self.metrics.explain.labels("unavailable").inc()
            retry = exc.retry_after_s if exc.retry_after_s is not None else NO_TEACHER_RETRY_S
            raise ApiError(Kind.UNAVAILABLE, str(exc), retry_after_s=retry) from None
        except TeacherResponseError as exc:
            self.metrics.explain.labels("teacher_error").inc()
            raise ApiError(Kind.UPSTREAM_ERROR, f"the teacher answered with an error: {exc}") from None
        finally:
            self.metrics.explain_latency.observe(time.perf_counter() - started)
        self.metrics.explain.labels("ok").inc()
        return result
