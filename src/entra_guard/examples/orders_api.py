"""The example API: a small orders service protected by Microsoft Entra ID.

It ships inside the package, so it runs wherever ``entra-guard[demo]`` is installed::

    uvicorn entra_guard.examples.orders_api:app

With ``ENTRA_TENANT_ID`` set it trusts that tenant (``ENTRA_AUDIENCES``, ``ENTRA_INSTANCE``,
``ENTRA_ALLOWED_TENANTS``, ``ENTRA_ALLOWED_CLIENT_IDS``, ``ENTRA_LEEWAY_SECONDS``: see the
README), and with ``ENTRA_SWAGGER_CLIENT_ID`` (a single-page app registration) Swagger UI at
``/docs`` signs users in. ``GET /me/profile`` reads the signed-in user's profile from Microsoft
Graph (``GET /me``) on behalf of the user; for that the API authenticates as itself:

- ``ENTRA_CLIENT_SECRET``: a client secret of the API's own registration, which needs the
  delegated Graph permission ``User.Read`` (with admin consent). Without it ``/me/profile``
  answers 503 saying so; the other routes work.
- ``ENTRA_CLIENT_ID``: the API's Application (client) ID; by default the first GUID in
  ``ENTRA_AUDIENCES``.
- ``ENTRA_GRAPH_URL``: Graph's base URL, ``https://graph.microsoft.com/v1.0`` by default.

Without ``ENTRA_TENANT_ID``, it starts the embedded local Entra ID emulator (dev mode), with a
daemon, a single-page app for Swagger UI and a user, registers the API itself as a confidential
client consented to Graph's ``User.Read`` (the emulator's Graph stand-in answers ``/me``), and
prints how to use them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from entra_guard import EntraAuthMiddleware, EntraConfig, EntraPrincipal, InsufficientPermissions
from entra_guard.client import ClientSecret, ConfidentialClient, OnBehalfOfClient, TokenRequestError
from entra_guard.config import is_guid
from entra_guard.examples.offline_docs import assets, serve_docs
from entra_guard.fastapi import (
    OnBehalfOf,
    Principal,
    require_roles,
    require_scope_or_role,
    swagger_login,
)
from entra_guard.starlette import ON_BEHALF_OF_CLIENT

DEV_API = "api://entra-guard-demo"
#: The delegated scopes the API exposes (short names, as in ``scp``), for Swagger UI's sign-in.
SCOPES = {"Orders.Read": "Read the orders"}
#: uvicorn's port when its command line does not say (uvicorn's own default).
DEFAULT_PORT = 8000
PUBLIC_PATHS = ["/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"]
GRAPH_URL = "https://graph.microsoft.com/v1.0"
#: What ``/me/profile`` asks Graph for: the signed-in user's own profile.
GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"


class OwnCredentials:
    """The API's own registration, for calling Graph on behalf of its callers.

    A plain class, not a dataclass: the demo loads this module outside ``sys.modules``, where
    dataclasses cannot resolve postponed annotations.
    """

    __slots__ = ("client_id", "graph_url", "secret")

    def __init__(self, client_id: str, secret: str, graph_url: str = GRAPH_URL) -> None:
        self.client_id, self.secret, self.graph_url = client_id, secret, graph_url

    def __repr__(self) -> str:  # never the secret
        return f"OwnCredentials(client_id={self.client_id!r}, graph_url={self.graph_url!r})"


def load_config() -> tuple[EntraConfig, str | None, OwnCredentials | None]:
    """The configuration, the client id Swagger UI signs users in with (None: no sign-in), and
    the API's own credentials (None: no calls to Graph)."""
    if not os.environ.get("ENTRA_TENANT_ID"):
        return _start_dev_identity(serving_port())
    config = EntraConfig.from_env()
    own = None
    if secret := os.environ.get("ENTRA_CLIENT_SECRET"):
        client_id = os.environ.get("ENTRA_CLIENT_ID") or next(
            (a for a in config.audiences if is_guid(a)), ""
        )
        graph_url = os.environ.get("ENTRA_GRAPH_URL") or GRAPH_URL
        own = OwnCredentials(client_id, secret, graph_url.rstrip("/"))
    return config, os.environ.get("ENTRA_SWAGGER_CLIENT_ID") or None, own


def serving_port() -> int:
    """The port uvicorn was told to serve on (``--port N`` or ``UVICORN_PORT``), else 8000.

    uvicorn imports the app before it binds, so the command line is all the app can know then;
    the dev identity registers Swagger UI's redirect URI for this port.
    """
    args = sys.argv[1:]
    for index, arg in enumerate(args):
        if arg == "--port" and index + 1 < len(args):
            return int(args[index + 1])
        if arg.startswith("--port="):
            return int(arg.partition("=")[2])
    return int(os.environ.get("UVICORN_PORT") or DEFAULT_PORT)


