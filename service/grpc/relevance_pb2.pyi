from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Item(_message.Message):
    __slots__ = ("id", "title")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("query", "items", "evidence")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    query: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    evidence: bool
    def __init__(self, query: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., evidence: bool = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("query_token", "title_token", "similarity")
    QUERY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TITLE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    query_token: str
    title_token: str
    similarity: float
    def __init__(self, query_token: _Optional[str] = ..., title_token: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class ItemScore(_message.Message):
    __slots__ = ("id", "score", "label", "source", "error", "evidence")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    label: str
    source: str
    error: str
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., source: _Optional[str] = ..., error: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("model_version", "scores", "n_scored", "n_errors", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    N_SCORED_FIELD_NUMBER: _ClassVar[int]
    N_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    scores: _containers.RepeatedCompositeFieldContainer[ItemScore]
    n_scored: int
    n_errors: int
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, model_version: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[ItemScore, _Mapping]]] = ..., n_scored: _Optional[int] = ..., n_errors: _Optional[int] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("query", "documents", "top_n", "model", "max_tokens_per_doc")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_DOC_FIELD_NUMBER: _ClassVar[int]
    query: str
    documents: _containers.RepeatedScalarFieldContainer[str]
    top_n: int
    model: str
    max_tokens_per_doc: int
    def __init__(self, query: _Optional[str] = ..., documents: _Optional[_Iterable[str]] = ..., top_n: _Optional[int] = ..., model: _Optional[str] = ..., max_tokens_per_doc: _Optional[int] = ...) -> None: ...

class RerankResult(_message.Message):
    __slots__ = ("index", "relevance_score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    relevance_score: float
    def __init__(self, index: _Optional[int] = ..., relevance_score: _Optional[float] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("model_version", "results", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    results: _containers.RepeatedCompositeFieldContainer[RerankResult]
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, model_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[RerankResult, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("query", "title", "model", "item_id", "mode", "writer", "counterfactual")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_FIELD_NUMBER: _ClassVar[int]
    query: str
    title: str
    model: str
    item_id: str
    mode: str
    writer: str
    counterfactual: bool
    def __init__(self, query: _Optional[str] = ..., title: _Optional[str] = ..., model: _Optional[str] = ..., item_id: _Optional[str] = ..., mode: _Optional[str] = ..., writer: _Optional[str] = ..., counterfactual: bool = ...) -> None: ...

class ExplainPageRequest(_message.Message):
    __slots__ = ("query", "items", "mode", "writer", "counterfactual")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_FIELD_NUMBER: _ClassVar[int]
    query: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    mode: str
    writer: str
    counterfactual: bool
    def __init__(self, query: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., mode: _Optional[str] = ..., writer: _Optional[str] = ..., counterfactual: bool = ...) -> None: ...

class ExplainPageItem(_message.Message):
    __slots__ = ("id", "result", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    result: ExplainResponse
    error: str
    def __init__(self, id: _Optional[str] = ..., result: _Optional[_Union[ExplainResponse, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class ExplainPageResponse(_message.Message):
    __slots__ = ("query", "model_version", "items", "n_explained", "n_errors", "latency_ms")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    N_EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    N_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    query: str
    model_version: str
    items: _containers.RepeatedCompositeFieldContainer[ExplainPageItem]
    n_explained: int
    n_errors: int
    latency_ms: float
    def __init__(self, query: _Optional[str] = ..., model_version: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ExplainPageItem, _Mapping]]] = ..., n_explained: _Optional[int] = ..., n_errors: _Optional[int] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class AspectEvidence(_message.Message):
    __slots__ = ("aspect", "query_value", "query_span", "item_value", "item_span", "matches")
    ASPECT_FIELD_NUMBER: _ClassVar[int]
    QUERY_VALUE_FIELD_NUMBER: _ClassVar[int]
    QUERY_SPAN_FIELD_NUMBER: _ClassVar[int]
    ITEM_VALUE_FIELD_NUMBER: _ClassVar[int]
    ITEM_SPAN_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    aspect: str
    query_value: str
    query_span: Span
    item_value: str
    item_span: Span
    matches: bool
    def __init__(self, aspect: _Optional[str] = ..., query_value: _Optional[str] = ..., query_span: _Optional[_Union[Span, _Mapping]] = ..., item_value: _Optional[str] = ..., item_span: _Optional[_Union[Span, _Mapping]] = ..., matches: bool = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("query", "title", "cot", "judgement", "reason", "aspects", "note", "score", "p_good", "p_bad", "normalisation", "score_reason", "parse_ok", "parse_errors", "parse_warnings", "model", "latency_ms", "result_json", "mode", "verdict", "writer", "item_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COT_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ASPECTS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    P_GOOD_FIELD_NUMBER: _ClassVar[int]
    P_BAD_FIELD_NUMBER: _ClassVar[int]
    NORMALISATION_FIELD_NUMBER: _ClassVar[int]
    SCORE_REASON_FIELD_NUMBER: _ClassVar[int]
    PARSE_OK_FIELD_NUMBER: _ClassVar[int]
    PARSE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    PARSE_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    title: str
    cot: str
    judgement: str
    reason: str
    aspects: _containers.RepeatedCompositeFieldContainer[AspectEvidence]
    note: str
    score: float
    p_good: float
    p_bad: float
    normalisation: str
    score_reason: str
    parse_ok: bool
    parse_errors: _containers.RepeatedScalarFieldContainer[str]
    parse_warnings: _containers.RepeatedScalarFieldContainer[str]
    model: str
    latency_ms: float
    result_json: str
    mode: str
    verdict: str
    writer: str
    item_id: str
    def __init__(self, query: _Optional[str] = ..., title: _Optional[str] = ..., cot: _Optional[str] = ..., judgement: _Optional[str] = ..., reason: _Optional[str] = ..., aspects: _Optional[_Iterable[_Union[AspectEvidence, _Mapping]]] = ..., note: _Optional[str] = ..., score: _Optional[float] = ..., p_good: _Optional[float] = ..., p_bad: _Optional[float] = ..., normalisation: _Optional[str] = ..., score_reason: _Optional[str] = ..., parse_ok: bool = ..., parse_errors: _Optional[_Iterable[str]] = ..., parse_warnings: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., latency_ms: _Optional[float] = ..., result_json: _Optional[str] = ..., mode: _Optional[str] = ..., verdict: _Optional[str] = ..., writer: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...
