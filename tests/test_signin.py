"""Users sign in at the emulator: the authorize page, codes with PKCE, user tokens, refresh.

The test plays the browser with httpx over real loopback HTTP: it GETs the sign-in page,
POSTs the form (``login``, ``passwd``) and reads the 302's ``Location``, then redeems the
code at the token endpoint as a client would. The tokens are checked by the middleware.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from entra_guard import EntraAuthMiddleware
from entra_guard.starlette import principal_of, require_scopes
from entra_guard.testing import EntraEmulator
from entra_guard.testing.delegated import GrantStore, SignIn
from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from entra_guard.testing.users import EmulatorUser

REDIRECT = "http://localhost:8400/callback"
SPA_REDIRECT = "http://localhost:8000/docs/oauth2-redirect"
SPA_ORIGIN = "http://localhost:8000"
GROUP = "6b9a1c52-3f0e-4c59-9e7b-2f1b4d1c8a11"


@dataclass(frozen=True)
class Tenant:
    idp: EntraEmulator
    orders: ApiRegistration  # v2 tokens, scopes Orders.Read/Orders.Write, role Orders.Admin
    legacy: ApiRegistration  # v1 tokens
    native: ClientRegistration  # public, consented to Orders.Read and Legacy.Read
    web: ClientRegistration  # confidential, with a secret
    spa: ClientRegistration
    adele: EmulatorUser


@pytest.fixture(scope="module")
def tenant() -> Iterator[Tenant]:
    """One emulator for the tests that only read it: keys and registrations take time."""
    with EntraEmulator() as idp:
        orders = idp.register_api(
            app_id_uri="api://orders",
            roles=["Orders.Admin"],
            scopes=["Orders.Read", "Orders.Write"],
        )
        legacy = idp.register_api(
            app_id_uri="api://legacy", scopes=["Legacy.Read"], access_token_version="1.0"
        )
        native = idp.register_client(
            name="orders-cli",
            type="public",
            redirect_uris=[REDIRECT],
            scopes={"api://orders": ["Orders.Read"], "api://legacy": ["Legacy.Read"]},
        )
        web = idp.register_client(
            name="orders-web",
            redirect_uris=[REDIRECT],
            scopes={"api://orders": ["Orders.Read", "Orders.Write"]},
        )
        spa = idp.register_client(
            name="orders-docs",
            type="spa",
            redirect_uris=[SPA_REDIRECT],
            scopes={"api://orders": ["Orders.Read"]},
        )
        adele = idp.register_user(
            upn="adele@contoso.test",
            name="Adele Vance",
            groups=[GROUP],
            roles={"api://orders": ["Orders.Admin"]},
        )
        yield Tenant(idp, orders, legacy, native, web, spa, adele)


def pkce() -> tuple[str, str]:
    """A verifier and its S256 challenge, computed here rather than by the emulator's code."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(tenant: Tenant, client: ClientRegistration, **params: str) -> str:
    query = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": client.redirect_uris[0],
        "scope": "api://orders/Orders.Read openid profile offline_access",
        "state": "s-123",
        **params,
    }
    return f"{tenant.idp.authorize_endpoint()}?{urlencode(query)}"


def sign_in(url: str, login: str, password: str) -> httpx.Response:
    """What a browser does: show the page, submit the form to the same URL."""
    with httpx.Client() as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert '<form method="post">' in page.text
        return browser.post(url, data={"login": login, "passwd": password})


def redirected(response: httpx.Response) -> dict[str, str]:
    """The parameters of the 302 to the redirect URI."""
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {name: values[0] for name, values in query.items()}


def get_code(
    tenant: Tenant, client: ClientRegistration, challenge: str | None = None, **params: str
) -> str:
    if challenge is not None:
        params = {"code_challenge": challenge, "code_challenge_method": "S256", **params}
    answer = redirected(
        sign_in(
            authorize_url(tenant, client, **params), "adele@contoso.test", tenant.adele.password
        )
    )
    assert answer["state"] == params.get("state", "s-123")
    return answer["code"]


def redeem(tenant: Tenant, form: dict[str, str], **kwargs: Any) -> httpx.Response:
    return httpx.post(tenant.idp.token_endpoint(), data=form, **kwargs)


def code_form(client: ClientRegistration, code: str, verifier: str | None) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "client_id": client.client_id,
        "code": code,
        "redirect_uri": client.redirect_uris[0],
        "scope": "api://orders/Orders.Read openid profile offline_access",
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return form


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def whoami(request: Request) -> JSONResponse:
    principal = principal_of(request)
    return JSONResponse({"oid": principal.object_id, "scopes": sorted(principal.scopes)})


def protected_app(tenant: Tenant) -> Starlette:
    read = require_scopes("Orders.Read")(whoami)
    write = require_scopes("Orders.Write")(whoami)
    config = tenant.idp.config(audiences=[tenant.orders.client_id])
    return Starlette(
        routes=[Route("/orders", read), Route("/orders", write, methods=["POST"])],
        middleware=[Middleware(EntraAuthMiddleware, config=config)],
    )


