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
    text: NonBlank


class RerankRequest(BaseModel):
    """Cohere/Jina-compatible rerank request; other fields those APIs define (model, ...) are accepted."""

    model_config = ConfigDict(extra="ignore")

    query: NonBlank
    documents: list[NonBlank | RerankDocument] = Field(min_length=1)
    top_n: StrictInt | None = Field(None, ge=1)
    return_documents: StrictBool = False
    model: Text | None = None

    _query = field_validator("query")(_not_blank)


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    model: str
    results: list[RerankResult]
    meta: dict[str, object] = Field(default_factory=dict)


class RerankV2Request(BaseModel):
    """Cohere's v2 rerank request (``cohere.ClientV2.rerank``): documents are plain strings; ``model``,
    ``max_tokens_per_doc`` and ``priority`` are accepted (the served model and its title length apply)."""

    model_config = ConfigDict(extra="ignore")

    model: Text | None = None
    query: NonBlank
    documents: list[NonBlank] = Field(min_length=1)
    top_n: StrictInt | None = Field(None, ge=1)
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1)

    _query = field_validator("query")(_not_blank)


class RerankV2Result(BaseModel):
    index: int
    relevance_score: float


class RerankV2Response(BaseModel):
    id: str
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


class Problem(BaseModel):
    """Body of every error response other than 422."""

    detail: str
