"""The OpenAPI schema as this gateway enforces it: the request limits that are settings (``max_items``,
``max_query_chars`` ...) written into the request schemas as ``maxItems`` and ``maxLength``, so that a client (or
a generated one) knows them before it sends, and the schema fuzzer generates within them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.settings import Settings

# (component, property, keyword, setting): the limits service.handlers.limits checks
LIMITS: tuple[tuple[str, str, str, str], ...] = (
    *((model, "query", "maxLength", "max_query_chars")
      for model in ("ScoreRequest", "RerankRequest", "RerankV2Request", "ExplainRequest", "ExplainPageRequest")),
    *((model, field, "maxItems", "max_items")
      for model, field in (("ScoreRequest", "items"), ("RerankRequest", "documents"),
                           ("RerankV2Request", "documents"), ("UpsertRequest", "items"))),
    ("ExplainPageRequest", "items", "maxItems", "explain_page_max_items"),
    *((model, field, "maxLength", "max_title_chars")
      for model, field in (("ScoreItem", "title"), ("UpsertItem", "title"), ("ExplainRequest", "title"),
                           ("RerankRequest", "documents"), ("RerankV2Request", "documents"))),
    *((model, "id", "maxLength", "max_id_chars") for model in ("ScoreItem", "UpsertItem")),
)


def _strings(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas of a property: itself, its ``anyOf`` branches, or its array's items."""
    if node.get("type") == "string":
        return [node]
    if node.get("type") == "array":
        return _strings(node.get("items", {}))
    return [branch for option in node.get("anyOf", ()) for branch in _strings(option)]


def apply_limits(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` with every limit of :data:`LIMITS` at its configured value."""
    components = schema.get("components", {}).get("schemas", {})
    for model, field, keyword, setting in LIMITS:
        node = components.get(model, {}).get("properties", {}).get(field)
        if node is None:
            continue
        for target in [node] if keyword == "maxItems" else _strings(node):
            target[keyword] = getattr(settings, setting)
    return schema


def openapi_with_limits(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi`` that builds FastAPI's schema once and adds the limits."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = apply_limits(build(), settings)
        return app.openapi_schema

    return openapi
