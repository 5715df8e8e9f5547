"""RFC 9728 protected-resource metadata: the document, where it is served, the challenges that
name it, and an OAuth client finding its way from a 401 to a token (emulator over https)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from entra_guard import (
    EntraAuthMiddleware,
    EntraConfig,
    InsufficientPermissions,
    InvalidToken,
    MissingToken,
    ProtectedResource,
)
from entra_guard.bearer import challenge
from entra_guard.fastapi import require_scopes as fastapi_require_scopes
from entra_guard.resource_metadata import WELL_KNOWN_PATH
from entra_guard.starlette import principal_of, require_scopes
from entra_guard.testing import DEFAULT_AUDIENCE, EntraEmulator
from entra_guard.testing.server import BackgroundServer
from tests.asgi import denial_of

API = "https://api.contoso.test"
SCOPE = "api://orders/Orders.Read"


@require_scopes("Orders.Read")
async def orders(request: Request) -> JSONResponse:
    principal = principal_of(request)
    return JSONResponse({"scopes": sorted(principal.scopes), "user": principal.preferred_username})


async def health(request: Request) -> Response:
    return Response("ok")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


ROUTES = [
    Route("/orders", orders),
    Route("/health", health),
    WebSocketRoute("/ws", ws_echo),
    WebSocketRoute(WELL_KNOWN_PATH, ws_echo),
]


def make_app(config: EntraConfig, **options: Any) -> Starlette:
    options.setdefault("prefetch_keys", False)
    return Starlette(
        routes=ROUTES, middleware=[Middleware(EntraAuthMiddleware, config=config, **options)]
    )


def resource(url: str = API, **fields: Any) -> ProtectedResource:
    fields.setdefault("scopes_supported", [SCOPE])
    return ProtectedResource(resource=url, **fields)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# A strict reading of RFC 9110 11.2 for the challenges we write: one scheme, then
# name="quoted-string" pairs separated by ", ".
_PARAM = re.compile(r'([a-z_]+)="((?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*)"')


def challenge_params(value: str) -> dict[str, str]:
    """The auth-params of a ``Bearer`` challenge; fails on anything malformed or repeated."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "Bearer", value
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        assert match is not None, f"malformed challenge at {rest[position:]!r}"
        name = match.group(1)
        assert name not in params, f"{name} repeated"
        params[name] = re.sub(r"\\(.)", r"\1", match.group(2))
        position = match.end()
        if position < len(rest):
            assert rest.startswith(", ", position), f"no separator at {rest[position:]!r}"
            position += 2
    return params


# -- the document ----------------------------------------------------------------------------


def test_the_document_at_the_origin_root(entra_emulator: EntraEmulator) -> None:
    app = make_app(entra_emulator.config(), resource_metadata=resource())
    with TestClient(app, base_url=API) as client:
        response = client.get(WELL_KNOWN_PATH)
        assert response.status_code == 200
        assert response.json() == {
            "resource": API,
            "authorization_servers": [f"{entra_emulator.instance}/{entra_emulator.tenant_id}/v2.0"],
            "scopes_supported": [SCOPE],
            "bearer_methods_supported": ["header"],
        }
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert response.headers["access-control-allow-origin"] == "*"
        assert "www-authenticate" not in response.headers
        # No token is needed, and one that comes along is not looked at.
        assert client.get(WELL_KNOWN_PATH, headers=bearer("junk")).json() == response.json()
        # The origin-relative path of a resource without a path is the bare well-known path only.
        assert client.get(WELL_KNOWN_PATH + "/orders").status_code == 401
    assert entra_emulator.fetch_count("jwks") == 0


