"""FastAPI dependencies and the OpenAPI security scheme, at the ASGI interface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.testclient import TestClient

from entra_guard import EntraAuthMiddleware, EntraPrincipal
from entra_guard.fastapi import (
    Principal,
    get_principal,
    require_roles,
    require_scope_or_role,
    require_scopes,
)
from entra_guard.testing import EntraEmulator
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
