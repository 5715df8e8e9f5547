"""The example API's routes behave exactly as the README lists them, against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from entra_guard.cli.user_sign_in import sign_in
from entra_guard.testing import DEFAULT_AUDIENCE, DEFAULT_CLIENT_ID, EntraEmulator
from entra_guard.testing.server import BackgroundServer
from tests.example import load_example
from tests.test_groups import signed_in

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def api(entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with TestClient(load_example(monkeypatch, entra_emulator).app) as client:
        yield client


def call(api: TestClient, method: str, path: str, token: str | None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.request(method, path, headers=headers, **kwargs)


def test_health_needs_no_token(api: TestClient) -> None:
    response = api.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_me_describes_any_valid_caller(
    entra_emulator: EntraEmulator, api: TestClient, version: Any
) -> None:
    app = call(api, "GET", "/me", entra_emulator.issue_token(version=version, roles=["X"])).json()
    assert app["tenant_id"] == entra_emulator.tenant_id
    assert app["client_id"] == DEFAULT_CLIENT_ID
    assert app["object_id"]
    assert (app["roles"], app["scopes"], app["app_only"], app["version"]) == (
        ["X"],
        [],
        True,
        version,
    )
    user_token = entra_emulator.issue_token(
        version=version, app_only=False, scopes=["Profile.Read"]
    )
    user = call(api, "GET", "/me", user_token).json()
    assert (user["roles"], user["scopes"], user["app_only"]) == ([], ["Profile.Read"], False)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"roles": ["Orders.Read"]}, 200),
        ({"app_only": False, "scopes": ["Orders.Read"]}, 200),
        ({"roles": ["Orders.Write"]}, 403),
        ({"app_only": False, "scopes": ["Orders.Write"]}, 403),
    ],
)
def test_get_orders_needs_orders_read_role_or_scope(
    entra_emulator: EntraEmulator, api: TestClient, claims: dict[str, Any], status: int
) -> None:
    assert call(api, "GET", "/orders", entra_emulator.issue_token(**claims)).status_code == status


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"roles": ["Orders.Write"]}, 201),
        ({"roles": ["Orders.Read"]}, 403),
        ({"app_only": False, "scopes": ["Orders.Write"]}, 403),  # an app role, not a scope
    ],
)
def test_post_orders_needs_the_orders_write_role(
    entra_emulator: EntraEmulator, api: TestClient, claims: dict[str, Any], status: int
) -> None:
    response = call(api, "POST", "/orders", entra_emulator.issue_token(**claims),
                    json={"item": "tea", "quantity": 2})  # fmt: skip
    assert response.status_code == status
    if status == 201:
        assert response.json()["created_by"] == DEFAULT_CLIENT_ID


def test_without_a_token_every_protected_route_is_401(api: TestClient) -> None:
    for method, path in (("GET", "/me"), ("GET", "/orders"), ("POST", "/orders")):
        response = call(api, method, path, None)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_docs_are_public_and_show_the_lock(api: TestClient) -> None:
    assert api.get("/docs").status_code == 200
    document = api.get("/openapi.json").json()
    # no ENTRA_SWAGGER_CLIENT_ID: a token to paste, as before
    assert document["components"]["securitySchemes"]["EntraID"]["scheme"] == "bearer"
    assert document["paths"]["/orders"]["post"]["security"] == [{"EntraID": []}]


def test_docs_need_no_internet(api: TestClient) -> None:
    """Swagger UI's own files come from the app (fastapi-offline ships them), not a CDN."""
    page = api.get("/docs").text
    assert "https://" not in page  # no CDN, no favicon from fastapi.tiangolo.com
    for path, kind in (("/docs/swagger-ui-bundle.js", "javascript"),
                       ("/docs/swagger-ui.css", "css"), ("/docs/favicon.png", "png")):  # fmt: skip
        asset = api.get(path)  # public, as the page loads it before anyone signs in
        assert asset.status_code == 200
        assert kind in asset.headers["content-type"]
        assert f'"{path}"' in page or f"'{path}'" in page
    assert "SwaggerUIBundle" in api.get("/docs/swagger-ui-bundle.js").text


SPA_CLIENT_ID = "0b5e2d7c-6a51-4f0e-9b0a-1c2d3e4f5a6b"


