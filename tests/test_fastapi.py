"""FastAPI dependencies and the OpenAPI security scheme, at the ASGI interface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from entra_guard import EntraAuthMiddleware, EntraConfig, EntraPrincipal
from entra_guard.fastapi import (
    EntraSecurity,
    Principal,
    get_principal,
    require_roles,
    require_scope_or_role,
    require_scopes,
    swagger_login,
)
from entra_guard.testing import DEFAULT_AUDIENCE, EntraEmulator
from tests.asgi import denial_of


def build(**middleware: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Principal) -> dict[str, str]:
        return {"client_id": principal.client_id}

    @app.get("/admin", dependencies=[Depends(require_roles("Orders.Read", "Orders.Admin"))])
    async def admin() -> str:
        return "admin"

    @app.get("/any-role", dependencies=[Depends(require_roles("A", "Orders.Read", any_of=True))])
    async def any_role() -> str:
        return "any"

    @app.get("/scoped")
    async def scoped(
        principal: Annotated[
            EntraPrincipal, Depends(require_scopes("Orders.Read", "Orders.Write"))
        ],
    ) -> list[str]:
        return sorted(principal.scopes)

    @app.get(
        "/either",
        dependencies=[
            Depends(require_scope_or_role(scopes=["Orders.Read"], roles=["Orders.Read"]))
        ],
    )
    async def either() -> str:
        return "either"

    @app.get("/public")
    async def public() -> str:
        return "public"

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket,
        principal: Annotated[EntraPrincipal, Depends(require_roles("Orders.Read"))],
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"client_id": principal.client_id})
        await websocket.close()

    app.add_middleware(
        EntraAuthMiddleware, exclude_paths=["/public", "/openapi.json"], **middleware
    )
    return app


@pytest.fixture
def client(entra_emulator: EntraEmulator) -> Iterator[TestClient]:
    with TestClient(build(config=entra_emulator.config())) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_principal_dependency(entra_emulator: EntraEmulator, client: TestClient) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert client.get("/me", headers=auth(token)).json()["client_id"]


@pytest.mark.parametrize(
    ("path", "claims", "status"),
    [
        ("/admin", {"roles": ["Orders.Read", "Orders.Admin"]}, 200),
        ("/admin", {"roles": ["Orders.Read"]}, 403),  # all of them are needed
        ("/any-role", {"roles": ["Orders.Read"]}, 200),
        ("/any-role", {"roles": ["B"]}, 403),
        ("/scoped", {"app_only": False, "scopes": ["Orders.Read", "Orders.Write"]}, 200),
        ("/scoped", {"app_only": False, "scopes": ["Orders.Read"]}, 403),
        ("/scoped", {"roles": ["Orders.Read", "Orders.Write"]}, 403),  # roles are not scopes
        ("/either", {"roles": ["Orders.Read"]}, 200),
        ("/either", {"app_only": False, "scopes": ["Orders.Read"]}, 200),
        ("/either", {"app_only": False, "scopes": ["Orders.Write"]}, 403),
    ],
)
def test_requirements(
    entra_emulator: EntraEmulator,
    client: TestClient,
    path: str,
    claims: dict[str, Any],
    status: int,
) -> None:
    response = client.get(path, headers=auth(entra_emulator.issue_token(**claims)))
    assert response.status_code == status
    if status == 403:
        assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
        body = response.json()
        assert body["error"] == "insufficient_scope"
        assert body["error_description"].startswith("This operation requires")


def test_the_403_names_what_was_missing(entra_emulator: EntraEmulator, client: TestClient) -> None:
    token = entra_emulator.issue_token(app_only=False, scopes=["Orders.Write"])
    response = client.get("/either", headers=auth(token))
    assert response.json()["error_description"] == (
        "This operation requires app role Orders.Read or scope Orders.Read"
    )
    assert 'scope="Orders.Read"' in response.headers["www-authenticate"]


def test_no_token_and_excluded_paths(client: TestClient) -> None:
    assert client.get("/admin").status_code == 401
    assert client.get("/public").text == '"public"'


def test_optional_mode_makes_principal_routes_answer_401(entra_emulator: EntraEmulator) -> None:
    with TestClient(build(config=entra_emulator.config(), optional=True)) as client:
        response = client.get("/me")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_without_the_middleware_the_dependency_says_what_is_wrong(
    entra_emulator: EntraEmulator,
) -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Principal) -> str:
        return principal.client_id

    with TestClient(app) as client, pytest.raises(RuntimeError, match="add EntraAuthMiddleware"):
        client.get("/me")


def test_websocket_dependencies(entra_emulator: EntraEmulator, client: TestClient) -> None:
    reader = entra_emulator.issue_token(roles=["Orders.Read"])
    with client.websocket_connect("/ws", headers=auth(reader)) as ws:
        assert ws.receive_json()["client_id"]
    writer = entra_emulator.issue_token(roles=["Orders.Write"])
    status, headers, _ = denial_of(client, "/ws", auth(writer))
    assert status == 403
    assert headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


def test_openapi_has_the_bearer_scheme_on_protected_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["EntraID"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Microsoft Entra ID access token for this API",
    }
    for path in ("/me", "/admin", "/scoped", "/either"):
        assert document["paths"][path]["get"]["security"] == [{"EntraID": []}]
    assert "security" not in document["paths"]["/public"]["get"]


def test_get_principal_is_the_dependency_behind_principal() -> None:
    assert Principal.__metadata__[0].dependency is get_principal  # type: ignore[attr-defined]


def test_each_requirement_costs_one_dependency_level(entra_emulator: EntraEmulator) -> None:
    """The requirement, the caller and the security scheme are one callable with no sub-dependency
    (FastAPI charges per level: issue 12)."""
    app = build(config=entra_emulator.config())
    routes = {route.path: route for route in app.routes if isinstance(route, APIRoute)}
    for path in ("/me", "/admin", "/any-role", "/scoped", "/either"):
        (dependency,) = routes[path].dependant.dependencies
        assert isinstance(dependency.call, EntraSecurity), path
        assert dependency.dependencies == [], path


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SPA_CLIENT_ID = "0b5e2d7c-6a51-4f0e-9b0a-1c2d3e4f5a6b"
ORDERS_SCOPES = {"Orders.Read": "Read the orders", "Orders.Write": "Place orders"}


def login_app(config: EntraConfig, **options: Any) -> FastAPI:
    app = build(config=config)

    @app.get("/one-of", dependencies=[Depends(require_scopes("Orders.Read", "Orders.Write",
                                                              any_of=True))])  # fmt: skip
    async def one_of() -> str:
        return "one of"

    @app.get(
        "/both-rules",
        dependencies=[
            Depends(require_scopes("Orders.Read")),
            Depends(require_scopes("Orders.Write", "Orders.Admin", any_of=True)),
        ],
    )
    async def both_rules() -> str:
        return "both"

    swagger_login(app, config, client_id=SPA_CLIENT_ID, scopes=ORDERS_SCOPES, **options)
    return app


def orders_config(idp: EntraEmulator) -> EntraConfig:
    return idp.config(audiences=[DEFAULT_AUDIENCE, "api://orders"])


def test_swagger_login_makes_the_scheme_oauth2_code_with_the_api_scopes(
    entra_emulator: EntraEmulator,
) -> None:
    idp = entra_emulator
    with TestClient(login_app(orders_config(idp))) as client:
        document = client.get("/openapi.json").json()
    authority = f"{idp.instance}/{idp.tenant_id}/oauth2/v2.0"
    assert document["components"]["securitySchemes"] == {
        "EntraID": {
            "type": "oauth2",
            "description": "Sign in with Microsoft Entra ID (authorization code with PKCE)",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{authority}/authorize",
                    "tokenUrl": f"{authority}/token",
                    # the routes' own needs join the scopes the API exposes
                    "scopes": {
                        "api://orders/Orders.Read": "Read the orders",
                        "api://orders/Orders.Write": "Place orders",
                        "api://orders/Orders.Admin": "api://orders/Orders.Admin",
                    },
                }
            },
        }
    }
    security = {path: ops["get"].get("security") for path, ops in document["paths"].items()}
    read, write, admin = (f"api://orders/Orders.{name}" for name in ("Read", "Write", "Admin"))
    assert security == {
        "/me": [{"EntraID": []}],  # any signed-in caller
        "/admin": [{"EntraID": []}],  # app roles are not OAuth scopes
        "/any-role": [{"EntraID": []}],
        "/scoped": [{"EntraID": [read, write]}],  # all of them
        "/either": [{"EntraID": [read]}],  # the user's way to the scope-or-role
        "/one-of": [{"EntraID": [read]}, {"EntraID": [write]}],  # alternatives
        "/both-rules": [{"EntraID": [admin, read]}, {"EntraID": [read, write]}],
        "/public": None,
    }


def test_swagger_login_gives_swagger_ui_the_spa_client_and_pkce(
    entra_emulator: EntraEmulator,
) -> None:
    config = orders_config(entra_emulator)
    app = FastAPI()
    app.add_middleware(EntraAuthMiddleware, config=config,
                       exclude_paths=["/docs", "/docs/oauth2-redirect"])  # fmt: skip
    swagger_login(app, config, client_id=SPA_CLIENT_ID, scopes=ORDERS_SCOPES)
    assert app.swagger_ui_init_oauth == {
        "clientId": SPA_CLIENT_ID,
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": "api://orders/Orders.Read api://orders/Orders.Write",
    }
    with TestClient(app) as client:
        page = client.get("/docs").text
        assert "ui.initOAuth(" in page
        assert f'"clientId": "{SPA_CLIENT_ID}"' in page
        assert '"usePkceWithAuthorizationCodeGrant": true' in page
        assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page
        assert client.get("/docs/oauth2-redirect").status_code == 200


@pytest.mark.parametrize(
    ("settings", "authority"),
    [
        ({"instance": "https://login.microsoftonline.us"},  # a sovereign cloud
         f"https://login.microsoftonline.us/{TENANT}"),
        ({"tenant_id": "organizations", "allowed_tenants": [TENANT]},  # multi-tenant
         "https://login.microsoftonline.com/organizations"),
    ],
)  # fmt: skip
def test_swagger_login_urls_follow_instance_and_tenant(
    settings: dict[str, Any], authority: str
) -> None:
    tenant = {"tenant_id": TENANT, "audiences": ["api://orders"]}
    config = EntraConfig(**{**tenant, **settings})
    app = FastAPI()

    @app.get("/orders", dependencies=[Depends(require_scopes("Orders.Read"))])
    async def orders() -> str:
        return "orders"

    swagger_login(app, config, client_id=SPA_CLIENT_ID, scopes=["Orders.Read"])
    flow = app.openapi()["components"]["securitySchemes"]["EntraID"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == f"{authority}/oauth2/v2.0/authorize"
    assert flow["tokenUrl"] == f"{authority}/oauth2/v2.0/token"
    assert flow["scopes"] == {"api://orders/Orders.Read": "Orders.Read"}


def test_swagger_login_routes_still_take_delegated_and_app_tokens(
    entra_emulator: EntraEmulator,
) -> None:
    idp = entra_emulator
    with TestClient(login_app(orders_config(idp))) as client:
        user = idp.issue_token(app_only=False, scopes=["Orders.Read"])
        assert client.get("/either", headers=auth(user)).status_code == 200
        assert client.get("/one-of", headers=auth(user)).status_code == 200
        assert client.get("/scoped", headers=auth(user)).status_code == 403
        daemon = idp.issue_token(roles=["Orders.Read"])
        assert client.get("/either", headers=auth(daemon)).status_code == 200
        response = client.get("/both-rules", headers=auth(user))
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"


def test_swagger_login_replaces_a_document_generated_before(
    entra_emulator: EntraEmulator,
) -> None:
    config = orders_config(entra_emulator)
    app = build(config=config)
    assert app.openapi()["components"]["securitySchemes"]["EntraID"]["type"] == "http"
    swagger_login(app, config, client_id=SPA_CLIENT_ID, scopes=["Orders.Read"],
                  app_id_uri="api://other")  # fmt: skip
    document = app.openapi()
    assert document["components"]["securitySchemes"]["EntraID"]["type"] == "oauth2"
    assert document["paths"]["/either"]["get"]["security"] == [
        {"EntraID": ["api://other/Orders.Read"]}
    ]
    assert app.openapi() is document  # generated once, then served as FastAPI does


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client_id": "swagger"}, "client_id must be the SPA's Application"),
        ({"scopes": []}, "name at least one delegated scope"),
        ({"scopes": ["api://orders/Orders.Read"]}, "is not a scope's short name"),
        ({"scopes": ["Orders Read"]}, "is not a scope's short name"),
        ({"app_id_uri": "orders"}, "is not an Application ID URI"),
    ],
)
def test_swagger_login_refuses_bad_arguments(options: dict[str, Any], message: str) -> None:
    config = EntraConfig(tenant_id=TENANT,
                         audiences=["api://orders"])  # fmt: skip
    arguments: dict[str, Any] = {"client_id": SPA_CLIENT_ID, "scopes": ["Orders.Read"], **options}
    with pytest.raises(ValueError, match=message):
        swagger_login(FastAPI(), config, **arguments)


def test_swagger_login_needs_an_app_id_uri_when_audiences_are_client_ids() -> None:
    config = EntraConfig(tenant_id=TENANT,
                         audiences=[DEFAULT_AUDIENCE])  # fmt: skip
    with pytest.raises(ValueError, match="holds no Application ID URI"):
        swagger_login(FastAPI(), config, client_id=SPA_CLIENT_ID, scopes=["Orders.Read"])
    app = FastAPI()
    swagger_login(app, config, client_id=SPA_CLIENT_ID, scopes=["Orders.Read"],
                  app_id_uri=f"api://{DEFAULT_AUDIENCE}")  # fmt: skip
    assert app.swagger_ui_init_oauth is not None
    assert app.swagger_ui_init_oauth["scopes"] == f"api://{DEFAULT_AUDIENCE}/Orders.Read"
