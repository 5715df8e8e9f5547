"""The API that tests/test_deployment.py serves with a real ``uvicorn`` process.

Configured from the environment, as a deployed app is: ``ENTRA_*`` for the identity provider,
and for the deployment under test

- ``DEPLOYMENT_CORS``: ``outer`` (CORSMiddleware added after EntraAuthMiddleware, so outside it:
  the README's order), ``inner`` (added before it), or unset (no CORS);
- ``DEPLOYMENT_ALLOW_ORIGIN``: the one origin CORS allows;
- ``DEPLOYMENT_ROOT_PATH``: ``FastAPI(root_path=...)``, for a proxy that keeps the prefix;
- ``DEPLOYMENT_RESOURCE``: publish protected-resource metadata for this public URL;
- ``DEPLOYMENT_TWICE``: add EntraAuthMiddleware a second time, as a mistake.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from entra_guard import EntraAuthMiddleware, EntraConfig, ProtectedResource
from entra_guard.fastapi import Principal

PUBLIC_PATHS = ["/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"]
PUBLIC_PREFIXES = ["/public/"]
SCOPE = "api://orders/Orders.Read"


def create_app() -> FastAPI:
    app = FastAPI(root_path=os.environ.get("DEPLOYMENT_ROOT_PATH", ""))
    cors = os.environ.get("DEPLOYMENT_CORS", "")
    if cors not in ("", "inner", "outer"):
        raise ValueError(f"DEPLOYMENT_CORS must be inner or outer, got {cors!r}")
    if cors == "inner":
        _add_cors(app)
    config = EntraConfig.from_env()
    resource = os.environ.get("DEPLOYMENT_RESOURCE")
    app.add_middleware(
        EntraAuthMiddleware,
        config=config,
        exclude_paths=PUBLIC_PATHS,
        exclude_prefixes=PUBLIC_PREFIXES,
        resource_metadata=ProtectedResource(resource=resource, scopes_supported=[SCOPE])
        if resource
        else None,
    )
    if os.environ.get("DEPLOYMENT_TWICE"):
        app.add_middleware(EntraAuthMiddleware, config=config)
    if cors == "outer":
        _add_cors(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/public/{name}")
    async def public(name: str) -> dict[str, str]:
        return {"public": name}

    @app.get("/me")
    async def me(principal: Principal) -> dict[str, str]:
        return {"client_id": principal.client_id}

    return app


def _add_cors(app: FastAPI) -> None:
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[os.environ["DEPLOYMENT_ALLOW_ORIGIN"]],
        allow_methods=["GET"],
        allow_headers=["Authorization"],
        expose_headers=["WWW-Authenticate"],
    )