def test_swagger_ui_signs_users_in_with_the_configured_spa(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = entra_emulator
    example = load_example(monkeypatch, idp, AUDIENCES=f"{DEFAULT_AUDIENCE},api://orders",
                           SWAGGER_CLIENT_ID=SPA_CLIENT_ID)  # fmt: skip
    with TestClient(example.app) as api:
        page = api.get("/docs").text
        assert f'"clientId": "{SPA_CLIENT_ID}"' in page
        assert '"usePkceWithAuthorizationCodeGrant": true' in page
        assert api.get("/docs/oauth2-redirect").status_code == 200  # public: the sign-in ends there
        document = api.get("/openapi.json").json()
        flow = document["components"]["securitySchemes"]["EntraID"]["flows"]["authorizationCode"]
        authority = f"{idp.instance}/{idp.tenant_id}/oauth2/v2.0"
        assert (flow["authorizationUrl"], flow["tokenUrl"]) == (
            f"{authority}/authorize",
            f"{authority}/token",
        )
        assert flow["scopes"] == {"api://orders/Orders.Read": "Read the orders"}
        operations = document["paths"]
        assert operations["/orders"]["get"]["security"] == [
            {"EntraID": ["api://orders/Orders.Read"]}
        ]
        assert operations["/orders"]["post"]["security"] == [{"EntraID": []}]  # an app role
        user = idp.issue_token(app_only=False, scopes=["Orders.Read"])
        assert call(api, "GET", "/orders", user).status_code == 200
        refused = call(api, "POST", "/orders", user, json={"item": "tea", "quantity": 1})
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("argv", "environment", "port"),
    [
        (["uvicorn", "entra_guard.examples.orders_api:app"], {}, 8000),
        (["uvicorn", "m:app", "--port", "8123"], {}, 8123),
        (["uvicorn", "m:app", "--port=8124", "--reload"], {}, 8124),
        (["uvicorn", "m:app"], {"UVICORN_PORT": "8125"}, 8125),
    ],
)
def test_the_dev_mode_learns_its_port_from_uvicorns_command_line(
    entra_emulator: EntraEmulator,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    environment: dict[str, str],
    port: int,
) -> None:
    serving_port = load_example(monkeypatch, entra_emulator).serving_port
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.delenv("UVICORN_PORT", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert serving_port() == port


def test_dev_mode_starts_an_emulator_and_says_how_to_get_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["uvicorn", "entra_guard.examples.orders_api:app"])
    example = load_example(monkeypatch, None)
    idp: EntraEmulator = example._dev_identity[0]
    try:
        printed = capsys.readouterr().out
        assert "dev mode" in printed
        assert "open http://127.0.0.1:8000/docs, click Authorize" in printed
        fields = dict(re.findall(r"-d (client_id|client_secret|scope)='?([^' ]+)'?", printed))
        url = re.search(r"curl -s (\S+/oauth2/v2.0/token)", printed)
        assert url is not None
        # what the printed curl does
        answer = httpx.post(url.group(1), data={"grant_type": "client_credentials", **fields})
        assert answer.status_code == 200
        token = answer.json()["access_token"]
        with TestClient(example.app) as api:
            for method, path, status in (("GET", "/orders", 200), ("POST", "/orders", 201)):
                body = {"item": "tea", "quantity": 1} if method == "POST" else None
                assert call(api, method, path, token, json=body).status_code == status
    finally:
        idp.stop()


