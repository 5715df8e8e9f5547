"""The emulator's client-credentials token endpoint, over real loopback HTTP with raw httpx."""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from entra_guard import TokenValidator
from entra_guard.testing import EntraEmulator
from entra_guard.testing.registrations import generate_certificate

if TYPE_CHECKING:
    from collections.abc import Iterator

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain http: no CA store to load
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ERROR_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}


@dataclass(frozen=True)
class Tenant:
    idp: EntraEmulator
    orders: ApiRegistration  # v2 tokens
    legacy: ApiRegistration  # v1 tokens
    billing: ClientRegistration  # secret and certificate, roles on both APIs
    bare: ClientRegistration  # a secret, no roles


@pytest.fixture(scope="module")
def tenant() -> Iterator[Tenant]:
    """One emulator for the tests that do not change it: keys and certificates take time."""
    with EntraEmulator() as idp:
        orders = idp.register_api(app_id_uri="api://orders", roles=["Orders.Read", "Orders.Write"])
        legacy = idp.register_api(
            app_id_uri="api://legacy", roles=["Legacy.Read"], access_token_version="1.0"
        )
        billing = idp.register_client(
            name="billing",
            roles={
                "api://orders": ["Orders.Read", "Orders.Write"],
                legacy.client_id: ["Legacy.Read"],
            },
            certificate=True,
        )
        bare = idp.register_client(name="bare")
        yield Tenant(idp, orders, legacy, billing, bare)


def post(url: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    return httpx.post(url, data=data, verify=NO_TLS, **kwargs)


def secret_form(client: ClientRegistration, scope: str = "api://orders/.default") -> dict[str, str]:
    assert client.secret is not None
    return {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.secret,
        "scope": scope,
    }


def make_assertion(
    client: ClientRegistration,
    audience: str,
    *,
    alg: str = "PS256",
    claims: dict[str, Any] | None = None,
    key_pem: bytes | None = None,
    cert_pem: bytes | None = None,
) -> str:
    """A client assertion as MSAL builds one, then bent by ``claims`` (``None`` removes)."""
    certificate_pem = cert_pem or client.certificate_pem
    assert certificate_pem is not None
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    if alg == "RS256":
        thumbprint = {"x5t": b64url(certificate.fingerprint(hashes.SHA1()))}  # noqa: S303
    else:
        thumbprint = {"x5t#S256": b64url(certificate.fingerprint(hashes.SHA256()))}
    now = int(time.time())
    payload: dict[str, Any] = {
        "aud": audience,
        "iss": client.client_id,
        "sub": client.client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in (claims or {}).items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    key = key_pem or client.private_key_pem
    assert key is not None
    return jwt.encode(payload, key, algorithm=alg, headers=thumbprint)


def assertion_form(
    client: ClientRegistration, assertion: str, scope: str = "api://orders/.default"
) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
    }


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def validate(idp: EntraEmulator, token: str, audience: str) -> Any:
    config = idp.config(audiences=[audience])
    async with (
        httpx.AsyncClient(verify=NO_TLS) as http,
        TokenValidator(config, http_client=http) as validator,
    ):
        return await validator.validate(token)


def assert_entra_error(response: httpx.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["error"], body["error_codes"]) == (error, [code])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    lines = body["error_description"].split("\r\n")
    assert lines[0].startswith(f"AADSTS{code}: ")
    assert lines[1:] == [
        f"Trace ID: {body['trace_id']}",
        f"Correlation ID: {body['correlation_id']}",
        f"Timestamp: {body['timestamp']}",
    ]
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])
    assert body["error_uri"].endswith(f"/error?code={code}")


# -- success ------------------------------------------------------------------------------------


async def test_v2_secret_gives_a_v2_app_token(tenant: Tenant) -> None:
    idp = tenant.idp
    response = post(idp.token_endpoint(), secret_form(tenant.billing))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == (
        "Bearer",
        3599,
        3599,
    )
    assert "no-store" in response.headers["cache-control"]
    claims = claims_of(body["access_token"])
    assert claims["ver"] == "2.0"
    assert claims["aud"] == tenant.orders.client_id
    assert (claims["azp"], claims["azpacr"]) == (tenant.billing.client_id, "1")
    assert claims["roles"] == ["Orders.Read", "Orders.Write"]
    assert claims["exp"] - claims["iat"] == 3599
    assert "idtyp" not in claims
    assert "appid" not in claims
    assert jwt.get_unverified_header(body["access_token"])["kid"] == idp.current_key.kid
    principal = await validate(idp, body["access_token"], tenant.orders.client_id)
    assert principal.client_id == tenant.billing.client_id
    assert principal.roles == {"Orders.Read", "Orders.Write"}