def test_a_resource_with_a_path_is_served_at_the_path_suffixed_form(
    entra_emulator: EntraEmulator,
) -> None:
    docs = "https://contoso.test/docs/orders?lang=en"
    metadata = resource(
        "https://contoso.test/orders", resource_name="Orders API", resource_documentation=docs
    )
    app = make_app(entra_emulator.config(), resource_metadata=metadata)
    with TestClient(app, base_url="https://contoso.test") as client:
        suffixed = client.get(WELL_KNOWN_PATH + "/orders")
        assert suffixed.status_code == 200
        assert suffixed.json()["resource"] == "https://contoso.test/orders"
        assert suffixed.json()["resource_name"] == "Orders API"
        assert suffixed.json()["resource_documentation"] == docs
        # MCP clients fall back to the bare form; it describes the same resource.
        assert client.get(WELL_KNOWN_PATH).json() == suffixed.json()
        for wrong in (
            WELL_KNOWN_PATH + "/other",
            WELL_KNOWN_PATH + "/orders/",
            WELL_KNOWN_PATH + "/orders/more",
            WELL_KNOWN_PATH + "x",
            "/orders" + WELL_KNOWN_PATH,  # below the resource is not where RFC 9728 puts it
            "/.well-known/oauth-authorization-server",
        ):
            assert client.get(wrong).status_code == 401, wrong
    assert metadata.metadata_url == f"https://contoso.test{WELL_KNOWN_PATH}/orders"


def test_where_the_document_of_each_resource_shape_lives() -> None:
    """RFC 9728 3.1: a terminating slash after the host is dropped; one after a path is kept."""
    cases = {
        "https://api.contoso.test": f"https://api.contoso.test{WELL_KNOWN_PATH}",
        "https://api.contoso.test/": f"https://api.contoso.test{WELL_KNOWN_PATH}",
        "https://contoso.test:8443/v1/orders": f"https://contoso.test:8443{WELL_KNOWN_PATH}/v1/orders",
        "https://contoso.test/mcp/": f"https://contoso.test{WELL_KNOWN_PATH}/mcp/",
        "http://127.0.0.1:8000/api": f"http://127.0.0.1:8000{WELL_KNOWN_PATH}/api",
        "https://[::1]/x": f"https://[::1]{WELL_KNOWN_PATH}/x",
    }  # fmt: skip
    for url, expected in cases.items():
        assert resource(url).metadata_url == expected, url
        assert resource(url).resource == url  # what clients compare, kept as configured