async def test_dev_mode_user_signs_in_as_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed user signs in through the printed Swagger UI client, as Swagger UI would."""
    monkeypatch.setattr("sys.argv", ["uvicorn", "entra_guard.examples.orders_api:app"])
    example = load_example(monkeypatch, None)
    idp: EntraEmulator = example._dev_identity[0]
    try:
        printed = capsys.readouterr().out
        user = re.search(r"user: +(\S+)\n +password: +(\S+)\n", printed)
        assert user is not None
        init = example.app.swagger_ui_init_oauth
        async with httpx.AsyncClient(timeout=10) as browser:
            token = await sign_in(
                browser, authority=f"{idp.instance}/{idp.tenant_id}", client_id=init["clientId"],
                redirect_uri="http://127.0.0.1:8000/docs/oauth2-redirect",
                scopes=init["scopes"].split(), upn=user.group(1), password=user.group(2),
            )  # fmt: skip
        with TestClient(example.app) as api:
            assert call(api, "GET", "/me", token).json()["scopes"] == ["Orders.Read"]
            assert call(api, "GET", "/orders", token).status_code == 200
            order = {"item": "tea", "quantity": 1}
            assert call(api, "POST", "/orders", token, json=order).status_code == 403
            # the API registered itself in dev mode, and reads Graph as the user
            profile = call(api, "GET", "/me/profile", token)
            assert (profile.status_code, profile.json()["userPrincipalName"]) == (200, user[1])
    finally:
        idp.stop()


def readme_code(heading: str) -> str:
    """The first Python block of the README's section ``heading``."""
    section = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_client_example_runs_as_written(
    entra_emulator: EntraEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    idp = entra_emulator
    api = idp.register_api(app_id_uri="api://orders", roles=["Orders.Read"])
    daemon = idp.register_client(name="daemon", roles={"api://orders": ["Orders.Read"]})
    assert daemon.secret
    example = load_example(monkeypatch, idp, AUDIENCES=f"{api.client_id},api://orders")
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", daemon.secret)
    server = BackgroundServer(example.app, host="127.0.0.1", port=0, tls=None, lifespan="on")
    server.start()
    try:
        code = readme_code("## Call it with client credentials")
        # Only what a reader fills in, and the emulator's address instead of Microsoft's.
        for placeholder, value in (
            ('"<Directory (tenant) ID>"', repr(idp.tenant_id)),
            ('"<the caller\'s Application (client) ID>"', repr(daemon.client_id)),
            ("ConfidentialClient(", f"ConfidentialClient(instance={idp.instance!r},"),
            ("https://orders.example.com", f"http://127.0.0.1:{server.port}"),
        ):
            assert code.count(placeholder) == 1, placeholder
            code = code.replace(placeholder, value)
        exec(compile(code, "README.md (client example)", "exec"), {"__name__": "readme"})  # noqa: S102
    finally:
        server.stop()
    assert capsys.readouterr().out.splitlines()[-1] == f"1 orders; called as {daemon.client_id}"
    assert idp.token_request_count() == 1  # one token, cached for the second call


def test_the_readme_swagger_ui_example_runs_as_written(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = entra_emulator
    load_example(monkeypatch, idp, AUDIENCES=f"{DEFAULT_AUDIENCE},api://orders")  # ENTRA_* set
    code = readme_code("## Users and Swagger UI")
    placeholder = '"<Swagger UI\'s Application (client) ID>"'
    assert code.count(placeholder) == 1
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code.replace(placeholder, repr(SPA_CLIENT_ID)), "README.md", "exec"), namespace)  # noqa: S102
    with TestClient(namespace["app"]) as api:
        assert api.get("/docs").status_code == 200
        assert api.get("/docs/oauth2-redirect").status_code == 200
        document = api.get("/openapi.json").json()
        scheme = document["components"]["securitySchemes"]["EntraID"]
        assert scheme["flows"]["authorizationCode"]["authorizationUrl"] == (
            f"{idp.instance}/{idp.tenant_id}/oauth2/v2.0/authorize"
        )
        assert document["paths"]["/orders"]["get"]["security"] == [
            {"EntraID": ["api://orders/Orders.Read"]}
        ]
        user = idp.issue_token(app_only=False, scopes=["Orders.Read"])
        assert call(api, "GET", "/orders", user).json() == []
        assert call(api, "GET", "/orders", None).status_code == 401


def test_me_profile_reads_graph_on_behalf_of_the_user(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configured as for a real tenant: the API's own secret from ENTRA_CLIENT_SECRET."""
    idp = entra_emulator
    orders = idp.register_api(app_id_uri="api://orders", scopes=["Orders.Read"])
    itself = idp.register_client(
        name="orders-api", client_id=orders.client_id,
        scopes={"https://graph.microsoft.com": ["User.Read"]},
    )  # fmt: skip
    front = idp.register_client(
        name="cli", type="public", redirect_uris=["http://localhost"],
        scopes={"api://orders": ["Orders.Read"]},
    )  # fmt: skip
    megan = idp.register_user(upn="megan@contoso.test", name="Megan Bowen")
    token = signed_in(idp, front, megan)
    example = load_example(
        monkeypatch, idp, AUDIENCES=f"{orders.client_id},api://orders",
        CLIENT_SECRET=itself.secret or "", GRAPH_URL=idp.graph_url,
    )  # fmt: skip
    with TestClient(example.app) as api:
        idp.reset_counts()
        for _ in range(2):
            profile = call(api, "GET", "/me/profile", token)
            assert profile.status_code == 200, profile.text
            assert profile.json() == {
                "id": megan.object_id, "displayName": "Megan Bowen",
                "userPrincipalName": "megan@contoso.test", "mail": "megan@contoso.test",
            }  # fmt: skip
        assert idp.token_request_count() == 1  # the second call reused the on-behalf-of token
        app_only = idp.issue_token(audience=orders.client_id, roles=["Orders.Read"])
        refused = call(api, "GET", "/me/profile", app_only)
        assert refused.status_code == 403  # in the middleware's shape, like every refusal
        assert refused.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
        assert refused.json()["error_description"] == "Only a signed-in user has a Graph profile"
        assert call(api, "GET", "/me/profile", None).status_code == 401


def test_me_profile_without_the_apis_own_secret_says_what_to_set(
    entra_emulator: EntraEmulator, api: TestClient
) -> None:
    user = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
    refused = call(api, "GET", "/me/profile", user)
    assert refused.status_code == 503
    assert "ENTRA_CLIENT_SECRET" in refused.json()["detail"]
