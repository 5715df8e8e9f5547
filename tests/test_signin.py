"""Users sign in at the emulator: the authorize page, codes with PKCE, user tokens, refresh.

The test plays the browser with httpx over real loopback HTTP: it GETs the sign-in page,
POSTs the form (``login``, ``passwd``) and reads the 302's ``Location``, then redeems the
code at the token endpoint as a client would. The tokens are checked by the middleware.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, replace
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
from entra_guard.testing.delegated import GrantStore, RefreshGrant, SignIn
from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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
        "redirect_uri": client.redirect_uris[0] if client.redirect_uris else REDIRECT,
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
    fresh = store.issue_code(sign_in_, issued)
    assert store.redeem_code(fresh, issued + 599.9) == sign_in_
    stale = store.issue_code(sign_in_, issued)
    with pytest.raises(TokenError, match="AADSTS70008"):
        store.redeem_code(stale, issued + 600)
    # Expired codes are dropped when new ones are issued: the store does not grow forever.
    forgotten = store.issue_code(sign_in_, issued)
    store.issue_code(replace(sign_in_, expires_at=issued + 1200), issued + 600)
    with pytest.raises(TokenError, match="AADSTS9002313"):
        store.redeem_code(forgotten, issued + 700)


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


# -- errors at /authorize: a page where the redirect URI cannot be trusted, else a redirect ----


def error_page(response: httpx.Response) -> str:
    assert response.status_code == 400
    assert "location" not in response.headers  # never redirected
    assert "having trouble signing you in" in response.text
    return response.text


def test_an_unknown_client_is_shown_a_page(tenant: Tenant) -> None:
    url = authorize_url(tenant, tenant.native, client_id="0b8e4d57-1111-4c2a-8f43-1d1e3a5b7c9d")
    assert "AADSTS700016" in error_page(httpx.get(url))


@pytest.mark.parametrize(
    ("redirect_uri", "code"),
    [("https://evil.example/callback", "AADSTS50011"), ("", "AADSTS900971")],
)
def test_a_redirect_uri_not_registered_is_shown_a_page(
    tenant: Tenant, redirect_uri: str, code: str
) -> None:
    page = error_page(httpx.get(authorize_url(tenant, tenant.native, redirect_uri=redirect_uri)))
    assert code in page
    if redirect_uri:  # echoed, and escaped
        assert "https://evil.example/callback" in page


def test_a_client_without_redirect_uris_is_shown_a_page(tenant: Tenant) -> None:
    daemon = tenant.idp.register_client(name="daemon-no-uris")
    url = authorize_url(tenant, daemon, redirect_uri=REDIRECT)
    assert "AADSTS500113" in error_page(httpx.get(url))


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("api://orders/Orders.Delete", "invalid_scope", 70011),  # not exposed
        ("api://nowhere/Thing.Read", "invalid_resource", 500011),
        ("api://orders/Orders.Write", "consent_required", 65001),  # exposed, not consented
        ("openid profile", "invalid_scope", 70011),  # no API named: OpenID scopes alone
    ],
)
def test_scopes_it_cannot_grant_are_redirected_as_errors(
    tenant: Tenant, scope: str, error: str, code: int
) -> None:
    response = httpx.get(authorize_url(tenant, tenant.native, scope=scope))
    answer = redirected(response)
    assert response.headers["location"].startswith(REDIRECT + "?")
    assert answer["error"] == error
    assert answer["error_description"].startswith(f"AADSTS{code}: ")
    assert answer["state"] == "s-123"
    assert "code" not in answer


def test_a_resource_parameter_must_be_the_apis_app_id_uri(tenant: Tenant) -> None:
    """RFC 8707's ``resource`` (MCP clients send it): Entra accepts only the App ID URI of the
    API the scopes name, and answers AADSTS9010010 otherwise."""
    wrong = redirected(httpx.get(authorize_url(tenant, tenant.native, resource="https://api.test")))
    assert (wrong["error"], wrong["error_description"][:14]) == ("invalid_target", "AADSTS9010010:")
    assert "code" not in wrong
    right = httpx.get(authorize_url(tenant, tenant.native, resource="api://orders"))
    assert right.status_code == 200  # the sign-in page
    assert "idSIButton9" in right.text


def test_prompt_none_has_no_session_to_use(tenant: Tenant) -> None:
    answer = redirected(httpx.get(authorize_url(tenant, tenant.native, prompt="none")))
    assert answer["error"] == "login_required"
    assert answer["error_description"].startswith("AADSTS50058: ")


def test_an_s256_challenge_of_the_wrong_size_is_refused(tenant: Tenant) -> None:
    url = authorize_url(
        tenant, tenant.native, code_challenge="x" * 50, code_challenge_method="S256"
    )
    answer = redirected(httpx.get(url))
    assert (answer["error"], answer["error_description"][:13]) == (
        "invalid_request",
        "AADSTS501491:",
    )


@pytest.mark.parametrize(
    ("login", "password", "code"),
    [
        ("adele@contoso.test", "not-her-password", "AADSTS50126"),
        ("nobody@contoso.test", "whatever", "AADSTS50034"),
    ],
)
def test_a_wrong_password_shows_the_page_again(
    tenant: Tenant, login: str, password: str, code: str
) -> None:
    response = sign_in(authorize_url(tenant, tenant.native), login, password)
    assert response.status_code == 200
    assert code in response.text
    assert f'value="{login}"' in response.text  # the name stays filled in
    assert password not in response.text


def test_the_login_hint_fills_in_the_user_name(tenant: Tenant) -> None:
    page = httpx.get(authorize_url(tenant, tenant.native, login_hint="adele@contoso.test"))
    assert 'name="login" type="email" value="adele@contoso.test"' in page.text


def test_response_mode_fragment_and_form_post(tenant: Tenant) -> None:
    fragment = sign_in(
        authorize_url(tenant, tenant.native, response_mode="fragment"),
        "adele@contoso.test",
        tenant.adele.password,
    )
    assert fragment.status_code == 302
    location = urlsplit(fragment.headers["location"])
    assert not location.query
    assert {"code", "state"} <= set(parse_qs(location.fragment))

    posted = sign_in(
        authorize_url(tenant, tenant.native, response_mode="form_post", state="a&b<c>"),
        "adele@contoso.test",
        tenant.adele.password,
    )
    assert posted.status_code == 200
    assert f'<form method="POST" name="hiddenform" action="{REDIRECT}">' in posted.text
    assert '<input type="hidden" name="code" value="' in posted.text
    assert '<input type="hidden" name="state" value="a&amp;b&lt;c&gt;">' in posted.text


# -- the token endpoint: client types, SPA and CORS, refresh tokens ---------------------------


def test_a_confidential_client_must_authenticate(tenant: Tenant) -> None:
    code = get_code(tenant, tenant.web)
    refused = redeem(tenant, code_form(tenant.web, code, None))
    assert (refused.status_code, refused.json()["error_codes"]) == (401, [7000218])

    assert tenant.web.secret is not None
    form = code_form(tenant.web, get_code(tenant, tenant.web), None)
    answer = redeem(tenant, form | {"client_secret": tenant.web.secret}).json()
    assert claims_of(answer["access_token"])["azpacr"] == "1"


def test_a_confidential_client_may_not_redeem_from_a_browser(tenant: Tenant) -> None:
    assert tenant.web.secret is not None
    form = code_form(tenant.web, get_code(tenant, tenant.web), None)
    form["client_secret"] = tenant.web.secret
    response = redeem(tenant, form, headers={"Origin": "http://localhost:8400"})
    assert response.status_code == 400
    assert response.json()["error_codes"] == [9002326]


def test_a_public_client_sends_no_secret(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    form = code_form(tenant.native, get_code(tenant, tenant.native, challenge), verifier)
    response = redeem(tenant, form | {"client_secret": "anything"})
    assert (response.status_code, response.json()["error_codes"]) == (401, [700025])


def spa_code(tenant: Tenant, challenge: str | None) -> str:
    scope = "api://orders/Orders.Read offline_access"
    if challenge is None:
        return get_code(tenant, tenant.spa, scope=scope)
    return get_code(tenant, tenant.spa, challenge, scope=scope)


def test_an_spa_redeems_cross_origin_and_gets_cors_headers(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    form = code_form(tenant.spa, spa_code(tenant, challenge), verifier)
    del form["scope"]  # Swagger UI sends none: the code's first resource is used
    response = redeem(tenant, form, headers={"Origin": SPA_ORIGIN})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert claims_of(response.json()["access_token"])["scp"] == "Orders.Read"

    preflight = httpx.options(
        tenant.idp.token_endpoint(),
        headers={
            "Origin": SPA_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type"

    stranger = httpx.options(tenant.idp.token_endpoint(), headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in stranger.headers


def test_an_spa_on_another_local_port_gets_cors_headers_too(tenant: Tenant) -> None:
    """/authorize ignores the port of a loopback redirect URI, so Swagger UI served on any local
    port signs in; its redemption from that origin must then be allowed as well."""
    registered = urlsplit(SPA_ORIGIN)
    assert registered.hostname in {"localhost", "127.0.0.1"}
    moved = f"http://{registered.hostname}:{(registered.port or 80) + 1}"
    preflight = httpx.options(
        tenant.idp.token_endpoint(),
        headers={"Origin": moved, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") == moved
    https_moved = f"https://{registered.hostname}:{(registered.port or 80) + 1}"
    other = httpx.options(tenant.idp.token_endpoint(), headers={"Origin": https_moved})
    assert "access-control-allow-origin" not in other.headers  # another scheme, another origin


def test_an_spa_must_redeem_cross_origin_with_pkce(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    same_origin = redeem(tenant, code_form(tenant.spa, spa_code(tenant, challenge), verifier))
    assert (same_origin.status_code, same_origin.json()["error_codes"]) == (400, [9002327])

    no_pkce = redeem(
        tenant, code_form(tenant.spa, spa_code(tenant, None), None), headers={"Origin": SPA_ORIGIN}
    )
    assert no_pkce.json()["error_codes"] == [9002325]
    assert no_pkce.headers["access-control-allow-origin"] == SPA_ORIGIN  # errors readable too

    verifier, challenge = pkce()
    form = code_form(tenant.spa, spa_code(tenant, challenge), verifier) | {"client_secret": "x"}
    assert redeem(tenant, form, headers={"Origin": SPA_ORIGIN}).json()["error_codes"] == [700025]


def test_a_refresh_token_is_redeemed_for_new_tokens(tenant: Tenant) -> None:
    verifier, challenge = pkce()
    first = redeem(
        tenant, code_form(tenant.native, get_code(tenant, tenant.native, challenge), verifier)
    ).json()
    form = {
        "grant_type": "refresh_token",
        "client_id": tenant.native.client_id,
        "refresh_token": first["refresh_token"],
        "scope": "api://orders/Orders.Read offline_access",
    }
    second = redeem(tenant, form)
    assert second.status_code == 200, second.text
    assert claims_of(second.json()["access_token"])["oid"] == tenant.adele.object_id
    assert second.json()["refresh_token"] != first["refresh_token"]
    # Redeeming does not revoke it, and it covers every consented scope (another API too).
    other = redeem(tenant, form | {"scope": "api://legacy/Legacy.Read"})
    assert claims_of(other.json()["access_token"])["aud"] == "api://legacy"

    not_consented = redeem(tenant, form | {"scope": "api://orders/Orders.Write"})
    assert not_consented.json()["error_codes"] == [65001]
    two = redeem(tenant, form | {"scope": "api://orders/Orders.Read api://legacy/Legacy.Read"})
    assert two.json()["error_codes"] == [700022]
    spa = form | {"client_id": tenant.spa.client_id}
    someone_else = redeem(tenant, spa, headers={"Origin": SPA_ORIGIN})
    assert someone_else.json()["error"] == "invalid_grant"
    junk = redeem(tenant, form | {"refresh_token": "1.Anot-a-token"})
    assert (junk.status_code, junk.json()["error_codes"]) == (400, [9002313])


def test_an_spa_refresh_token_lives_24_hours() -> None:
    store = GrantStore()
    user = EntraEmulator().register_user(upn="x@contoso.test")
    issued = 1_000_000.0
    grant = RefreshGrant(client_id="c", user=user, scope="s", expires_at=issued + 24 * 3600)
    token = store.issue_refresh_token(grant)
    assert store.refresh_grant(token, issued + 24 * 3600 - 1) == grant
    with pytest.raises(TokenError, match="AADSTS700084"):
        store.refresh_grant(token, issued + 24 * 3600)


def test_a_guest_is_marked_by_idp(tenant: Tenant) -> None:
    guest = tenant.idp.register_user(upn="megan@fabrikam.test", guest=True)
    verifier, challenge = pkce()
    url = authorize_url(
        tenant,
        tenant.native,
        scope="api://legacy/Legacy.Read",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    code = redirected(sign_in(url, guest.upn, guest.password))["code"]
    form = code_form(tenant.native, code, verifier) | {"scope": "api://legacy/Legacy.Read"}
    access = claims_of(redeem(tenant, form).json()["access_token"])
    assert access["idp"] == f"https://sts.windows.net/{guest.home_tenant_id}/"
    assert access["tid"] == tenant.idp.tenant_id  # the resource tenant
    assert "upn" not in access
    assert access["unique_name"] == guest.upn


def test_users_are_validated_when_registered(tenant: Tenant) -> None:
    idp = tenant.idp
    with pytest.raises(ValueError, match="exists"):
        idp.register_user(upn="ADELE@contoso.test")
    with pytest.raises(ValueError, match="name@domain"):
        idp.register_user(upn="adele")
    with pytest.raises(ValueError, match="defines no app roles"):
        idp.register_user(upn="a1@contoso.test", roles={"api://orders": ["Nope"]})
    with pytest.raises(ValueError, match="not a GUID"):
        idp.register_user(upn="a2@contoso.test", groups=["admins"])
    with pytest.raises(ValueError, match="exposes no delegated scopes"):
        idp.register_client(name="x", type="spa", scopes={"api://orders": ["Orders.Delete"]})
    with pytest.raises(ValueError, match="no credentials"):
        idp.register_client(name="y", type="public", secret=True)
    user = idp.register_user(upn="a3@contoso.test")
    assert len(user.password) >= 16
    assert user.password not in repr(user)


def test_users_spas_and_scopes_from_a_registrations_file(
    entra_emulator: EntraEmulator, tmp_path: Path
) -> None:
    idp = entra_emulator
    oid = "5d4a1f3e-2c8b-4e7a-9f61-0a3b2c4d5e6f"
    path = tmp_path / "registrations.json"
    path.write_text(
        json.dumps(
            {
                "apis": [
                    {
                        "app_id_uri": "api://orders",
                        "roles": ["Orders.Admin"],
                        "scopes": ["Orders.Read"],
                    }
                ],
                "clients": [
                    {
                        "name": "docs",
                        "type": "spa",
                        "redirect_uris": [SPA_REDIRECT],
                        "scopes": {"api://orders": ["Orders.Read"]},
                    }
                ],
                "users": [
                    {
                        "upn": "adele@contoso.test",
                        "name": "Adele Vance",
                        "object_id": oid,
                        "groups": [GROUP],
                        "roles": {"api://orders": ["Orders.Admin"]},
                    },
                    {"upn": "megan@fabrikam.test", "password": "Pa55word!", "guest": True},
                ],
            }
        ),
        encoding="utf-8",
    )
    loaded = idp.load_registrations(path)
    docs, adele = loaded.client("docs"), loaded.user("adele@contoso.test")
    assert (docs.type, docs.secret, docs.redirect_uris) == ("spa", None, (SPA_REDIRECT,))
    assert loaded.apis[0].scopes == ("Orders.Read",)
    assert (adele.object_id, adele.groups, adele.name) == (oid, (GROUP,), "Adele Vance")
    assert len(adele.password) >= 16  # generated
    assert loaded.user("megan@fabrikam.test").password == "Pa55word!"
    assert idp.users == loaded.users

    verifier, challenge = pkce()
    query = {
        "client_id": docs.client_id,
        "response_type": "code",
        "redirect_uri": SPA_REDIRECT,
        "scope": "api://orders/Orders.Read",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = f"{idp.authorize_endpoint()}?{urlencode(query)}"
    code = redirected(sign_in(url, adele.upn, adele.password))["code"]
    form = {
        "grant_type": "authorization_code",
        "client_id": docs.client_id,
        "code": code,
        "redirect_uri": SPA_REDIRECT,
        "code_verifier": verifier,
    }
    response = httpx.post(idp.token_endpoint(), data=form, headers={"Origin": SPA_ORIGIN})
    access = claims_of(response.json()["access_token"])
    assert (access["oid"], access["groups"], access["roles"]) == (oid, [GROUP], ["Orders.Admin"])

    with pytest.raises(ValueError, match="unknown keys"):
        idp.load_registrations({"users": [{"upn": "x@contoso.test", "group": []}]})
    with pytest.raises(ValueError, match="needs a 'upn'"):
        idp.load_registrations({"users": [{"name": "x"}]})


def test_the_port_of_a_loopback_redirect_uri_is_ignored(tenant: Tenant) -> None:
    # Native apps listen on an ephemeral port: Entra matches loopback URIs without it.
    ephemeral = "http://localhost:53123/callback"
    answer = redirected(
        sign_in(
            authorize_url(tenant, tenant.native, redirect_uri=ephemeral),
            "adele@contoso.test",
            tenant.adele.password,
        )
    )
    assert answer["code"]
    other_path = authorize_url(tenant, tenant.native, redirect_uri="http://localhost:8400/other")
    assert "AADSTS50011" in error_page(httpx.get(other_path))
    other_host = authorize_url(tenant, tenant.native, redirect_uri="http://127.0.0.1:8400/callback")
    assert "AADSTS50011" in error_page(httpx.get(other_host))


def test_hostile_input_gets_an_answer_not_a_500(tenant: Tenant) -> None:
    broken_uri = authorize_url(tenant, tenant.native, redirect_uri="http://[::1")
    assert "AADSTS50011" in error_page(httpx.get(broken_uri))
    garbage = httpx.post(authorize_url(tenant, tenant.native), content=b"\xff\xfe=\x00&&=")
    assert (garbage.status_code, "AADSTS50034" in garbage.text) == (200, True)

    _, challenge = pkce()
    code = get_code(tenant, tenant.native, challenge)
    response = redeem(tenant, code_form(tenant.native, code, "\u00e9" * 50))
    assert (response.status_code, response.json()["error_codes"]) == (400, [501481])
