"""Request and response schemas of the HTTP API (pydantic). Limits that depend on settings (items per request,
text lengths) are checked by :func:`service.api.router.check_limits`, with the same 422 format."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
)


def _unicode(value: str) -> str:
    """Text must be encodable as UTF-8: JSON admits escaped lone surrogates (``"\\ud800"``), the tokenizer and
    every response encoder do not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate such as \\ud800)") from None
    return value


# strict: the API promises JSON strings, integers and booleans, and coerces none into another (no "yes" for true,
# no true for an id)
Text = Annotated[str, Strict(), AfterValidator(_unicode)]
NonBlank = Annotated[Text, StringConstraints(min_length=1)]
ItemId = Text | StrictInt


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace only")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreItem(_Strict):
    id: ItemId = Field(description="The item's id in the catalogue (the store key).")
    title: Text | None = Field(None, description="Product title, used when the item is not in the store.")


class ScoreRequest(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "simpson angle bracket", "items": [{"id": "100001"},
                                                     {"id": "x1", "title": "Everbilt Corner Brace"}],
         "evidence": False}]})

    query: NonBlank = Field(description="The search query.")
    items: list[ScoreItem] = Field(min_length=1, description="Items to score, in the order results are wanted.")
    evidence: StrictBool = Field(False, description="Per item, each query token's best-matching title token.")

    _query = field_validator("query")(_not_blank)


class Evidence(BaseModel):
    query_token: str
    title_token: str
    similarity: float = Field(description="Cosine of the two token embeddings (the MaxSim term).")


class ItemScore(BaseModel):
    id: ItemId
    score: float | None = Field(None, description="Calibrated probability that the item is relevant (Good).")
    label: Literal["Good", "Bad"] | None = None
    source: Literal["store", "title"] | None = Field(None, description="Where the item's embeddings came from.")
    error: str | None = Field(None, description="Why this item has no score.")
    evidence: list[Evidence] | None = None


class ScoreResponse(BaseModel):
    model_version: str
    scores: list[ItemScore]
    n_scored: int
    n_errors: int
    timings_ms: dict[str, float]


class RerankDocument(BaseModel):
    """A Cohere v1 document object: ``text`` (or the ``rank_fields``) plus any fields, returned as sent."""

    model_config = ConfigDict(extra="allow")

    text: Text | None = None


RERANK_MODEL = Field(None, description="The model to rank with: the served model's name (e.g. colbert) or version "
                                       "(colbert:1); another name is a 404 naming model. Default: the served one.")
RERANK_TOP_N = Field(None, ge=1, description="Return the best top_n only (default: all).")


class RerankRequest(_Strict):
    """Cohere v1 (``cohere.Client().rerank``) and Jina rerank request. Fields these APIs define that the gateway
    cannot honour (``max_chunks_per_doc``) are refused when set, as are unknown fields."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "colbert", "query": "simpson angle bracket",
         "documents": ["Simpson Strong-Tie 12-Gauge Angle", {"text": "BEHR Deck Stain", "sku": "B-1"}],
         "top_n": 1, "return_documents": True}]})

    model: Text | None = RERANK_MODEL
    query: NonBlank = Field(description="The search query.")
    documents: list[Text | RerankDocument] = Field(
        min_length=1, description="Product titles: strings, or objects ranked on their text field or rank_fields.")
    top_n: StrictInt | None = RERANK_TOP_N
    rank_fields: list[Text] | None = Field(
        None, min_length=1, description="Object documents: the fields to rank on, in this order (one field: its "
                                        "value; several: 'field: value' lines). Default: text.")
    return_documents: StrictBool = Field(False, description="Return each result's document as sent.")
    max_chunks_per_doc: StrictInt | None = Field(None, description="Not supported (documents are titles, never "
                                                                   "chunked): refused when set.")

    _query = field_validator("query")(_not_blank)


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str = Field(description="The request id (X-Request-ID).")
    model: str
    results: list[RerankResult]
    meta: dict[str, object] = Field(default_factory=dict)


class RerankV2Request(_Strict):
    """Cohere's v2 rerank request (``cohere.ClientV2().rerank``): documents are plain strings. ``priority`` and
    ``relevant_spans`` cannot be honoured and are refused when set, as are unknown fields."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "colbert", "query": "simpson angle bracket",
         "documents": ["Simpson Strong-Tie 12-Gauge Angle", "BEHR Deck Stain"], "top_n": 1,
         "max_tokens_per_doc": 64}]})

    model: Text | None = RERANK_MODEL
    query: NonBlank = Field(description="The search query.")
    documents: list[Text] = Field(min_length=1, description="Product titles.")
    top_n: StrictInt | None = RERANK_TOP_N
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1, description="Truncate each document to this many of "
                                                                         "the model's tokens before scoring.")
    priority: StrictInt | None = Field(None, description="Not supported: refused when set.")
    relevant_spans: dict[str, object] | None = Field(None, description="Not supported: refused when set.")

    _query = field_validator("query")(_not_blank)