def _start_dev_identity(port: int) -> tuple[EntraConfig, str, OwnCredentials]:
    """Dev mode: a local Entra ID in this process, with this API (also a confidential client
    consented to Graph's ``User.Read``), a daemon, Swagger UI's single-page app and a user."""
    from entra_guard.testing import EntraEmulator  # noqa: PLC0415  # only in dev mode

    idp = EntraEmulator().start()
    api = idp.register_api(
        app_id_uri=DEV_API, roles=("Orders.Read", "Orders.Write"), scopes=tuple(SCOPES)
    )
    itself = idp.register_client(
        name="orders-api", client_id=api.client_id, secret=True,
        scopes={"https://graph.microsoft.com": ["User.Read"]},
    )  # fmt: skip
    daemon = idp.register_client(
        name="orders-daemon", roles={DEV_API: ["Orders.Read", "Orders.Write"]}, secret=True
    )
    swagger = idp.register_client(
        name="orders-swagger-ui",
        type="spa",
        redirect_uris=[f"http://{host}:{port}/docs/oauth2-redirect"
                       for host in ("127.0.0.1", "localhost")],
        scopes={DEV_API: list(SCOPES)},
    )  # fmt: skip
    user = idp.register_user(upn="adele@contoso.test", name="Adele Vance")
    _dev_identity.append(idp)  # keep it serving as long as the app lives
    base = f"http://127.0.0.1:{port}"
    print(  # dev mode talks to the developer on purpose
        "\nentra-guard example API, dev mode: a local Entra ID emulator is running at "
        f"{idp.instance}\nGet a token (client credentials) and call the API:\n\n"
        f"  TOKEN=$(curl -s {idp.instance}/{idp.tenant_id}/oauth2/v2.0/token \\\n"
        f"    -d grant_type=client_credentials -d client_id={daemon.client_id} \\\n"
        f"    -d client_secret='{daemon.secret}' -d scope={DEV_API}/.default "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'  curl -H "Authorization: Bearer $TOKEN" {base}/orders\n\n'
        f"Or sign in as a user in Swagger UI: open {base}/docs, click Authorize (scope "
        f"{DEV_API}/Orders.Read ticked), Authorize, and sign in as\n\n"
        f"  user:     {user.upn}\n  password: {user.password}\n\n"
        f"then GET {base}/me/profile reads the user's profile from the emulator's Graph.\n",
        flush=True,
    )
    own = OwnCredentials(api.client_id, itself.secret or "", idp.graph_url)
    return idp.config(audiences=[api.client_id, DEV_API]), swagger.client_id, own


_dev_identity: list[Any] = []


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1000)


class Order(NewOrder):
    id: int
    created_by: str


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """With the API's own credentials, an on-behalf-of client for the app's life."""
    if own is None:
        yield
        return
    async with ConfidentialClient(
        tenant_id=config.tenant_id, client_id=own.client_id,
        credential=ClientSecret(own.secret), instance=config.instance,
    ) as confidential:  # fmt: skip
        setattr(app.state, ON_BEHALF_OF_CLIENT, OnBehalfOfClient(confidential))
        yield


_docs_assets = assets()  # Swagger UI's files, when a package that ships them is installed
app = FastAPI(
    title="Orders API (entra-guard example)",
    docs_url=None if _docs_assets else "/docs",
    lifespan=lifespan,
)
if _docs_assets is not None:
    PUBLIC_PATHS = sorted({*PUBLIC_PATHS, *serve_docs(app, _docs_assets)})
config, swagger_client_id, own = load_config()
app.add_middleware(EntraAuthMiddleware, config=config, exclude_paths=PUBLIC_PATHS)
if swagger_client_id:
    swagger_login(app, config, client_id=swagger_client_id, scopes=SCOPES)

_orders: list[Order] = [Order(id=1, item="coffee beans", quantity=3, created_by="seed")]
_next_id = itertools.count(2)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/me")
async def me(principal: Principal) -> dict[str, Any]:
    return {
        "tenant_id": principal.tenant_id,
        "client_id": principal.client_id,
        "object_id": principal.object_id,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "app_only": principal.app_only,
        "version": principal.version,
        "name": principal.name,
    }


@app.get(
    "/orders",
    dependencies=[Depends(require_scope_or_role(scopes=["Orders.Read"], roles=["Orders.Read"]))],
)
async def list_orders() -> list[Order]:
    return _orders


@app.post("/orders", status_code=201)
async def create_order(
    order: NewOrder, principal: Annotated[EntraPrincipal, Depends(require_roles("Orders.Write"))]
) -> Order:
    created = Order(id=next(_next_id), created_by=principal.client_id, **order.model_dump())
    _orders.append(created)
    return created


_graph_as_user = OnBehalfOf(GRAPH_USER_READ)


async def graph_as_user(connection: HTTPConnection) -> httpx.Auth:
    """An ``httpx.Auth`` for Graph as the caller; 503 when the API has no credentials."""
    if getattr(connection.app.state, ON_BEHALF_OF_CLIENT, None) is None:
        raise HTTPException(
            503, "This API has no credentials of its own to call Graph: set ENTRA_CLIENT_SECRET"
        )
    return await _graph_as_user(connection)


@app.get("/me/profile")
async def my_profile(
    principal: Principal, graph: Annotated[httpx.Auth, Depends(graph_as_user)]
) -> dict[str, Any]:
    """The caller's profile from Microsoft Graph's ``/me``, read on behalf of the caller."""
    if principal.app_only or own is None:  # answered by the middleware, like every refusal
        raise InsufficientPermissions("not_a_user", "Only a signed-in user has a Graph profile")
    try:
        async with httpx.AsyncClient(auth=graph, timeout=10) as http:
            answer = await http.get(f"{own.graph_url}/me")
    except (httpx.HTTPError, TokenRequestError) as exc:
        raise HTTPException(
            502, f"Microsoft Graph could not be asked: {type(exc).__name__}"
        ) from exc
    if answer.status_code != httpx.codes.OK:
        raise HTTPException(502, f"Microsoft Graph answered {answer.status_code}")
    profile = answer.json()
    return {name: profile.get(name) for name in ("id", "displayName", "userPrincipalName", "mail")}
