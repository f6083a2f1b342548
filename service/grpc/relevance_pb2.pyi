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
