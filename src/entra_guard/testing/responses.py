"""Entra's error body, shared by every endpoint of the emulator."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["entra_error"]


def entra_error(instance: str, status: int, *, error: str, code: int, message: str) -> JSONResponse:
    """An error body shaped like Entra's: code, description with trace ids, and timestamps."""
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
    return JSONResponse(body, status_code=status)
