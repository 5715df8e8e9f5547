"""The example API's routes behave exactly as the README lists them, against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from entra_guard.testing import DEFAULT_CLIENT_ID, EntraEmulator
from entra_guard.testing.server import BackgroundServer
from tests.example import load_example

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
    assert "EntraID" in document["components"]["securitySchemes"]
    assert document["paths"]["/orders"]["post"]["security"] == [{"EntraID": []}]


def test_dev_mode_starts_an_emulator_and_says_how_to_get_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example(monkeypatch, None)
    idp: EntraEmulator = example._dev_identity[0]
    try:
        printed = capsys.readouterr().out
        assert "dev mode" in printed
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
