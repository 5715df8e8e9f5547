"""The emulator's HTTP face: a Starlette app over an :class:`EmulatorState`.

Each endpoint is one entry in :func:`routes`. Every endpoint counts the request first, then
applies the faults, then answers; a fault therefore never hides a request from
:meth:`EntraEmulator.fetch_count` or :meth:`EntraEmulator.token_request_count`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from entra_guard.testing.authorize import authorize_path, authorize_response
from entra_guard.testing.documents import (
    jwks_document,
    jwks_path,
    metadata_document,
    metadata_path,
)
from entra_guard.testing.graph import graph_mount
from entra_guard.testing.responses import entra_error
from entra_guard.testing.tenants import resolve_tenant
from entra_guard.testing.token_endpoint import token_path, token_response
from entra_guard.testing.user_grants import preflight

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from entra_guard.testing.state import DocumentKind, EmulatorState, TokenFault
    from entra_guard.testing.tenants import Version

__all__ = ["build_app", "entra_error", "routes"]

# Entra lets clients cache discovery documents for a day.
_CACHE_HEADERS = {"Cache-Control": "max-age=86400, private"}
_FAULT_ERRORS = {503: "temporarily_unavailable", 500: "server_error"}
# What Entra answers when it is throttling (429) or briefly unwell (5xx): error word and code.
_TOKEN_FAULTS = {
    429: ("temporarily_unavailable", 90055, "There are too many incoming requests."),
    503: ("temporarily_unavailable", 90033, "A transient error has occurred. Please try again."),
}
_BODYLESS = frozenset({204, 304})
_STOP_POLL = 0.01


def build_app(state: EmulatorState) -> Starlette:
    return Starlette(routes=routes(state))


def routes(state: EmulatorState) -> list[BaseRoute]:
    """Every endpoint of the emulator."""

    def document(kind: DocumentKind, version: Version) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _document(state, request, kind, version)

        template = metadata_path if kind == "metadata" else jwks_path
        return Route(
            template("{tenant}", version), endpoint, methods=["GET"], name=f"{kind}-v{version}"
        )

    def token(version: Version) -> Route:
        async def endpoint(request: Request) -> Response:
            state.record_token_request()
            fault = await _apply_faults(state, documents=False)
            if fault is not None:
                return fault
            return await token_response(state, request, version)

        return Route(
            token_path("{tenant}", version), endpoint, methods=["POST"], name=f"token-v{version}"
        )

    async def authorize(request: Request) -> Response:
        return await authorize_response(state, request)

    async def token_preflight(request: Request) -> Response:
        return preflight(state, request)

    return [
        graph_mount(state),
        Route(authorize_path("{tenant}"), authorize, methods=["GET", "POST"], name="authorize"),
        Route(
            token_path("{tenant}", "2.0"), token_preflight, methods=["OPTIONS"], name="preflight"
        ),
        document("metadata", "2.0"),
        document("metadata", "1.0"),
        document("jwks", "2.0"),
        document("jwks", "1.0"),
        token("2.0"),
        token("1.0"),
    ]


async def _document(
    state: EmulatorState, request: Request, kind: DocumentKind, version: Version
) -> Response:
    raw_segment = str(request.path_params["tenant"])
    segment = raw_segment.lower()
    app_id = request.query_params.get("appid")
    app_id = app_id.lower() if app_id else None
    if request.method == "GET":
        state.record_fetch(kind, segment, version, app_id)
    fault = await _apply_faults(state, documents=True)
    if fault is None:
        fault = _broken_document(state.faults.document_fault, kind)
    if fault is not None:
        return fault
    if version not in state.served_versions:
        return Response(status_code=404)  # as External ID answers for v1 metadata and keys
    tenant = resolve_tenant(segment)
    if tenant is None or not state.knows(tenant):
        # What Entra answers for a tenant that does not exist; clients (MSAL) stop here.
        return entra_error(
            state.instance,
            400,
            error="invalid_tenant",
            code=90002,
            message=f"Tenant '{raw_segment}' not found. Check to make sure you have the correct "
            "tenant ID and are signing into the correct cloud. (This emulator knows its own "
            "tenant, those given to EntraEmulator.add_tenant(), 'organizations', 'common' and "
            "'consumers'; EntraEmulator(any_tenant=True) lets every tenant GUID exist.)",
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
        if app_id is not None:  # Entra carries ?appid= over into the jwks_uri
            document["jwks_uri"] += "?" + urlencode({"appid": app_id})
    else:
        keys = state.published_keys
        app_key = state.registry.app_signing_key(app_id) if app_id is not None else None
        if app_key is not None:  # the app-specific key is published beside the tenant's
            keys = (*keys, app_key)
        document = jwks_document(state.instance, tenant, version, keys)
    return JSONResponse(document, headers=_CACHE_HEADERS)


_HUGE_DOCUMENT = b'{"keys": [], "padding": "' + b"x" * (4 * 1024 * 1024) + b'"}'
_UNUSABLE_KEYS = {
    "keys": [
        {"kty": "EC", "use": "sig", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
    ]
}


def _broken_document(fault: str | None, kind: DocumentKind) -> Response | None:
    """The 200 answer with a broken body that ``EmulatorState.faults.document_fault`` asks for."""
    if fault == "invalid-json":
        return Response(b'{"issuer": "https://login.micro', media_type="application/json")
    if fault == "huge":
        return Response(_HUGE_DOCUMENT, media_type="application/json")
    if fault == "no-usable-keys" and kind == "jwks":
        return JSONResponse(_UNUSABLE_KEYS)
    return None


async def _apply_faults(state: EmulatorState, *, documents: bool) -> Response | None:
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
    if not documents:
        token_fault = faults.take_token_fault()
        return None if token_fault is None else _token_fault(state, token_fault)
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


def _token_fault(state: EmulatorState, fault: TokenFault) -> Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.body is not None or fault.status in _BODYLESS:
        return Response(
            fault.body, status_code=fault.status, headers=headers, media_type="text/html"
        )
    error, code, message = _TOKEN_FAULTS.get(
        fault.status,
        ("server_error" if fault.status >= 500 else "invalid_request", 0, "Emulated failure."),
    )
    response = entra_error(state.instance, fault.status, error=error, code=code, message=message)
    response.headers.update(headers)
    return response


async def _sleep(state: EmulatorState, seconds: float) -> None:
    """``asyncio.sleep`` that ends early when the emulator stops.

    It polls because the flag is set from the test's thread, which an ``asyncio.Event`` of the
    server's loop cannot be safely set from.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not state.stopping and (remaining := deadline - loop.time()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(remaining, _STOP_POLL))
