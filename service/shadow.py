"""The shadow teacher, a drift alarm: a fraction (``shadow_rate``) of the pairs that ``/v1/score`` scores is also
sent to the teacher, in the background, and the teacher's judgement is compared with the served student's label.
Prometheus then shows how often the two agree and how the teacher's scores are distributed beside the student's
(`service.metrics`: ``relevance_shadow_*``); an alert fires when agreement drops (helm/relevance/alerts).

Scoring never waits for it: `ShadowSampler.offer` runs inside the score route, draws the sample and puts the pairs
on a bounded queue without blocking (a full queue drops the pair and counts it); `shadow_concurrency` workers on the
event loop take them off and call the teacher with the explain path's client, its timeouts and retries. A slow or
down teacher fills the queue, then pairs are dropped; nothing else changes.

The teacher needs the title: a pair sent with its title uses it; one sent by id only is looked up in
the gateway's ``catalog`` (a catalogue TSV, e.g. data/derived/catalogue.tsv), and skipped (counted as ``no_title``) when
that is not set or does not hold the id (the item store keeps embeddings, not titles).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence

from relevance_core.cot import judgement_of
from service.catalogue import Catalogue
from service.explain import TeacherResponseError, Teachers, TeacherUnavailable
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("service.shadow")


class ShadowSampler:
    """Samples scored pairs at ``rate`` onto a queue of ``queue_size`` and judges them with teacher ``model`` (the
    default teacher when None) in ``concurrency`` workers. Call `start` and `stop` on the event loop."""

    def __init__(self, teachers: Teachers, metrics: Metrics, *, rate: float, queue_size: int = 32,
                 concurrency: int = 1, good_threshold: float = 0.5, model: str | None = None,
                 titles: Mapping[str, str] | None = None, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0 or queue_size < 1 or concurrency < 1:
            raise ValueError("need 0 <= rate <= 1, queue_size >= 1, concurrency >= 1")
        self.teachers, self.metrics = teachers, metrics
        self.rate, self.concurrency, self.good_threshold, self.model = rate, concurrency, good_threshold, model
        self.titles = titles or {}
        self._queue: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue(maxsize=queue_size)
        self._random = random.Random(seed).random
        self._workers: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, teachers: Teachers, catalogue: Catalogue, metrics: Metrics,
                      ) -> ShadowSampler | None:
        """The sampler the settings ask for (``shadow_*``), or None when ``shadow_rate`` is 0 or no teacher is
        configured (logged). An unknown ``shadow_model`` is a configuration error."""
        if settings.shadow_rate <= 0:
            return None
        if settings.shadow_model is not None and settings.shadow_model not in teachers.models:
            raise ValueError(f"shadow_model {settings.shadow_model!r} is not a configured teacher "
                             f"({', '.join(teachers.models) or 'none'})")
        if not teachers.models:
            log.warning("shadow_rate is %g but no teacher is configured: no shadow judgements", settings.shadow_rate)
            return None
        return cls(teachers, metrics, rate=settings.shadow_rate, queue_size=settings.shadow_queue_size,
                   concurrency=settings.shadow_concurrency, good_threshold=settings.good_threshold,
                   model=settings.shadow_model, titles=catalogue.titles)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def offer(self, query: str, items: Sequence[tuple[str, str | None]], scores: Sequence[float | None]) -> None:
        """Sample the scored ``items`` ((id, title or None), with the student's ``scores``) onto the queue; never
        blocks."""
        pairs = self.metrics.shadow_pairs
        for (item_id, title), score in zip(items, scores, strict=True):
            if score is None or self._random() >= self.rate:
                continue
            text = title or self.titles.get(item_id)
            if not text:
                pairs.labels("no_title").inc()
                continue
            try:
                self._queue.put_nowait((query, text, score))
            except asyncio.QueueFull:
                pairs.labels("dropped").inc()
            else:
                pairs.labels("queued").inc()
        self.metrics.shadow_queue_depth.set(self._queue.qsize())

    async def _work(self) -> None:
        metrics = self.metrics
        while True:
            query, title, student = await self._queue.get()
            metrics.shadow_queue_depth.set(self._queue.qsize())
            try:
                result = await self.teachers.judge(query, title, self.model)
            except TeacherUnavailable:
                metrics.shadow_judgements.labels("unavailable").inc()
                continue
            except TeacherResponseError:
                metrics.shadow_judgements.labels("teacher_error").inc()
                continue
            if result.score is None:
                metrics.shadow_judgements.labels("unscored").inc()
                continue
            metrics.shadow_judgements.labels("ok").inc()
            metrics.shadow_score.labels("teacher").observe(result.score)
            metrics.shadow_score.labels("student").observe(student)
            agree = result.verdict == judgement_of(student, self.good_threshold)
            metrics.shadow_comparisons.labels("agree" if agree else "disagree").inc()