def test_head_options_and_other_methods(entra_emulator: EntraEmulator) -> None:
    app = make_app(entra_emulator.config(), resource_metadata=resource())
    with TestClient(app, base_url=API) as client:
        get = client.get(WELL_KNOWN_PATH)
        head = client.head(WELL_KNOWN_PATH)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
        assert head.headers["content-type"] == "application/json"

        preflight = client.options(
            WELL_KNOWN_PATH,
            headers={
                "Origin": "https://mcp-client.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "mcp-protocol-version",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert preflight.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
        assert preflight.headers["access-control-allow-headers"] == "*"
        assert preflight.headers["allow"] == "GET, HEAD, OPTIONS"

        for method in ("POST", "PUT", "PATCH", "DELETE", "TRACE"):
            refused = client.request(method, WELL_KNOWN_PATH)
            assert refused.status_code == 405, method
            assert refused.headers["allow"] == "GET, HEAD, OPTIONS"
            assert refused.json()["error"] == "method_not_allowed"


def test_the_document_names_what_the_config_and_options_say(
    entra_emulator: EntraEmulator,
) -> None:
    issuers = ["https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"]
    metadata = resource(
        scopes_supported=[SCOPE, "api://orders/Orders.Write", SCOPE, "offline_access"],
        authorization_servers=issuers,
    )
    app = make_app(entra_emulator.config(), resource_metadata=metadata, accept_query_token=True)
    with TestClient(app, base_url=API) as client:
        document = client.get(WELL_KNOWN_PATH).json()
    assert document["authorization_servers"] == issuers
    assert document["scopes_supported"] == [SCOPE, "api://orders/Orders.Write", "offline_access"]
    assert document["bearer_methods_supported"] == ["header", "query"]


def test_a_multi_tenant_api_advertises_its_multi_tenant_authority(
    entra_emulator: EntraEmulator,
) -> None:
    """``organizations`` is where any user signs in; its configuration's issuer is a template,
    which is why issuer-checking clients need ``authorization_servers`` given explicitly."""
    other = entra_emulator.add_tenant()
    config = entra_emulator.config(tenant_id="organizations", allowed_tenants=[other])
    authority = f"{entra_emulator.instance}/organizations/v2.0"
    assert resource().document(config)["authorization_servers"] == [authority]
    discovered = httpx.get(f"{authority}/.well-known/openid-configuration").json()
    assert discovered["issuer"] == f"{entra_emulator.instance}/{{tenantid}}/v2.0"
    assert discovered["issuer"] != authority

    tenants = [f"{entra_emulator.instance}/{tid}/v2.0" for tid in entra_emulator.tenants]
    explicit = resource(authorization_servers=tenants).document(config)
    assert explicit["authorization_servers"] == tenants
    for issuer in tenants:
        assert httpx.get(f"{issuer}/.well-known/openid-configuration").json()["issuer"] == issuer


# -- challenges --------------------------------------------------------------------------------


def test_401_challenges_name_the_document(entra_emulator: EntraEmulator) -> None:
    url = f"{API}{WELL_KNOWN_PATH}"
    app = make_app(entra_emulator.config(), resource_metadata=resource())
    with TestClient(app, base_url=API) as client:
        missing = client.get("/orders")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == f'Bearer resource_metadata="{url}"'

        forged = entra_emulator.issue_token(
            app_only=False, scopes=["Orders.Read"], key=EntraEmulator.generate_key(),
            headers={"kid": entra_emulator.current_key.kid},
        )  # fmt: skip
        invalid = client.get("/orders", headers=bearer(forged))
        assert invalid.status_code == 401
        assert challenge_params(invalid.headers["www-authenticate"]) == {
            "error": "invalid_token",
            "error_description": invalid.json()["error_description"],
            "resource_metadata": url,
        }

        # A 403 keeps its scope and gives no directions; a 400 is about the request's form.
        reader = entra_emulator.issue_token(app_only=False, scopes=["Orders.Write"])
        forbidden = client.get("/orders", headers=bearer(reader))
        assert forbidden.status_code == 403
        assert challenge_params(forbidden.headers["www-authenticate"]) == {
            "error": "insufficient_scope",
            "error_description": forbidden.json()["error_description"],
            "scope": "Orders.Read",
        }
        malformed = client.get("/orders", headers={"Authorization": "Bearer\tabc"})
        assert malformed.status_code == 400
        assert "resource_metadata" not in malformed.headers["www-authenticate"]
        # Another scheme is no credentials (RFC 6750 §3.1): directions, as for no header.
        basic = client.get("/orders", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        assert basic.headers["www-authenticate"] == f'Bearer resource_metadata="{url}"'

        good = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
        assert client.get("/orders", headers=bearer(good)).status_code == 200


def test_a_401_raised_by_a_route_names_the_document_too(entra_emulator: EntraEmulator) -> None:
    """With ``optional=True`` the route refuses an anonymous caller; the answer is the same."""
    app = make_app(entra_emulator.config(), resource_metadata=resource(), optional=True)
    with TestClient(app, base_url=API) as client:
        refused = client.get("/orders")
    assert refused.status_code == 401
    assert challenge_params(refused.headers["www-authenticate"]) == {
        "resource_metadata": f"{API}{WELL_KNOWN_PATH}"
    }


def test_websocket_refusals_name_the_document(entra_emulator: EntraEmulator) -> None:
    app = make_app(entra_emulator.config(), resource_metadata=resource("https://contoso.test/x"))
    with TestClient(app, base_url="https://contoso.test") as client:
        status, headers, _ = denial_of(client, "/ws", {})
        assert status == 401
        assert headers["www-authenticate"] == (
            f'Bearer resource_metadata="https://contoso.test{WELL_KNOWN_PATH}/x"'
        )
        # The document is HTTP only: a WebSocket there is authenticated like any other.
        status, headers, _ = denial_of(client, WELL_KNOWN_PATH, {})
        assert status == 401
        token = entra_emulator.issue_token(app_only=False)
        with client.websocket_connect(WELL_KNOWN_PATH, headers=bearer(token)):
            pass


def test_without_the_option_nothing_changes(entra_emulator: EntraEmulator) -> None:
    with TestClient(make_app(entra_emulator.config()), base_url=API) as client:
        assert client.get(WELL_KNOWN_PATH).status_code == 401
        assert client.get("/orders").headers["www-authenticate"] == "Bearer"
        junk = client.get("/orders", headers=bearer("a.b.c"))
        assert set(challenge_params(junk.headers["www-authenticate"])) == {
            "error", "error_description"
        }  # fmt: skip
        assert denial_of(client, "/ws", {})[1]["www-authenticate"] == "Bearer"


def test_the_url_never_comes_from_the_request(entra_emulator: EntraEmulator) -> None:
    """A Host header (or X-Forwarded-*) chosen by the caller must not choose where to sign in."""
    app = make_app(entra_emulator.config(), resource_metadata=resource())
    spoofed = {"Host": "evil.example", "X-Forwarded-Host": "evil.example",
               "X-Forwarded-Proto": "http"}  # fmt: skip
    with TestClient(app, base_url=API) as client:
        refused = client.get("/orders", headers=spoofed)
        document = client.get(WELL_KNOWN_PATH, headers=spoofed).json()
    assert challenge_params(refused.headers["www-authenticate"])["resource_metadata"] == (
        f"{API}{WELL_KNOWN_PATH}"
    )
    assert document["resource"] == API


def test_values_are_checked_so_that_the_header_needs_no_escaping() -> None:
    for bad in (
        'https://api.contoso.test/a"b',  # would end the quoted-string
        "https://api.contoso.test/a\\b",
        "https://api.contoso.test/a b",
        "https://api.contoso.test/\r\nSet-Cookie: x=1",
        "https://api.contoso.test/ünï",
        "https://api.contoso.test/%zz",
        "https://api.contoso.test/#fragment",
        "https://user@api.contoso.test",
        "https://api.contoso.test?tenant=1",
        "https://api.contoso.test:99999",
        "http://api.contoso.test",  # http off loopback
        "ftp://api.contoso.test",
        "/orders",
        "",
    ):
        with pytest.raises(ValueError, match="resource"):
            resource(bad)
    with pytest.raises(ValueError, match="authorization_servers"):
        resource(authorization_servers=['https://login.example/"x'])
    with pytest.raises(ValueError, match="authorization_servers"):
        resource(authorization_servers="https://login.microsoftonline.com/t/v2.0")
    with pytest.raises(ValueError, match="resource_documentation"):
        resource(resource_documentation="https://docs.example/a b")
    with pytest.raises(ValueError, match="resource_name"):
        resource(resource_name=" ")


def test_scopes_must_be_full_names_of_this_api() -> None:
    for bad in (
        ["Orders.Read"], ["api://orders/"], ["/Orders.Read"], ["openid", "offline_access"], [],
        ["api://orders/Orders Read"], ['api://orders/"x"'], "api://orders/Orders.Read",
    ):  # fmt: skip
        with pytest.raises(ValueError, match="scopes_supported"):
            resource(scopes_supported=bad)
    with pytest.raises(ValueError, match="Microsoft Graph"):
        resource(scopes_supported=["Orders.Read"])
    assert resource(scopes_supported=["api://orders/.default"]).scopes_supported == (
        "api://orders/.default",
    )


def test_percent_encoded_resources_stay_encoded_in_the_header(
    entra_emulator: EntraEmulator,
) -> None:
    metadata = resource("https://contoso.test/caf%C3%A9/o'k")
    app = make_app(entra_emulator.config(), resource_metadata=metadata)
    with TestClient(app, base_url="https://contoso.test") as client:
        refused = client.get("/orders")
        # ASGI gives the path decoded; the document is found under it all the same.
        document = client.get(WELL_KNOWN_PATH + "/caf%C3%A9/o'k")
    url = f"https://contoso.test{WELL_KNOWN_PATH}/caf%C3%A9/o'k"
    assert challenge_params(refused.headers["www-authenticate"]) == {"resource_metadata": url}
    assert document.status_code == 200
    assert document.json()["resource"] == "https://contoso.test/caf%C3%A9/o'k"


def test_descriptions_are_sanitised_beside_the_url() -> None:
    url = f"{API}{WELL_KNOWN_PATH}"
    hostile = InvalidToken("x", 'a "quoted" \\ one, with résumé\r\nX-Injected: 1')
    params = challenge_params(challenge(hostile, resource_metadata=url))
    assert params["resource_metadata"] == url
    # '"', '\', non-ASCII and CR LF each become "'": nothing can end the quoted-string.
    assert params["error_description"] == "a 'quoted' ' one, with r'sum'''X-Injected: 1"
    assert challenge(MissingToken(), resource_metadata=url) == f'Bearer resource_metadata="{url}"'
    denied = InsufficientPermissions("missing_permission", "no", required="Orders.Read")
    assert "resource_metadata" not in challenge(denied, resource_metadata=url)


def test_the_middleware_refuses_anything_but_a_protected_resource(
    entra_emulator: EntraEmulator,
) -> None:
    with pytest.raises(ValueError, match="ProtectedResource"):
        EntraAuthMiddleware(
            make_app(entra_emulator.config()),
            config=entra_emulator.config(),
            resource_metadata={"resource": API},  # type: ignore[arg-type]
        )


# -- where the middleware sits -------------------------------------------------------------------


def test_exclusions_do_not_swallow_the_document(entra_emulator: EntraEmulator) -> None:
    """An excluded ``/.well-known/`` would hand the request to the app, which has no route."""
    app = make_app(
        entra_emulator.config(),
        resource_metadata=resource(),
        exclude_paths=[WELL_KNOWN_PATH],
        exclude_prefixes=["/.well-known/"],
    )
    with TestClient(app, base_url=API) as client:
        assert client.get(WELL_KNOWN_PATH).json()["resource"] == API
        assert client.post(WELL_KNOWN_PATH).status_code == 405  # ours, not the router's
        assert client.get("/.well-known/security.txt").status_code == 404  # excluded: the app's


def test_behind_a_root_path(entra_emulator: EntraEmulator) -> None:
    """``uvicorn --root-path /api`` behind a proxy: the public resource is ``.../api``.

    The client asks for ``/.well-known/oauth-protected-resource/api`` at the origin and the
    proxy forwards it as it is: uvicorn prepends the root path to it (the first request below),
    another server may not (the second); the path the app routes on is the same, and the
    middleware answers it. tests/test_deployment.py does this with a real uvicorn and proxy.
    """
    metadata = resource("https://contoso.test/api")
    app = make_app(entra_emulator.config(), resource_metadata=metadata)
    url = f"https://contoso.test{WELL_KNOWN_PATH}/api"
    with TestClient(app, base_url="https://contoso.test", root_path="/api") as client:
        refused = client.get("/api/orders")
        assert challenge_params(refused.headers["www-authenticate"]) == {"resource_metadata": url}
        assert client.get(f"/api{WELL_KNOWN_PATH}/api").json()["resource"] == metadata.resource
        assert client.get(f"{WELL_KNOWN_PATH}/api").json()["resource"] == metadata.resource
        assert client.get("/api/health").status_code == 401


def test_a_mounted_api_behind_the_middleware_of_the_outer_app(
    entra_emulator: EntraEmulator,
) -> None:
    """The document lives at the origin root, outside any mount: the outer app serves it."""
    inner = Starlette(routes=ROUTES)
    outer = Starlette(
        routes=[Mount("/api", app=inner)],
        middleware=[
            Middleware(
                EntraAuthMiddleware,
                config=entra_emulator.config(),
                resource_metadata=resource("https://contoso.test/api"),
            )
        ],
    )
    with TestClient(outer, base_url="https://contoso.test") as client:
        assert client.get(f"{WELL_KNOWN_PATH}/api").status_code == 200
        refused = client.get("/api/orders")
        assert refused.headers["www-authenticate"] == (
            f'Bearer resource_metadata="https://contoso.test{WELL_KNOWN_PATH}/api"'
        )
        token = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
        assert client.get("/api/orders", headers=bearer(token)).status_code == 200


def test_the_document_trips_no_nested_middleware_check(entra_emulator: EntraEmulator) -> None:
    """The parent serves the document before anything else and puts no principal in the scope;
    a mount the parent excludes keeps its own middleware, and that one's options still apply."""
    inner = make_app(entra_emulator.config(), optional=True)
    outer = Starlette(
        routes=[Mount("/inner", app=inner), Route("/orders", orders)],
        middleware=[
            Middleware(
                EntraAuthMiddleware,
                config=entra_emulator.config(),
                exclude_prefixes=["/inner/"],
                resource_metadata=resource(),
            )
        ],
    )
    token = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
    with TestClient(outer, base_url=API) as client:
        assert client.get(WELL_KNOWN_PATH, headers=bearer(token)).status_code == 200
        assert client.get("/inner/health").text == "ok"  # the inner one is optional=True
        assert client.get("/inner/orders", headers=bearer(token)).status_code == 200
        assert client.get("/orders", headers=bearer(token)).status_code == 200
        # Only the parent has the option: the inner one's refusals name nothing.
        assert client.get("/inner/orders").headers["www-authenticate"] == "Bearer"


def test_the_added_twice_guard_still_fires_around_the_document(
    entra_emulator: EntraEmulator,
) -> None:
    app = make_app(entra_emulator.config(), resource_metadata=resource())
    app.add_middleware(EntraAuthMiddleware, config=entra_emulator.config())
    with pytest.raises(RuntimeError, match="inside another EntraAuthMiddleware"), TestClient(app):
        pass


def test_on_fastapi_behind_a_root_path(entra_emulator: EntraEmulator) -> None:
    app = FastAPI()

    @app.get("/orders", dependencies=[Depends(fastapi_require_scopes("Orders.Read"))])
    async def read_orders() -> list[str]:
        return ["coffee beans"]

    app.add_middleware(
        EntraAuthMiddleware,
        config=entra_emulator.config(),
        exclude_paths=["/docs", "/openapi.json"],
        resource_metadata=resource("https://contoso.test/api"),
        prefetch_keys=False,
    )
    url = f"https://contoso.test{WELL_KNOWN_PATH}/api"
    with TestClient(app, base_url="https://contoso.test", root_path="/api") as client:
        assert client.get(f"{WELL_KNOWN_PATH}/api").json()["resource"] == "https://contoso.test/api"
        assert client.get("/api/openapi.json").status_code == 200
        refused = client.get("/api/orders")
        assert refused.headers["www-authenticate"] == f'Bearer resource_metadata="{url}"'
        writer = entra_emulator.issue_token(app_only=False, scopes=["Orders.Write"])
        forbidden = client.get("/api/orders", headers=bearer(writer))
        assert forbidden.status_code == 403
        assert "resource_metadata" not in forbidden.headers["www-authenticate"]
        reader = entra_emulator.issue_token(app_only=False, scopes=["Orders.Read"])
        assert client.get("/api/orders", headers=bearer(reader)).json() == ["coffee beans"]


def test_the_readmes_snippet_as_written(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Protected-resource metadata (RFC 9728)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    monkeypatch.setenv("ENTRA_TENANT_ID", entra_emulator.tenant_id)
    monkeypatch.setenv("ENTRA_AUDIENCES", DEFAULT_AUDIENCE)
    monkeypatch.setenv("ENTRA_INSTANCE", entra_emulator.instance)
    app = Starlette(routes=ROUTES)
    exec(compile(match.group(1), "README.md", "exec"), {"app": app})  # noqa: S102
    with TestClient(app, base_url="https://api.contoso.com") as client:
        document = client.get(WELL_KNOWN_PATH).json()
        refused = client.get("/orders")
    assert document["resource"] == "https://api.contoso.com"
    assert document["resource_name"] == "Orders API"
    assert refused.headers["www-authenticate"] == (
        f'Bearer resource_metadata="https://api.contoso.com{WELL_KNOWN_PATH}"'
    )


# -- an OAuth client's walk, over real HTTP -----------------------------------------------------


class _Later:
    """An ASGI app given after the server has bound its port (the resource URL needs it)."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@pytest.fixture
def idp() -> Iterator[EntraEmulator]:
    with EntraEmulator(https=True) as emulator:
        yield emulator


def serve_api(config: EntraConfig, scopes: list[str]) -> tuple[BackgroundServer, _Later, str]:
    later = _Later()
    server = BackgroundServer(later, host="127.0.0.1", port=0, tls=None)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    later.app = make_app(config, resource_metadata=resource(base, scopes_supported=scopes))
    return server, later, base


def discover(http: httpx.Client, api: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a client does with a 401: the resource's metadata, then its authorization server's."""
    refused = http.get(f"{api}/orders")
    assert refused.status_code == 401
    metadata_url = challenge_params(refused.headers["www-authenticate"])["resource_metadata"]
    assert metadata_url == f"{api}{WELL_KNOWN_PATH}"
    document = http.get(metadata_url).json()
    assert document["resource"] == api  # RFC 9728 3.3: identical to the URL the client used
    issuer = document["authorization_servers"][0]
    # Entra publishes OpenID Connect discovery under the issuer, not RFC 8414's path.
    configuration = http.get(f"{issuer}/.well-known/openid-configuration").json()
    assert configuration["issuer"] == issuer  # the check RFC 8414 3.3 and MCP clients make
    return document, configuration


def test_a_client_finds_its_way_from_a_401_to_a_token(idp: EntraEmulator) -> None:
    """Discovery end to end; the token comes from the emulator directly (the sign-in part is
    the next test)."""
    app_id_uri = f"api://{DEFAULT_AUDIENCE}"
    server, _, api = serve_api(idp.config(), [f"{app_id_uri}/Orders.Read"])
    try:
        with httpx.Client(verify=idp.ssl_context(), timeout=10) as http:
            document, configuration = discover(http, api)
            assert configuration["authorization_endpoint"].startswith(idp.instance)
            scopes = [s.removeprefix(f"{app_id_uri}/") for s in document["scopes_supported"]]
            token = idp.issue_token(app_only=False, scopes=scopes)
            answer = http.get(f"{api}/orders", headers=bearer(token))
        assert answer.status_code == 200
        assert answer.json()["scopes"] == ["Orders.Read"]
    finally:
        server.stop()


class _SignInForm(HTMLParser):
    """The first form of a page: its action, method and inputs (name -> value)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.inputs: dict[str, str] = {}
        self._forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self._forms += 1
            if self._forms == 1:
                self.action, self.method = values.get("action"), values.get("method")
        elif tag == "input" and self._forms == 1 and values.get("name"):
            self.inputs[str(values["name"])] = values.get("value") or ""


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_a_client_signs_a_user_in_from_a_401(idp: EntraEmulator) -> None:
    """401 -> metadata -> the authority's OpenID configuration -> sign-in page -> code ->
    token (PKCE, public client) -> 200, each step from what the previous one said."""
    registered: Any = idp  # the sign-in API (register_user, clients with redirect URIs) is new
    api_registration = registered.register_api(app_id_uri="api://orders", scopes=["Orders.Read"])
    user = registered.register_user(upn="adele@contoso.test", name="Adele Vance")
    redirect_uri = "http://localhost/callback"
    client = registered.register_client(
        name="mcp-client", type="public", redirect_uris=[redirect_uri],
        scopes={"api://orders": ["Orders.Read"]},
    )  # fmt: skip
    config = idp.config(audiences=[api_registration.client_id, "api://orders"])
    server, _, api = serve_api(config, [SCOPE])
    try:
        with httpx.Client(verify=idp.ssl_context(), timeout=10) as http:
            document, configuration = discover(http, api)
            verifier, code_challenge = _pkce()
            state = secrets.token_urlsafe(16)
            authorize = configuration["authorization_endpoint"] + "?" + urlencode({
                "client_id": client.client_id, "response_type": "code",
                "redirect_uri": redirect_uri, "scope": " ".join(document["scopes_supported"]),
                "state": state, "code_challenge": code_challenge,
                "code_challenge_method": "S256", "login_hint": user.upn,
            })  # fmt: skip
            page = http.get(authorize)
            assert page.status_code == 200
            form = _SignInForm()
            form.feed(page.text)
            assert (form.method or "").lower() == "post"
            assert {"login", "passwd"} <= set(form.inputs)
            assert form.inputs["login"] == user.upn  # filled in from login_hint
            fields = {**form.inputs, "login": user.upn, "passwd": user.password}
            signed_in = http.post(urljoin(authorize, form.action or authorize), data=fields)
            assert signed_in.status_code == 302
            location = urlsplit(signed_in.headers["location"])
            assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
            answer = parse_qs(location.query)
            assert answer["state"] == [state]
            tokens = http.post(configuration["token_endpoint"], data={
                "grant_type": "authorization_code", "client_id": client.client_id,
                "code": answer["code"][0], "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            })  # fmt: skip
            assert tokens.status_code == 200, tokens.text
            called = http.get(f"{api}/orders", headers=bearer(tokens.json()["access_token"]))
        assert called.status_code == 200
        assert called.json() == {"scopes": ["Orders.Read"], "user": user.upn}
    finally:
        server.stop()
