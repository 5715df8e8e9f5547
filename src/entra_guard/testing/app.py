"""The emulator's HTTP face: a Starlette app over an :class:`EmulatorState`.

Each endpoint is one entry in :func:`routes`, so later endpoints (the token endpoint) are one
more entry there. Document endpoints count the request first, then apply the faults, then answer;
a fault therefore never hides a request from :meth:`EntraEmulator.fetch_count`.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from entra_guard.testing.documents import (
    jwks_document,
    jwks_path,
    metadata_document,
    metadata_path,
)
from entra_guard.testing.tenants import resolve_tenant

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from entra_guard.testing.state import DocumentKind, EmulatorState
    from entra_guard.testing.tenants import Version

__all__ = ["build_app", "entra_error", "routes"]

# Entra lets clients cache discovery documents for a day.
_CACHE_HEADERS = {"Cache-Control": "max-age=86400, private"}
_FAULT_ERRORS = {503: "temporarily_unavailable", 500: "server_error"}
_BODYLESS = frozenset({204, 304})
_STOP_POLL = 0.01


def build_app(state: EmulatorState) -> Starlette:
    return Starlette(routes=routes(state))


def routes(state: EmulatorState) -> list[Route]:
    """Every endpoint of the emulator."""

    def document(kind: DocumentKind, version: Version) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _document(state, request, kind, version)

        template = metadata_path if kind == "metadata" else jwks_path
        return Route(
            template("{tenant}", version), endpoint, methods=["GET"], name=f"{kind}-v{version}"
        )

    return [
        document("metadata", "2.0"),
        document("metadata", "1.0"),
        document("jwks", "2.0"),
        document("jwks", "1.0"),
    ]


async def _document(
    state: EmulatorState, request: Request, kind: DocumentKind, version: Version
) -> Response:
    raw_segment = str(request.path_params["tenant"])
    segment = raw_segment.lower()
    if request.method == "GET":
        state.record_fetch(kind, segment, version)
    fault = await _apply_faults(state)
    if fault is not None:
        return fault
    tenant = resolve_tenant(segment)
    if tenant is None:
        return entra_error(
            state.instance,
            400,
            error="invalid_tenant",
            code=90002,
            message=f"Tenant '{raw_segment}' not found. Check the tenant ID and the cloud "
            "instance; this emulator serves tenant GUIDs, 'organizations', 'common' and "
            "'consumers'.",
        )
    document: Mapping[str, Any]
    replay = state.replayed(segment, version)
    if replay is not None and kind == "metadata":
        document = dict(replay.metadata)
        # Only a jwks_uri that is there is redirected: a replayed broken document stays broken.
        if "jwks_uri" in document:
            document["jwks_uri"] = state.instance + jwks_path(segment, version)
    elif replay is not None:
        document = replay.jwks
    elif kind == "metadata":
        document = metadata_document(state.instance, tenant, version)
    else:
        document = jwks_document(state.instance, tenant, version, state.published_keys)
    return JSONResponse(document, headers=_CACHE_HEADERS)


async def _apply_faults(state: EmulatorState) -> Response | None:
    """The answer the switched-on faults force, or ``None`` to answer normally."""
    faults = state.faults
    if faults.delay:
        await _sleep(state, faults.delay)
    if state.stopping:
        # Answer now rather than hold stop() until the delay ends or uvicorn cancels us.
        response = entra_error(
            state.instance,
            503,
            error="temporarily_unavailable",
            code=0,
            message="The emulator is stopping.",
        )
        response.headers["Connection"] = "close"
        return response
    status = faults.fail_status
    if status is None:
        return None
    if status in _BODYLESS:
        return Response(status_code=status)
    return entra_error(
        state.instance,
        status,
        error=_FAULT_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request"),
        code=0,
        message=f"Emulated failure: HTTP {status} (EntraEmulator.fail_status is set).",
    )


async def _sleep(state: EmulatorState, seconds: float) -> None:
    """``asyncio.sleep`` that ends early when the emulator stops.

    It polls because the flag is set from the test's thread, which an ``asyncio.Event`` of the
    server's loop cannot be safely set from.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not state.stopping and (remaining := deadline - loop.time()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(remaining, _STOP_POLL))


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