async def test_basic_auth_and_scope_by_client_id(tenant: Tenant) -> None:
    client = tenant.billing
    assert client.secret is not None
    assert "~" in client.secret
    basic = base64.b64encode(f"{client.client_id}:{quote(client.secret, safe='')}".encode())
    form = {"grant_type": "client_credentials", "scope": f"{tenant.orders.client_id}/.default"}
    response = post(
        tenant.idp.token_endpoint(), form, headers={"Authorization": f"Basic {basic.decode()}"}
    )
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert (claims["aud"], claims["azp"]) == (tenant.orders.client_id, client.client_id)


@pytest.mark.parametrize("alg", ["PS256", "RS256"])
async def test_certificate_assertion(tenant: Tenant, alg: str) -> None:
    idp = tenant.idp
    endpoint = idp.token_endpoint()
    response = post(
        endpoint, assertion_form(tenant.billing, make_assertion(tenant.billing, endpoint, alg=alg))
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert claims_of(token)["azpacr"] == "2"
    await validate(idp, token, tenant.orders.client_id)


async def test_v1_endpoint_takes_resource_and_answers_strings(tenant: Tenant) -> None:
    idp = tenant.idp
    form = secret_form(tenant.billing)
    del form["scope"]
    response = post(idp.token_endpoint(version="1.0"), {**form, "resource": "api://orders"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    }
    assert (body["expires_in"], body["ext_expires_in"], body["resource"]) == (
        "3599",
        "3599",
        "api://orders",
    )
    claims = claims_of(body["access_token"])
    assert (body["expires_on"], body["not_before"]) == (str(claims["exp"]), str(claims["nbf"]))
    # The token's version is the API's choice, not the endpoint's.
    assert (claims["ver"], claims["aud"]) == ("2.0", tenant.orders.client_id)


@pytest.mark.parametrize("by", ["app_id_uri", "client_id"])
async def test_v1_api_gets_v1_tokens_for_the_resource_as_asked(tenant: Tenant, by: str) -> None:
    idp = tenant.idp
    resource = "api://legacy" if by == "app_id_uri" else tenant.legacy.client_id
    response = post(idp.token_endpoint(), secret_form(tenant.billing, f"{resource}/.default"))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = claims_of(token)
    assert (claims["ver"], claims["aud"]) == ("1.0", resource)
    assert (claims["appid"], claims["appidacr"]) == (tenant.billing.client_id, "1")
    assert claims["iss"] == f"https://sts.windows.net/{idp.tenant_id}/"
    assert claims["roles"] == ["Legacy.Read"]
    assert "azp" not in claims
    await validate(idp, token, resource)


def test_no_roles_granted_means_no_roles_claim(tenant: Tenant) -> None:
    response = post(tenant.idp.token_endpoint(), secret_form(tenant.bare))
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert "roles" not in claims
    assert claims["azp"] == tenant.bare.client_id


def test_metadata_points_at_the_token_endpoints(tenant: Tenant) -> None:
    idp = tenant.idp
    for version in ("1.0", "2.0"):
        metadata = httpx.get(idp.metadata_url(version=version), verify=NO_TLS).json()
        assert metadata["token_endpoint"] == idp.token_endpoint(version=version)


def test_only_post(tenant: Tenant) -> None:
    assert httpx.get(tenant.idp.token_endpoint(), verify=NO_TLS).status_code == 405


# -- refusals -----------------------------------------------------------------------------------

GRANT = {"grant_type": "client_credentials"}


def request_cases(t: Tenant) -> list[tuple[str, str, dict[str, str], int, str, int]]:
    """(name, url, form, status, error, code) for refusals that need no assertion."""
    idp, good = t.idp, secret_form(t.billing)
    v2, v1 = idp.token_endpoint(), idp.token_endpoint(version="1.0")
    no_scope = {k: v for k, v in good.items() if k != "scope"}
    no_secret = {k: v for k, v in good.items() if k != "client_secret"}
    return [
        (
            "other tenant",
            idp.token_endpoint(tenant=str(uuid.uuid4())),
            good,
            400,
            "invalid_request",
            90002,
        ),
        (
            "bad tenant",
            idp.token_endpoint(tenant="not-a-tenant"),
            good,
            400,
            "invalid_request",
            90002,
        ),
        ("common", idp.token_endpoint(tenant="common"), good, 400, "invalid_request", 9001023),
        (
            "consumers",
            idp.token_endpoint(tenant="consumers"),
            good,
            400,
            "invalid_request",
            9001023,
        ),
        (
            "organizations",
            idp.token_endpoint(tenant="organizations"),
            good,
            400,
            "invalid_request",
            9001023,
        ),
        (
            "no grant",
            v2,
            {k: v for k, v in good.items() if k != "grant_type"},
            400,
            "invalid_request",
            900144,
        ),
        (
            "password grant",
            v2,
            {**good, "grant_type": "password"},
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "no client id",
            v2,
            {k: v for k, v in good.items() if k != "client_id"},
            400,
            "invalid_request",
            900144,
        ),
        ("no scope", v2, no_scope, 400, "invalid_request", 900144),
        (
            "no .default",
            v2,
            {**good, "scope": "api://orders/Orders.Read"},
            400,
            "invalid_scope",
            1002012,
        ),
        (
            "two resources",
            v2,
            {**good, "scope": "api://orders/.default api://legacy/.default"},
            400,
            "invalid_scope",
            700022,
        ),
        ("empty resource", v2, {**good, "scope": "/.default"}, 400, "invalid_scope", 70011),
        (
            "resource on v2",
            v2,
            {**good, "resource": "api://orders"},
            400,
            "invalid_request",
            901002,
        ),
        ("no resource on v1", v1, no_scope, 400, "invalid_request", 900144),
        (
            "unknown client",
            v2,
            {**good, "client_id": str(uuid.uuid4())},
            400,
            "unauthorized_client",
            700016,
        ),
        ("no credential", v2, no_secret, 401, "invalid_client", 7000218),
        ("wrong secret", v2, {**good, "client_secret": "not-it"}, 401, "invalid_client", 7000215),
        (
            "secret and assertion",
            v2,
            {**good, "client_assertion": "x", "client_assertion_type": ASSERTION_TYPE},
            400,
            "invalid_request",
            900144,
        ),
        (
            "unknown resource",
            v2,
            {**good, "scope": "api://nobody/.default"},
            400,
            "invalid_resource",
            500011,
        ),
        (
            "unknown resource v1",
            v1,
            {**no_scope, "resource": "api://nobody"},
            400,
            "invalid_resource",
            500011,
        ),
    ]


def test_request_refusals_are_shaped_like_entra(tenant: Tenant) -> None:
    cases = request_cases(tenant)
    assert len({case[0] for case in cases}) == len(cases)
    for name, url, form, status, error, code in cases:
        response = post(url, form)
        try:
            assert_entra_error(response, status, error, code)
        except AssertionError as exc:
            raise AssertionError(f"case {name!r}: {exc}") from exc


def test_refusal_texts_name_the_problem(tenant: Tenant) -> None:
    idp, good = tenant.idp, secret_form(tenant.billing)
    wrong = post(idp.token_endpoint(), {**good, "client_secret": "nope"}).json()
    assert "Invalid client secret provided" in wrong["error_description"]
    assert "nope" not in wrong["error_description"]
    common = post(idp.token_endpoint(tenant="common"), good).json()
    assert "not supported over the /common or /consumers endpoints" in common["error_description"]
    scope = post(idp.token_endpoint(), {**good, "scope": "api://orders/Orders.Read"}).json()
    assert "/.default suffixed to the resource identifier" in scope["error_description"]


def other_certificate() -> tuple[bytes, bytes]:
    return generate_certificate("someone-else")


@pytest.mark.parametrize(
    ("case", "status", "error", "code"),
    [
        ("garbage", 401, "invalid_client", 50027),
        ("hs256", 401, "invalid_client", 50027),
        ("ps256 with only x5t", 401, "invalid_client", 50027),
        ("unregistered certificate", 401, "invalid_client", 700027),
        ("signed by another key", 401, "invalid_client", 700027),
        ("audience is the v1 endpoint", 401, "invalid_client", 50027),
        ("issued for another client", 401, "invalid_client", 700021),
        ("no jti", 401, "invalid_client", 50027),
        ("no exp", 401, "invalid_client", 50027),
        ("expired", 401, "invalid_client", 700024),
        ("not yet valid", 401, "invalid_client", 700024),
        ("lives an hour", 401, "invalid_client", 700024),
        ("wrong assertion type", 401, "invalid_client", 50027),
        ("no assertion type", 400, "invalid_request", 900144),
    ],
)
def test_assertion_refusals(tenant: Tenant, case: str, status: int, error: str, code: int) -> None:
    client, endpoint = tenant.billing, tenant.idp.token_endpoint()
    now = int(time.time())
    bent: dict[str, dict[str, Any]] = {
        "no jti": {"claims": {"jti": None}},
        "no exp": {"claims": {"exp": None}},
        "expired": {"claims": {"nbf": now - 1000, "iat": now - 1000, "exp": now - 400}},
        "not yet valid": {"claims": {"nbf": now + 400, "exp": now + 900}},
        "lives an hour": {"claims": {"exp": now + 3600}},
        "issued for another client": {
            "claims": {"iss": tenant.bare.client_id, "sub": tenant.bare.client_id}
        },
    }
    if case == "garbage":
        assertion = "not.a-jwt"
    elif case == "hs256":
        assertion = jwt.encode({"iss": client.client_id}, "k" * 32, algorithm="HS256")
    elif case == "unregistered certificate":
        cert_pem, key_pem = other_certificate()
        assertion = make_assertion(client, endpoint, key_pem=key_pem, cert_pem=cert_pem)
    elif case == "signed by another key":
        _, key_pem = other_certificate()
        assertion = make_assertion(client, endpoint, key_pem=key_pem)
    elif case == "audience is the v1 endpoint":
        assertion = make_assertion(client, tenant.idp.token_endpoint(version="1.0"))
    elif case == "ps256 with only x5t":
        assertion = make_assertion(client, endpoint)
        header, payload, signature = assertion.split(".")
        decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
        decoded.pop("x5t#S256")
        decoded["x5t"] = "AAAA"
        assertion = ".".join((b64url(json.dumps(decoded).encode()), payload, signature))
    else:
        assertion = make_assertion(client, endpoint, **bent.get(case, {}))
    form = assertion_form(client, assertion)
    if case == "wrong assertion type":
        form["client_assertion_type"] = "urn:example:bearer"
    if case == "no assertion type":
        del form["client_assertion_type"]
    assert_entra_error(post(endpoint, form), status, error, code)


# -- faults, lifetime, counting ----------------------------------------------------------------


def test_fail_token_requests_then_recover(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    idp.register_api(app_id_uri="api://orders")
    client = idp.register_client(name="daemon")
    idp.fail_token_requests(status=429, count=2, retry_after=1)
    with httpx.Client(verify=NO_TLS) as http:
        for _ in range(2):
            response = http.post(idp.token_endpoint(), data=secret_form(client))
            assert response.headers["retry-after"] == "1"
            assert_entra_error(response, 429, "temporarily_unavailable", 90055)
        assert http.post(idp.token_endpoint(), data=secret_form(client)).status_code == 200
        assert idp.token_request_count() == 3

        idp.fail_token_requests(status=503, count=None)
        for _ in range(3):
            response = http.post(idp.token_endpoint(version="1.0"), data={})
            assert_entra_error(response, 503, "temporarily_unavailable", 90033)
            assert "retry-after" not in response.headers
        idp.fail_token_requests(count=0)
        assert http.post(idp.token_endpoint(), data=secret_form(client)).status_code == 200

        idp.fail_token_requests(status=200, body="<html>proxy login</html>")
        response = http.post(idp.token_endpoint(), data=secret_form(client))
        assert (response.status_code, response.text) == (200, "<html>proxy login</html>")
        idp.fail_token_requests(status=502)
        assert http.post(idp.token_endpoint(), data={}).json()["error"] == "server_error"
    assert idp.token_request_count() == 9
    assert idp.fetch_count("metadata") == 0, "token requests are not document fetches"
    idp.reset_counts()
    assert idp.token_request_count() == 0


def test_fault_arguments_are_checked(entra_emulator: EntraEmulator) -> None:
    for kwargs in ({"status": 99}, {"count": -1}, {"count": True}, {"retry_after": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            entra_emulator.fail_token_requests(**kwargs)


def test_token_lifetime_is_configurable(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    idp.register_api(app_id_uri="api://orders")
    client = idp.register_client(name="daemon")
    idp.token_lifetime = 120
    body = post(idp.token_endpoint(), secret_form(client)).json()
    claims = claims_of(body["access_token"])
    assert (body["expires_in"], claims["exp"] - claims["iat"]) == (120, 120)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="token_lifetime"):
            idp.token_lifetime = bad  # type: ignore[assignment]
    assert idp.token_lifetime == 120


def test_delay_holds_token_requests_too(entra_emulator: EntraEmulator) -> None:
    entra_emulator.delay = 0.2
    started = time.perf_counter()
    assert post(entra_emulator.token_endpoint(), {}).status_code == 400
    assert time.perf_counter() - started >= 0.2


# -- registrations -----------------------------------------------------------------------------


def test_registrations_hide_secrets_and_keys(tenant: Tenant) -> None:
    client = tenant.billing
    assert client.secret is not None
    assert client.private_key_pem is not None
    assert re.fullmatch(r"[\w-]{3}8Q~[\w-]{34}", client.secret)
    text = repr(client) + str(client)
    assert client.secret not in text
    assert "PRIVATE" not in text
    assert client.client_id in text
    assert client.certificate_thumbprint is not None
    assert re.fullmatch(r"[0-9A-F]{40}", client.certificate_thumbprint)
    assert tenant.bare.certificate_pem is None
    assert tenant.bare.certificate_thumbprint is None


def test_registration_mistakes_are_refused(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    api = idp.register_api(app_id_uri="api://orders", roles=["Orders.Read"])
    with pytest.raises(ValueError, match="exists"):
        idp.register_api(app_id_uri="API://Orders/")
    with pytest.raises(ValueError, match="exists"):
        idp.register_api(app_id_uri="api://other", client_id=api.client_id)
    with pytest.raises(ValueError, match="access_token_version"):
        idp.register_api(app_id_uri="api://x", access_token_version="3.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="register it first"):
        idp.register_client(name="c", roles={"api://missing": ["R"]})
    with pytest.raises(ValueError, match="defines no app roles"):
        idp.register_client(name="c", roles={"api://orders": ["Orders.Delete"]})
    with pytest.raises(ValueError, match="GUID"):
        idp.register_client(name="c", client_id="billing")
    with pytest.raises(ValueError, match="not the string"):
        idp.register_client(name="c", roles={"api://orders": "Orders.Read"})
    fixed = idp.register_client(name="c", secret="my-own-secret", client_id=api.client_id.upper())
    assert (fixed.client_id, fixed.secret) == (api.client_id, "my-own-secret")
    with pytest.raises(ValueError, match="exists"):
        idp.register_client(name="again", client_id=fixed.client_id)


def test_load_registrations_from_a_file(entra_emulator: EntraEmulator, tmp_path: Path) -> None:
    idp = entra_emulator
    cert_pem, _ = generate_certificate("uploaded")
    document = {
        "apis": [
            {"app_id_uri": "api://orders", "roles": ["Orders.Read"]},
            {"app_id_uri": "api://legacy", "access_token_version": "1.0"},
        ],
        "clients": [
            {
                "name": "billing",
                "roles": {"api://orders": ["Orders.Read"]},
                "secrets": ["first-secret", "second-secret"],
                "certificates": [cert_pem.decode()],
                "generate_certificate": True,
            }
        ],
    }
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = idp.load_registrations(path)
    assert [api.app_id_uri for api in loaded.apis] == ["api://orders", "api://legacy"]
    assert loaded.apis[1].access_token_version == "1.0"
    billing = loaded.client("billing")
    assert billing.secrets == ("first-secret", "second-secret")
    assert len(billing.certificates) == 2
    assert billing.private_key_pem is not None
    with pytest.raises(KeyError):
        loaded.client("nobody")
    for secret in billing.secrets:
        response = post(idp.token_endpoint(), {**secret_form(billing), "client_secret": secret})
        assert claims_of(response.json()["access_token"])["roles"] == ["Orders.Read"]

    with pytest.raises(ValueError, match="unknown keys"):
        idp.load_registrations({"clients": [{"name": "x", "role": {}}]})
    with pytest.raises(ValueError, match="'clients' and/or 'users'"):
        idp.load_registrations({"applications": []})
    with pytest.raises(ValueError, match="must be a list"):
        idp.load_registrations({"apis": {}})
