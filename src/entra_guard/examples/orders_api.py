"""The example API: a small orders service protected by Microsoft Entra ID.

It ships inside the package, so it runs wherever ``entra-guard[demo]`` is installed::

    uvicorn entra_guard.examples.orders_api:app

With ``ENTRA_TENANT_ID`` set it trusts that tenant (``ENTRA_AUDIENCES``, ``ENTRA_INSTANCE``,
``ENTRA_ALLOWED_TENANTS``, ``ENTRA_ALLOWED_CLIENT_IDS``, ``ENTRA_LEEWAY_SECONDS``: see the
README), and with ``ENTRA_SWAGGER_CLIENT_ID`` (a single-page app registration) Swagger UI at
``/docs`` signs users in. Without it, it starts the embedded local Entra ID emulator (dev mode),
with a daemon, a single-page app for Swagger UI and a user, and prints how to use them.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from entra_guard import EntraAuthMiddleware, EntraConfig, EntraPrincipal
from entra_guard.examples.offline_docs import assets, serve_docs
from entra_guard.fastapi import Principal, require_roles, require_scope_or_role, swagger_login

DEV_API = "api://entra-guard-demo"
#: The delegated scopes the API exposes (short names, as in ``scp``), for Swagger UI's sign-in.
SCOPES = {"Orders.Read": "Read the orders"}
#: uvicorn's port when its command line does not say (uvicorn's own default).
DEFAULT_PORT = 8000
PUBLIC_PATHS = ["/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"]


def load_config() -> tuple[EntraConfig, str | None]:
    """The configuration, and the client id Swagger UI signs users in with (None: no sign-in)."""
    if os.environ.get("ENTRA_TENANT_ID"):
        return EntraConfig.from_env(), os.environ.get("ENTRA_SWAGGER_CLIENT_ID") or None
    return _start_dev_identity(serving_port())


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


def _start_dev_identity(port: int) -> tuple[EntraConfig, str]:
    """Dev mode: a local Entra ID in this process, with this API, a daemon, Swagger UI's
    single-page app and a user registered."""
    from entra_guard.testing import EntraEmulator  # noqa: PLC0415  # only in dev mode

    idp = EntraEmulator().start()
    api = idp.register_api(
        app_id_uri=DEV_API, roles=("Orders.Read", "Orders.Write"), scopes=tuple(SCOPES)
    )
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
        f"  user:     {user.upn}\n  password: {user.password}\n",
        flush=True,
    )
    return idp.config(audiences=[api.client_id, DEV_API]), swagger.client_id


_dev_identity: list[Any] = []


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1000)


class Order(NewOrder):
    id: int
    created_by: str


_docs_assets = assets()  # Swagger UI's files, when a package that ships them is installed
app = FastAPI(title="Orders API (entra-guard example)", docs_url=None if _docs_assets else "/docs")
if _docs_assets is not None:
    PUBLIC_PATHS = sorted({*PUBLIC_PATHS, *serve_docs(app, _docs_assets)})
config, swagger_client_id = load_config()
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
