"""The request limits every transport enforces (``Settings.max_*``), raised as INVALID_ARGUMENT naming the field.
Over HTTP the schema (pydantic) has already refused what is structurally wrong; gRPC messages have no schema, so
the structural checks (empty query, no items, empty id) live here too."""

from __future__ import annotations

from service.handlers.errors import ApiError, Kind
from service.settings import Settings


def invalid(field: tuple[str | int, ...], message: str, error_type: str = "too_long") -> ApiError:
    return ApiError(Kind.INVALID_ARGUMENT, message, field=field, error_type=error_type)


def check_query(query: str, settings: Settings, field: str = "query") -> None:
    if not query.strip():
        raise invalid((field,), "must not be empty or whitespace only", "value_error")
    check_text(query, (field,), settings.max_query_chars)


def check_text(value: str, field: tuple[str | int, ...], limit: int) -> None:
    if len(value) > limit:
        raise invalid(field, f"at most {limit} characters, got {len(value)}")


def check_count(n: int, settings: Settings, field: str) -> None:
    if n == 0:
        raise invalid((field,), "at least one item is required", "too_short")
    if n > settings.max_items:
        raise invalid((field,), f"at most {settings.max_items} items per request, got {n}")


def check_item(item_id: str, title: str | None, index: int, settings: Settings, field: str = "items") -> None:
    if not item_id:
        raise invalid((field, index, "id"), "must not be empty", "value_error")
    check_text(item_id, (field, index, "id"), settings.max_id_chars)
    if title is not None:
        check_text(title, (field, index, "title"), settings.max_title_chars)
