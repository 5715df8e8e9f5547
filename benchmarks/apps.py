"""The apps under test: one GET route answering a small JSON object, bare or protected.

Starlette and FastAPI, each without authentication or behind ``EntraAuthMiddleware``; FastAPI
also guarded by fastapi-azure-auth, the domain peer, as its documentation shows (a ``Security``
dependency). ``app_from_env`` builds any of them for ``uvicorn --factory`` (the HTTP section).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.common import cache_setting
from entra_guard import EntraAuthMiddleware, EntraConfig, TokenValidator

__all__ = [
    "PATH",
    "AppKind",
    "PeerSettings",
    "app_from_env",
    "build_app",
    "fastapi_app",
    "peer_available",
    "starlette_app",
]

PATH = "/hello"
_BODY = {"hello": "world"}

AppKind: TypeAlias = Literal[
    "starlette",
    "starlette+entra-guard",
    "fastapi",
    "fastapi+entra-guard",
    "fastapi+fastapi-azure-auth",
]
APP_KINDS: tuple[AppKind, ...] = get_args(AppKind)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """What fastapi-azure-auth needs to trust the emulator, for the same token as ours."""

    client_id: str
    tenant_id: str
    #: Its single-tenant class always asks login.microsoftonline.com; only the base class takes
    #: an ``openid_config_url``, which is how it is pointed at the emulator.
    openid_config_url: str
    leeway: int = 60  # entra-guard's default, so both accept the same tokens


def peer_available() -> bool:
    return importlib.util.find_spec("fastapi_azure_auth") is not None


def peer_scheme(settings: PeerSettings) -> Any:
    """fastapi-azure-auth's bearer scheme, configured as its documentation does."""
    # Optional: only the ``bench`` extra installs it, so mypy may run without it.
    from fastapi_azure_auth.auth import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        AzureAuthorizationCodeBearerBase,
    )

    return AzureAuthorizationCodeBearerBase(
        app_client_id=settings.client_id,
        tenant_id=settings.tenant_id,
        openid_config_url=settings.openid_config_url,
        leeway=settings.leeway,
    )


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse(_BODY)


def _guard(config: EntraConfig | None, validator: TokenValidator | None) -> dict[str, Any]:
    if validator is not None:
        return {"validator": validator}
    return {"config": config}


def starlette_app(
    *, config: EntraConfig | None = None, validator: TokenValidator | None = None
) -> Starlette:
    """Plain Starlette; behind ``EntraAuthMiddleware`` when given a config or a validator."""
    app = Starlette(routes=[Route(PATH, _hello)])
    if config is not None or validator is not None:
        app.add_middleware(EntraAuthMiddleware, config=config, validator=validator)
    return app


def fastapi_app(
    *,
    config: EntraConfig | None = None,
    validator: TokenValidator | None = None,
    peer: PeerSettings | None = None,
) -> FastAPI:
    """FastAPI as a user writes it (docs routes included); guarded by entra-guard or the peer."""
    app = FastAPI()
    dependencies = [] if peer is None else [Security(peer_scheme(peer))]

    @app.get(PATH, dependencies=dependencies)
    async def hello() -> dict[str, str]:
        return _BODY

    if config is not None or validator is not None:
        app.add_middleware(EntraAuthMiddleware, config=config, validator=validator)
    return app


def build_app(kind: AppKind, *, config: EntraConfig, peer: PeerSettings) -> Starlette:
    """One app of each kind; ``config`` and ``peer`` are used only by the kinds that guard."""
    if kind == "starlette":
        return starlette_app()
    if kind == "starlette+entra-guard":
        return starlette_app(config=config)
    if kind == "fastapi":
        return fastapi_app()
    if kind == "fastapi+entra-guard":
        return fastapi_app(config=config)
    return fastapi_app(peer=peer)


def app_from_env() -> Starlette:
    """``uvicorn --factory benchmarks.apps:app_from_env``, configured by ``BENCH_*`` variables."""
    wanted = os.environ["BENCH_APP"]
    cache_size = os.environ.get("BENCH_TOKEN_CACHE_SIZE")
    config = EntraConfig(
        tenant_id=os.environ["BENCH_TENANT_ID"],
        instance=os.environ["BENCH_INSTANCE"],
        audiences=[os.environ["BENCH_AUDIENCE"]],
        **cache_setting(int(cache_size) if cache_size else None),
    )
    peer = PeerSettings(
        client_id=os.environ["BENCH_AUDIENCE"],
        tenant_id=os.environ["BENCH_TENANT_ID"],
        openid_config_url=os.environ["BENCH_OPENID_CONFIG_URL"],
    )
    for kind in APP_KINDS:
        if kind == wanted:
            return build_app(kind, config=config, peer=peer)
    raise ValueError(f"BENCH_APP must be one of {APP_KINDS}, got {wanted!r}")