class RerankV2Result(BaseModel):
    index: int
    relevance_score: float


class RerankV2Response(BaseModel):
    id: str = Field(description="The request id (X-Request-ID).")
    results: list[RerankV2Result]
    meta: dict[str, object] = Field(default_factory=dict)


class UpsertItem(_Strict):
    id: ItemId
    title: NonBlank

    _title = field_validator("title")(_not_blank)


class UpsertRequest(_Strict):
    items: list[UpsertItem] = Field(min_length=1)


class UpsertResponse(BaseModel):
    model_version: str
    upserted: int


class ExplainRequest(_Strict):
    query: NonBlank = Field(description="The search query.")
    title: NonBlank | None = Field(None, description="The product title to explain; may be left out when item_id "
                                                     "names a catalogue item.")
    item_id: ItemId | None = Field(None, description="The item's id: its stored embeddings are scored (the same "
                                                     "number /v1/score gives) and, without title, its title comes "
                                                     "from the gateway's catalogue.")
    mode: Literal["decision", "teacher"] | None = Field(
        None, description="decision: explain the served student's verdict from its own evidence; teacher: the "
                          "teacher's own judgement beside the student's. Default: the explain_mode setting.")
    writer: Literal["rules", "llm"] | None = Field(
        None, description="decision mode: rules (fast) or llm (the teacher under the decision grammar). Default: "
                          "the explain_writer setting.")
    counterfactual: StrictBool = Field(False, description="decision mode: also apply the edit the explanation "
                                                          "implies to the title and return the student's score.")
    model: Text | None = Field(None, description="The teacher model that writes (mode teacher, writer llm): one of "
                                                 "the configured teachers; default: the default teacher.")

    _query = field_validator("query")(_not_blank)
    _title = field_validator("title")(lambda v: v if v is None else _not_blank(v))


class ExplainPageRequest(_Strict):
    query: NonBlank = Field(description="The search query.")
    items: list[ScoreItem] = Field(min_length=1, description="The page's items (id, and title when the gateway's "
                                                             "catalogue does not hold it), in page order.")
    mode: Literal["decision"] | None = Field(None, description="Pages are explained in decision mode.")
    writer: Literal["rules"] | None = Field(None, description="Pages are written by the rules writer.")
    counterfactual: StrictBool = Field(False, description="Also score each explanation's implied edit.")

    _query = field_validator("query")(_not_blank)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="The field's path in the request, from body: [\"body\", \"items\", "
                                             "3, \"id\"].")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="The kind of fault (pydantic's error type: missing, too_long, extra_forbidden, "
                                  "...).")


class ErrorDetail(BaseModel):
    type: str = Field(description="What went wrong, for programs: invalid_argument, malformed, unauthenticated, "
                                  "permission_denied, not_found, too_large, read_timeout, unsupported_encoding, "
                                  "overloaded, unavailable, upstream_error, internal, ...")
    message: str = Field(description="One line for people; an error about a field starts with its path "
                                     "(items[3].id: ...).")
    fields: list[FieldError] | None = Field(None, description="The request fields at fault (422, 400, and 404 "
                                                              "naming a field).")


class Problem(BaseModel):
    """The body of every error response, whatever the status."""

    error: ErrorDetail
