"""The example API: a small orders service protected by Microsoft Entra ID.

It ships inside the package, so it runs wherever ``entra-guard[demo]`` is installed::

    uvicorn entra_guard.examples.orders_api:app

With ``ENTRA_TENANT_ID`` set it trusts that tenant (``ENTRA_AUDIENCES``, ``ENTRA_INSTANCE``,
``ENTRA_ALLOWED_TENANTS``, ``ENTRA_ALLOWED_CLIENT_IDS``, ``ENTRA_LEEWAY_SECONDS``: see the
README). Without it, it starts the embedded local Entra ID emulator (dev mode) and prints how to
get a token from it.
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from entra_guard import EntraAuthMiddleware, EntraConfig, EntraPrincipal
from entra_guard.fastapi import Principal, require_roles, require_scope_or_role

DEV_API = "api://entra-guard-demo"
PUBLIC_PATHS = ["/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"]


def load_config() -> EntraConfig:
    if os.environ.get("ENTRA_TENANT_ID"):
        return EntraConfig.from_env()
    return _start_dev_identity()


def _start_dev_identity() -> EntraConfig:
    """Dev mode: a local Entra ID in this process, with this API and one daemon registered."""
    from entra_guard.testing import EntraEmulator  # noqa: PLC0415  # only in dev mode

    idp = EntraEmulator().start()
    api = idp.register_api(app_id_uri=DEV_API, roles=("Orders.Read", "Orders.Write"))
    daemon = idp.register_client(
        name="orders-daemon", roles={DEV_API: ["Orders.Read", "Orders.Write"]}, secret=True
    )
    _dev_identity.append(idp)  # keep it serving as long as the app lives
    print(  # dev mode talks to the developer on purpose
        "\nentra-guard example API, dev mode: a local Entra ID emulator is running at "
        f"{idp.instance}\nGet a token (client credentials) and call the API:\n\n"
        f"  TOKEN=$(curl -s {idp.instance}/{idp.tenant_id}/oauth2/v2.0/token \\\n"
        f"    -d grant_type=client_credentials -d client_id={daemon.client_id} \\\n"
        f"    -d client_secret='{daemon.secret}' -d scope={DEV_API}/.default "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        '  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/orders\n',
        flush=True,
    )
    return idp.config(audiences=[api.client_id, DEV_API])


_dev_identity: list[Any] = []


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1000)


class Order(NewOrder):
    id: int
    created_by: str


app = FastAPI(title="Orders API (entra-guard example)")
app.add_middleware(EntraAuthMiddleware, config=load_config(), exclude_paths=PUBLIC_PATHS)

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
