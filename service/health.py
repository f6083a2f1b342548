"""The health of each dependency the gateway answers with: the item store, the encoder backend and, when one is
configured, the teacher behind ``/v1/explain``. Every dependency reports a :class:`Health`; ``/readyz`` lists them
all (docs/architecture.md, "Readiness")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relevance_core.redaction import redact_url

TEACHER_PROBE_TIMEOUT_S = 0.5  # readiness probes must stay fast; a refused connection answers at once


@dataclass(frozen=True, slots=True)
class Health:
    """``ok`` when the dependency answers; ``detail`` says what was checked, or what failed."""

    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", "detail": self.detail}


async def teacher_health(base_url: str | None, api_key: str | None = None) -> Health | None:
    """The teacher's OpenAI-compatible API answering ``GET /models`` within a short timeout; None when no teacher
    is configured. The teacher does not decide readiness (scoring does not need it): it is reported only."""
    if not base_url:
        return None
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/") + "/models"
    try:
        async with httpx.AsyncClient(timeout=TEACHER_PROBE_TIMEOUT_S) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Health(False, f"{redact_url(url)}: {type(exc).__name__}")
    if response.status_code != 200:
        return Health(False, f"{redact_url(url)}: HTTP {response.status_code}")
    return Health(True, f"{redact_url(url)} answers")
