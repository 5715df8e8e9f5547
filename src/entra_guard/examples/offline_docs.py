"""Swagger UI at ``/docs`` with its files served by the app itself, for machines without internet.

FastAPI's ``/docs`` page loads Swagger UI from a CDN. The example's dev mode runs everything on
this machine, so it serves Swagger UI's bundle from the ``fastapi-offline`` package (which ships
a current Swagger UI 5 for exactly this; installed with ``entra-guard[demo]``) when it is there,
following FastAPI's own recipe for self-hosted docs assets. Without the package the app keeps
FastAPI's CDN page.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

if TYPE_CHECKING:  # importlib.abc's name, deprecated from Python 3.12, is the one 3.10 has
    from importlib.abc import Traversable

__all__ = ["DOCS_ASSETS", "assets", "serve_docs"]

#: The files of Swagger UI the page loads, by their path under ``/docs/``.
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def assets() -> Traversable | None:
    """Where the installed ``fastapi-offline`` keeps Swagger UI's files, or None."""
    try:
        folder = importlib.resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in DOCS_ASSETS) else None


def serve_docs(app: FastAPI, folder: Traversable, *, docs_url: str = "/docs") -> list[str]:
    """Add ``docs_url``, its OAuth2 redirect page and Swagger UI's files to ``app``, which must
    have been created with ``docs_url=None``. Returns the paths added, all public."""
    redirect_url = f"{docs_url}/oauth2-redirect"
    app.swagger_ui_oauth2_redirect_url = redirect_url
    files = {
        f"{docs_url}/{name}": _file((folder / name).read_bytes(), media_type)
        for name, media_type in DOCS_ASSETS.items()
    }

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            init_oauth=app.swagger_ui_init_oauth,
            swagger_js_url=f"{root}{docs_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{docs_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{docs_url}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(docs_url, docs, include_in_schema=False)
    app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
    for path, endpoint in files.items():
        app.add_route(path, endpoint, include_in_schema=False)
    return [docs_url, redirect_url, *files]


def _file(body: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type)

    return serve