def test_a_signed_in_users_token_is_accepted_by_the_middleware(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    code = get_code(tenant, tenant.native, challenge, nonce="n-42")
    response = redeem(tenant, code_form(tenant.native, code, verifier))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["token_type"] == "Bearer"
    assert answer["scope"] == "api://orders/Orders.Read"
    assert answer["refresh_token"]  # offline_access was asked for

    access = claims_of(answer["access_token"])
    assert access["aud"] == tenant.orders.client_id
    assert access["iss"] == f"{tenant.idp.instance}/{tenant.idp.tenant_id}/v2.0"
    assert access["scp"] == "Orders.Read"
    assert access["azp"] == tenant.native.client_id
    assert access["azpacr"] == "0"  # a public client
    assert access["oid"] == tenant.adele.object_id
    assert access["name"] == "Adele Vance"
    assert access["preferred_username"] == "adele@contoso.test"
    assert access["groups"] == [GROUP]
    assert access["roles"] == ["Orders.Admin"]
    assert "idtyp" not in access  # Entra sets it in user tokens only when configured to

    identity = claims_of(answer["id_token"])
    assert identity["aud"] == tenant.native.client_id
    assert identity["nonce"] == "n-42"
    assert identity["oid"] == tenant.adele.object_id
    assert "scp" not in identity

    with TestClient(protected_app(tenant)) as api:
        bearer = {"Authorization": f"Bearer {answer['access_token']}"}
        allowed = api.get("/orders", headers=bearer)
        assert allowed.status_code == 200
        assert allowed.json() == {"oid": tenant.adele.object_id, "scopes": ["Orders.Read"]}
        assert api.post("/orders", headers=bearer).status_code == 403  # not consented


def test_the_sign_in_page_is_plain_html_with_entras_field_names(tenant: Tenant) -> None:
    url = authorize_url(tenant, tenant.native, login_hint='adele@contoso.test"><b>')
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text.lower()
    assert '<input id="i0116" name="login" type="email"' in page.text
    assert 'name="passwd" type="password"' in page.text
    assert '<input type="submit" id="idSIButton9" value="Sign in">' in page.text
    # The hint is echoed escaped, never as markup.
    assert 'value="adele@contoso.test&quot;&gt;&lt;b&gt;"' in page.text
    assert "<b>" not in page.text


def test_a_code_is_single_use(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    form = code_form(tenant.native, get_code(tenant, tenant.native, challenge), verifier)
    assert redeem(tenant, form).status_code == 200
    again = redeem(tenant, form)
    assert again.status_code == 400
    assert (again.json()["error"], again.json()["error_codes"]) == ("invalid_grant", [54005])


def test_a_wrong_verifier_is_refused(tenant: Tenant) -> None:
    _, challenge = pkce()
    other_verifier, _ = pkce()
    response = redeem(
        tenant, code_form(tenant.native, get_code(tenant, tenant.native, challenge), other_verifier)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_codes"] == [501481]


def test_a_plain_challenge_is_its_verifier(tenant: Tenant) -> None:
    verifier = secrets.token_urlsafe(48)
    code = get_code(tenant, tenant.native, code_challenge=verifier, code_challenge_method="plain")
    assert redeem(tenant, code_form(tenant.native, code, verifier)).status_code == 200
    wrong = get_code(tenant, tenant.native, code_challenge=verifier, code_challenge_method="plain")
    assert redeem(tenant, code_form(tenant.native, wrong, verifier[::-1])).status_code == 400


def test_a_code_is_bound_to_its_client_and_redirect_uri(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    form = code_form(tenant.native, get_code(tenant, tenant.native, challenge), verifier)
    form["redirect_uri"] = "http://localhost:8400/other"
    moved = redeem(tenant, form)
    assert (moved.status_code, moved.json()["error"]) == (400, "invalid_grant")

    verifier, challenge = pkce()
    stolen = code_form(tenant.native, get_code(tenant, tenant.native, challenge), verifier)
    assert tenant.web.secret is not None
    stolen |= {"client_id": tenant.web.client_id, "client_secret": tenant.web.secret}
    response = redeem(tenant, stolen)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_codes_expire_after_ten_minutes() -> None:
    store = GrantStore()
    user = EntraEmulator().register_user(upn="x@contoso.test")
    issued = 1_000_000.0
    sign_in_ = SignIn(
        client_id="c",
        redirect_uri=REDIRECT,
        user=user,
        scope="api://orders/Orders.Read",
        nonce=None,
        code_challenge=None,
        code_challenge_method=None,
        expires_at=issued + 600,
    )
    fresh = store.issue_code(sign_in_)
    assert store.redeem_code(fresh, issued + 599.9) == sign_in_
    stale = store.issue_code(sign_in_)
    with pytest.raises(TokenError, match="AADSTS70008"):
        store.redeem_code(stale, issued + 600)


def test_a_v1_api_gets_a_v1_user_token(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    code = get_code(tenant, tenant.native, challenge, scope="api://legacy/Legacy.Read openid")
    form = code_form(tenant.native, code, verifier) | {"scope": "api://legacy/Legacy.Read"}
    answer = redeem(tenant, form).json()
    access = claims_of(answer["access_token"])
    assert access["ver"] == "1.0"
    assert access["aud"] == "api://legacy"
    assert access["iss"] == f"https://sts.windows.net/{tenant.idp.tenant_id}/"
    assert access["appid"] == tenant.native.client_id
    assert (access["upn"], access["unique_name"]) == ("adele@contoso.test",) * 2
    assert access["scp"] == "Legacy.Read"
    assert "roles" not in access  # Adele's role is on the orders API only
    assert "refresh_token" not in answer  # no offline_access
    assert "id_token" in answer
