"""The apps under test: one GET route answering a small JSON object, bare or protected.

- Starlette without authentication; behind ``EntraAuthMiddleware``; and, as the README shows
  for a route with a policy, the endpoint decorated with ``require_scope_or_role``.
- FastAPI shaped like the example API (``entra_guard.examples.orders_api``): the middleware
  excludes the public paths, and the route demands ``Depends(require_scope_or_role(...))``;
  the same app without authentication (no middleware, no dependency) is the baseline.
- FastAPI guarded by fastapi-azure-auth, the domain peer, configured as its documentation shows
  for a single-tenant API: ``SingleTenantAzureAuthorizationCodeBearer``, its OpenID
  configuration and keys loaded at start-up (lifespan), and the route's role checked by a
  dependency on the scheme that looks at ``user.roles``.

Both guarded FastAPI routes enforce the same policy: app role ``BENCH_ROLE`` (``Orders.Read``)
required. ``app_from_env`` builds any of them for ``uvicorn --factory`` (the HTTP section).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.common import BENCH_ROLE, cache_setting
from entra_guard import EntraAuthMiddleware, EntraConfig, TokenValidator
from entra_guard import fastapi as guard_fastapi
from entra_guard import starlette as guard_starlette

__all__ = [
    "APP_KINDS",
    "PATH",
    "PUBLIC_PATHS",
    "AppKind",
    "PeerSettings",
    "app_from_env",
    "build_app",
    "fastapi_app",
    "peer_app",
    "peer_available",
    "starlette_app",
]

PATH = "/hello"
#: What the example API leaves public (health check and documentation), excluded the same way.
PUBLIC_PATHS = ("/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")
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
    """What fastapi-azure-auth needs to trust the emulator, for the same tokens as ours."""

    client_id: str
    tenant_id: str
    #: The emulator's v2 OpenID configuration. The single-tenant class builds
    #: login.microsoftonline.com's URL from ``tenant_id``; this replaces only that URL.
    openid_config_url: str
    leeway: int = 60  # entra-guard's default, so both accept the same tokens


def peer_available() -> bool:
    return importlib.util.find_spec("fastapi_azure_auth") is not None


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse(_BODY)


def starlette_app(
    *,
    config: EntraConfig | None = None,
    validator: TokenValidator | None = None,
    decorated: bool = False,
) -> Starlette:
    """Plain Starlette; behind ``EntraAuthMiddleware`` when given a config or a validator, and
    with the endpoint decorated with ``require_scope_or_role`` (``BENCH_ROLE``) if ``decorated``.
    """
    endpoint: Callable[[Request], Any] = _hello
    if decorated:
        endpoint = guard_starlette.require_scope_or_role(scopes=[BENCH_ROLE], roles=[BENCH_ROLE])(
            _hello
        )
    app = Starlette(routes=[Route(PATH, endpoint)])
    if config is not None or validator is not None:
        app.add_middleware(EntraAuthMiddleware, config=config, validator=validator)
    return app


async def _nothing(connection: HTTPConnection) -> None:
    """A dependency level that does nothing: what FastAPI charges for one level by itself."""


def fastapi_app(
    *,
    config: EntraConfig | None = None,
    validator: TokenValidator | None = None,
    requirement: Literal["scope-or-role", "none", "empty"] = "scope-or-role",
) -> FastAPI:
    """FastAPI as a user writes it (docs routes included). Without ``config`` or ``validator``:
    no middleware and no dependency. With them: the middleware as the example API adds it, and
    on the route ``require_scope_or_role`` (``BENCH_ROLE`` as scope or app role), nothing
    (``"none"``: the middleware alone), or a do-nothing dependency level (``"empty"``)."""
    app = FastAPI()
    protected = config is not None or validator is not None
    dependencies: list[Any] = []
    if protected and requirement == "scope-or-role":
        check = guard_fastapi.require_scope_or_role(scopes=[BENCH_ROLE], roles=[BENCH_ROLE])
        dependencies = [Depends(check)]
    elif protected and requirement == "empty":
        dependencies = [Depends(_nothing)]

    @app.get(PATH, dependencies=dependencies)
    async def hello() -> dict[str, str]:
        return _BODY

    if protected:
        app.add_middleware(
            EntraAuthMiddleware, config=config, validator=validator, exclude_paths=PUBLIC_PATHS
        )
    return app


def peer_app(settings: PeerSettings) -> FastAPI:
    """The same route guarded by fastapi-azure-auth as its documentation shows (single tenant)."""
    # Optional: only the ``bench`` extra installs it, so mypy may run without it.
    from fastapi_azure_auth import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        SingleTenantAzureAuthorizationCodeBearer,
    )
    from fastapi_azure_auth.exceptions import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        ForbiddenHttp,
    )
    from fastapi_azure_auth.user import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        User,
    )

    azure_scheme = SingleTenantAzureAuthorizationCodeBearer(
        app_client_id=settings.client_id,
        tenant_id=settings.tenant_id,
        scopes={f"api://{settings.client_id}/user_impersonation": "user_impersonation"},
        leeway=settings.leeway,
    )
    # Its single-tenant class asks login.microsoftonline.com/<tenant>; ask the emulator instead.
    azure_scheme.openid_config.config_url = settings.openid_config_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await azure_scheme.openid_config.load_config()  # as its docs do: keys before requests
        yield

    async def validate_has_role(user: User = Depends(azure_scheme)) -> None:  # noqa: B008  # its docs' style
        if BENCH_ROLE not in user.roles:
            raise ForbiddenHttp(f"User lacks the app role {BENCH_ROLE}")

    app = FastAPI(lifespan=lifespan)

    @app.get(PATH, dependencies=[Depends(validate_has_role)])
    async def hello() -> dict[str, str]:
        return _BODY

    return app


def build_app(kind: AppKind, *, config: EntraConfig, peer: PeerSettings) -> Starlette:
    """One app of each kind; ``config`` and ``peer`` are used only by the kinds that guard."""
    if kind == "starlette":
        return starlette_app()
    if kind == "starlette+entra-guard":
        return starlette_app(config=config, decorated=True)
    if kind == "fastapi":
        return fastapi_app()
    if kind == "fastapi+entra-guard":
        return fastapi_app(config=config)
    return peer_app(peer)


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
