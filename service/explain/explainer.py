"""The explain API's logic, for one pair and for a result page, in two modes:

- **decision** (the default unless ``teacher_url`` names an endpoint): the served student scores the pair exactly as
  /v1/score does (the item's stored embeddings when it is named by id, else its title), its token interaction is
  read back into the words of the pair (`service.explain.reading`) and a CoT that reaches the student's verdict is
  written from that evidence (`service.explain.decision`) by the ``rules`` writer or by the teacher under the
  decision grammar (``llm``). With ``counterfactual``, the edit the explanation implies is applied to the title
  and scored.
- **teacher**: the teacher's independent judgement (`service.explain.teacher`), with the student's view beside it
  and whether the two disagree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from relevance_core.cot import Explanation, judgement_of, parse, render
from relevance_core.teacher.openai_client import TeacherResponseError
from service.catalogue import Catalogue
from service.core.batching import Overloaded
from service.core.engine import ItemInput, ItemResult, ScoringEngine
from service.explain.decision import Cited, Edit, cite, decision_grammar, implied_edit, single_edits, write_rules
from service.explain.reading import PairReading, TokensDiffer, read_pair
from service.explain.result import (
    Counterfactual,
    EditView,
    ExplainPage,
    ExplainResult,
    Mode,
    PageEntry,
    RequirementView,
    StudentView,
    TokenEvidence,
    Writer,
    aspects_of,
)
from service.explain.teacher import Teachers, teacher_result
from service.settings import Settings


class UnknownItem(LookupError):
    """An item named by id only whose title the gateway cannot find (no catalogue, or not in it)."""


class StudentUnavailable(RuntimeError):
    """The student could not score the pair (its message says why); decision mode cannot explain without it."""


@dataclass
class _Pair:
    """One pair on its way through decision mode."""

    item_id: str | None
    title: str
    error: str | None = None
    scored: ItemResult | None = None
    reading: PairReading | None = None
    cited: Cited | None = None
    explanation: Explanation | None = None
    cot: str | None = None  # the teacher's text (llm writer); the rules writer's is rendered
    model: str = "rules"


class Explainer:
    """Explanations over the engine serving now; ``teachers`` for teacher mode and the llm writer, ``catalogue``
    for titles of items named by id and the annotator's brand lexicon."""

    def __init__(self, settings: Settings, teachers: Teachers, catalogue: Catalogue) -> None:
        self.settings = settings
        self.teachers = teachers
        self.catalogue = catalogue

    def mode(self, requested: Mode | None) -> Mode:
        """The mode a request gets: its own, else the ``explain_mode`` setting (auto: teacher when a teacher URL
        is configured, else decision)."""
        if requested is not None:
            return requested
        if self.settings.explain_mode != "auto":
            return self.settings.explain_mode
        return "teacher" if self.settings.teacher_url else "decision"

    def title_of(self, item_id: str | None, title: str | None) -> str:
        """The title to explain: the request's, else the catalogue's for ``item_id``; raises `UnknownItem`."""
        if title:
            return title
        found = self.catalogue.titles.get(item_id) if item_id is not None else None
        if found is None:
            where = "the catalogue (catalog setting)" if self.settings.catalog else "a catalogue (no catalog is set)"
            raise UnknownItem(f"item {item_id!r} has no title in {where}; send its title")
        return found

    # --- one pair -----------------------------------------------------------------------------------------------
    async def explain(self, engine: ScoringEngine, query: str, *, title: str | None = None,
                      item_id: str | None = None, mode: Mode | None = None, writer: Writer | None = None,
                      counterfactual: bool = False, model: str | None = None) -> ExplainResult:
        """One pair's explanation. Raises `UnknownItem`, `StudentUnavailable` (decision mode), and what
        `Teachers.judge` raises (teacher mode, llm writer)."""
        started = time.perf_counter()
        text = self.title_of(item_id, title)
        if self.mode(mode) == "teacher":
            result = await self._teacher(engine, query, text, item_id, model)
        else:
            pair = _Pair(item_id, text)
            await self._decide(engine, query, [pair], writer or self.settings.explain_writer, model)
            if pair.error is not None:
                raise StudentUnavailable(pair.error)
            result = self._result(engine, query, pair, writer or self.settings.explain_writer)
            if counterfactual:
                await self._counterfactuals(engine, query, [(pair, result)])
        result.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        return result

    async def _teacher(self, engine: ScoringEngine, query: str, title: str, item_id: str | None,
                       model: str | None) -> ExplainResult:
        """The teacher's judgement, the student scoring the same pair meanwhile."""
        pair = _Pair(item_id, title)
        scoring = asyncio.ensure_future(self._score(engine, query, [pair], use_store=item_id is not None))
        try:
            teacher = await self.teachers.judge(query, title, model)
        except BaseException:
            scoring.cancel()
            raise
        await scoring
        self._read(engine, query, [pair])
        result = teacher_result(teacher)
        result.item_id = item_id
        if pair.scored is None or pair.scored.score is None:
            result.student_error = pair.error or "the student gave no score"
        else:
            result.student = self._student_view(engine, pair)
            said = teacher.verdict
            result.disagreement = None if said is None else said != result.student.label
        return result

    # --- a result page --------------------------------------------------------------------------------------------
    async def explain_page(self, engine: ScoringEngine, query: str, items: Sequence[ItemInput], *,
                           counterfactual: bool = False) -> ExplainPage:
        """Decision explanations (rules writer) of a page of items for one query, scored in one batch, in request
        order; an item that cannot be explained carries its error."""
        started = time.perf_counter()
        pairs: list[_Pair] = []
        for item in items:
            try:
                pairs.append(_Pair(item.id, self.title_of(item.id, item.title)))
            except UnknownItem as exc:
                pairs.append(_Pair(item.id, "", error=str(exc)))
        await self._decide(engine, query, pairs, "rules", None)
        done = [(p, self._result(engine, query, p, "rules")) for p in pairs if p.error is None]
        if counterfactual:
            await self._counterfactuals(engine, query, done)
        results = {id(p): r for p, r in done}
        entries = [PageEntry(id=p.item_id or "", result=results.get(id(p)), error=p.error) for p in pairs]
        return ExplainPage(query=query, model_version=engine.model_version, items=entries,
                           n_explained=len(done), n_errors=len(pairs) - len(done),
                           latency_ms=round((time.perf_counter() - started) * 1000.0, 3))

    # --- decision mode ----------------------------------------------------------------------------------------------
    async def _score(self, engine: ScoringEngine, query: str, pairs: Sequence[_Pair], *, use_store: bool) -> None:
        """Score ``pairs`` with their interaction: from the store for items named by id (as /v1/score does, so the
        score is the same number), else from their titles."""
        todo = [p for p in pairs if p.error is None]
        if not todo:
            return
        inputs = [ItemInput(p.item_id if p.item_id is not None else f"explain:{k}", p.title)
                  for k, p in enumerate(todo)]
        try:
            outcome = await engine.score(query, inputs, use_store=use_store, interaction=True)
        except Overloaded as exc:
            for p in todo:
                p.error = f"the student is overloaded: {exc}"
            return
        for p, scored in zip(todo, outcome.items, strict=True):
            p.scored = scored
            if scored.score is None:
                p.error = scored.error or "the student gave no score"

    def _read(self, engine: ScoringEngine, query: str, pairs: Sequence[_Pair]) -> list[_Pair]:
        """Read each scored pair's interaction back into its words; returns the pairs whose stored tokens are not
        their title's (the store holds another title under that id)."""
        differ = []
        for p in pairs:
            if p.error is not None or p.scored is None or p.scored.interaction is None:
                continue
            try:
                p.reading = read_pair(engine.model.tokenizer, self.catalogue.annotator, query, p.title,
                                      p.scored.interaction, self.settings.explain_threshold)
            except TokensDiffer:
                differ.append(p)
        return differ

    async def _decide(self, engine: ScoringEngine, query: str, pairs: Sequence[_Pair], writer: Writer,
                      model: str | None) -> None:
        await self._score(engine, query, pairs, use_store=any(p.item_id is not None for p in pairs))
        differ = self._read(engine, query, pairs)
        if differ:  # explain the title the request gave (or the catalogue's), scored from that title
            await self._score(engine, query, differ, use_store=False)
            self._read(engine, query, differ)
        for p in pairs:
            if p.reading is None or p.scored is None or p.scored.score is None:
                continue
            verdict = judgement_of(p.scored.score, self.settings.good_threshold)
            cited = p.cited = cite(p.reading, self.catalogue.annotator, verdict)
            if writer == "rules":
                p.explanation = write_rules(p.reading, cited)
                continue
            teacher = await self.teachers.judge(query, p.title, model, grammar=decision_grammar(p.reading, cited))
            if teacher.judgement != verdict or teacher.parsed.explanation is None:
                raise TeacherResponseError(f"the teacher did not follow the decision grammar (it wrote "
                                           f"{teacher.judgement or 'no judgement'} for a {verdict} verdict): "
                                           f"{teacher.cot[:200]!r}")
            p.explanation, p.model, p.cot = teacher.parsed.explanation, teacher.model, teacher.cot

    def _student_view(self, engine: ScoringEngine, pair: _Pair) -> StudentView:
        scored = pair.scored
        assert scored is not None and scored.score is not None
        tokens = pair.reading.tokens if pair.reading is not None else ()
        return StudentView(model_version=engine.model_version, score=scored.score,
                           label=judgement_of(scored.score, self.settings.good_threshold),
                           source=scored.source,
                           evidence=[TokenEvidence(query_token=t.query_token, title_token=t.title_token,
                                                   similarity=t.similarity, query_span=t.query_span,
                                                   title_span=t.title_span) for t in tokens])

    def _result(self, engine: ScoringEngine, query: str, pair: _Pair, writer: Writer) -> ExplainResult:
        explanation, reading, cited = pair.explanation, pair.reading, pair.cited
        assert explanation is not None and reading is not None and cited is not None and pair.scored is not None
        unmet = {r.span for r, _ in cited.unmet}
        cot = pair.cot or render(explanation)
        parsed = parse(cot, query, pair.title)
        student = self._student_view(engine, pair)
        return ExplainResult(
            mode="decision", query=query, title=pair.title, item_id=pair.item_id, verdict=student.label,
            writer=writer, cot=cot, judgement=explanation.judgement, reason=explanation.reason,
            aspects=aspects_of(explanation), note=explanation.note, score=student.score, parse_ok=parsed.ok,
            parse_errors=parsed.errors, parse_warnings=parsed.warnings, model=pair.model, latency_ms=0.0,
            student=student, disagreement=False,
            requirements=[RequirementView(aspect=r.aspect, value=r.value, span=r.span, support=r.support,
                                          status="unmet" if r.span in unmet else "met" if r.met else "weak",
                                          title_spans=list(r.matched))
                          for r in reading.requirements])

    async def _counterfactuals(self, engine: ScoringEngine, query: str,
                               done: Sequence[tuple[_Pair, ExplainResult]]) -> None:
        """Apply each explanation's implied edit (and each value alone) to its title and score the edited titles
        in one batch."""
        plans: list[tuple[ExplainResult, list[Edit]]] = []
        for pair, result in done:
            edit = implied_edit(pair.explanation) if pair.explanation is not None else None
            if edit is not None:
                plans.append((result, [edit, *single_edits(edit)]))
        titles = [e.apply(result.title) for result, edits in plans for e in edits]
        if not titles:
            return
        outcome = await engine.score(query, [ItemInput(f"counterfactual:{k}", t) for k, t in enumerate(titles)],
                                     use_store=False)
        scores = iter(zip(titles, outcome.items, strict=True))
        for result, edits in plans:
            views = []
            for edit in edits:
                title, scored = next(scores)
                if scored.score is not None and result.score is not None:
                    views.append(EditView(edit=edit.kind, values=list(edit.values), title=title, score=scored.score,
                                          delta=round(scored.score - result.score, 6)))
            if views and views[0].values == list(edits[0].values):
                result.counterfactual = Counterfactual(implied=views[0], each=views[1:])
