"""Entra's error body, shared by every endpoint of the emulator."""

from __future__ import annotations

import datetime
import uuid
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["entra_error"]


def entra_error(
    instance: str,
    status: int,
    *,
    error: str,
    code: int,
    message: str,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An error body shaped like Entra's: code, description with trace ids, and timestamps;
    ``extra`` members (``suberror``, ``claims``) are added as given."""
    now = datetime.datetime.now(datetime.timezone.utc)
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    prefix = f"AADSTS{code}: " if code else ""
    description = (
        f"{prefix}{message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
        f"\r\nTimestamp: {timestamp}"
    )
    body: dict[str, Any] = {
        "error": error,
        "error_description": description,
        "error_codes": [code] if code else [],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    if code:
        body["error_uri"] = f"{instance}/error?code={code}"
    body |= extra or {}
    return JSONResponse(body, status_code=status)
