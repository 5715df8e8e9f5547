"""The Entra ID emulator, exercised over real loopback HTTP and checked against real documents."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import entra_guard.testing
from entra_guard.config import EntraConfig
from entra_guard.errors import InvalidToken
from entra_guard.testing import (
    DEFAULT_AUDIENCE,
    DEFAULT_CLIENT_ID,
    REMOVE,
    EmulatorKey,
    EntraEmulator,
)
from entra_guard.validation import TokenValidator
from tests.conftest import REAL_FIXTURES, fixture_missing
from tests.processes import CLEAN_ENV, Output, example_api, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest_plugins = ["entra_guard.testing.pytest_plugin"]

Version: TypeAlias = Literal["1.0", "2.0"]
MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: A tenant the shared emulator is told about, besides its own.
OTHER_TENANT = "0b7c3e1a-2f4d-4a6b-8c9d-1e2f3a4b5c6d"
PLACEHOLDER = "{tenantid}"

V2_APP = {"aud", "iss", "iat", "nbf", "exp", "aio", "azp", "azpacr", "idp", "oid", "rh", "sub"}
V2_APP |= {"tid", "uti", "ver"}
V2_USER = {"aud", "iss", "iat", "nbf", "exp", "aio", "azp", "azpacr", "name", "oid", "rh", "scp"}
V2_USER |= {"preferred_username", "sub", "tid", "uti", "ver"}
V1_APP = {"aud", "iss", "iat", "nbf", "exp", "aio", "appid", "appidacr", "idp", "oid", "rh", "sub"}
V1_APP |= {"tid", "uti", "ver"}
V1_USER = {"aud", "iss", "iat", "nbf", "exp", "aio", "amr", "appid", "appidacr", "family_name"}
V1_USER |= {"given_name", "ipaddr", "name", "oid", "rh", "scp", "sub", "tid", "unique_name"}
V1_USER |= {"upn", "uti", "ver"}


def real_document(name: str) -> dict[str, Any]:
    path = REAL_FIXTURES / name
    if not path.is_file():
        fixture_missing(f"real Entra fixture {path} is not available in this checkout")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_int(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")


# Plain-http requests need no CA store; loading certifi's for every request would double the
# file's runtime.
NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def get(url: str) -> httpx.Response:
    return httpx.get(url, verify=NO_TLS)


def get_json(url: str) -> Any:
    response = get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def verify(idp: EntraEmulator, token: str, *, version: Version, tenant: str | None = None) -> Any:
    """Validate ``token`` the way a client would: metadata, then JWKS, then PyJWT."""
    metadata = get_json(idp.metadata_url(version=version, tenant=tenant))
    jwks = get_json(metadata["jwks_uri"])
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = (key for key in jwks["keys"] if key["kid"] == kid)
    tid = jwt.decode(token, options={"verify_signature": False})["tid"]
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=DEFAULT_AUDIENCE,
        issuer=metadata["issuer"].replace(PLACEHOLDER, tid),
        options={"require": ["exp", "iat", "nbf", "iss", "aud"]},
    )


@pytest.fixture(scope="module")
def shared() -> Iterator[EntraEmulator]:
    """One emulator for the tests that only read: key generation and shutdown cost time."""
    with EntraEmulator() as idp:
        idp.add_tenant(OTHER_TENANT)
        yield idp


# -- documents ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("tenant_kind", ["guid", "common"])
def test_metadata_has_real_fields_and_local_urls(
    shared: EntraEmulator, version: Version, tenant_kind: str
) -> None:
    real = real_document(f"metadata-common-v{version[0]}.json")
    segment = shared.tenant_id if tenant_kind == "guid" else "common"
    metadata = get_json(shared.metadata_url(version=version, tenant=segment))

    assert set(metadata) == set(real)
    issuer_tenant = shared.tenant_id if tenant_kind == "guid" else PLACEHOLDER
    if version == "2.0":
        assert metadata["issuer"] == f"{shared.instance}/{issuer_tenant}/v2.0"
        assert metadata["jwks_uri"] == f"{shared.instance}/{segment}/discovery/v2.0/keys"
        assert metadata["token_endpoint"] == f"{shared.instance}/{segment}/oauth2/v2.0/token"
    else:
        assert metadata["issuer"] == f"https://sts.windows.net/{issuer_tenant}/"
        assert metadata["jwks_uri"] == f"{shared.instance}/{segment}/discovery/keys"
        assert metadata["token_endpoint"] == f"{shared.instance}/{segment}/oauth2/token"
    endpoints = {name: value for name, value in metadata.items() if name.endswith("_endpoint")}
    assert all(url.startswith(f"{shared.instance}/") for url in endpoints.values()), endpoints
    assert get_json(metadata["jwks_uri"])["keys"]


@pytest.mark.parametrize(
    ("segment", "version", "expected"),
    [
        ("organizations", "2.0", "{instance}/{{tenantid}}/v2.0"),
        ("organizations", "1.0", "https://sts.windows.net/{{tenantid}}/"),
        ("consumers", "2.0", "{instance}/" + MSA_TENANT + "/v2.0"),
        ("consumers", "1.0", "https://sts.windows.net/" + MSA_TENANT + "/"),
        ("COMMON", "2.0", "{instance}/{{tenantid}}/v2.0"),
        (OTHER_TENANT.upper(), "2.0", "{instance}/" + OTHER_TENANT + "/v2.0"),
    ],
)
def test_issuer_per_tenant_keyword(
    shared: EntraEmulator, segment: str, version: Version, expected: str
) -> None:
    metadata = get_json(shared.metadata_url(version=version, tenant=segment))
    assert metadata["issuer"] == expected.format(instance=shared.instance)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("tenant_kind", ["guid", "common"])
def test_jwks_keys_are_consistent_and_shaped_like_entra(
    shared: EntraEmulator, version: Version, tenant_kind: str
) -> None:
    real = real_document(f"jwks-common-v{version[0]}.json")
    segment = shared.tenant_id if tenant_kind == "guid" else "common"
    metadata = get_json(shared.metadata_url(version=version, tenant=segment))
    (jwk,) = get_json(metadata["jwks_uri"])["keys"]

    assert set(jwk) == set(real["keys"][0])
    assert (jwk["kty"], jwk["use"]) == ("RSA", "sig")
    if version == "2.0":
        issuer_tenant = shared.tenant_id if tenant_kind == "guid" else PLACEHOLDER
        assert jwk["issuer"] == f"{shared.instance}/{issuer_tenant}/v2.0"
    else:
        assert "issuer" not in jwk
    der = base64.b64decode(jwk["x5c"][0])
    thumbprint = (
        base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest())
        .rstrip(b"=")
        .decode()
    )
    assert jwk["kid"] == jwk["x5t"] == thumbprint == shared.current_key.kid
    public_key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    numbers = public_key.public_numbers()
    assert (b64url_int(jwk["n"]), b64url_int(jwk["e"])) == (numbers.n, numbers.e)
    assert numbers.n.bit_length() == 2048


def test_invalid_tenant_is_aadsts90002(shared: EntraEmulator) -> None:
    for url in (
        f"{shared.instance}/contoso.example/v2.0/.well-known/openid-configuration",
        f"{shared.instance}/not-a-tenant/discovery/keys",
    ):
        response = get(url)
        assert response.status_code == 400
        body = response.json()
        assert {"error", "error_description", "error_codes", "timestamp"} <= set(body)
        assert {"trace_id", "correlation_id"} <= set(body)
        assert body["error"] == "invalid_tenant"
        assert body["error_codes"] == [90002]
        tenant = url.split("/")[3]
        assert body["error_description"].startswith(f"AADSTS90002: Tenant '{tenant}' not found.")
        assert body["trace_id"] in body["error_description"]


def assert_tenant_not_found(response: httpx.Response, segment: str) -> None:
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["error_codes"]) == ("invalid_tenant", [90002])
    assert body["error_description"].startswith(f"AADSTS90002: Tenant '{segment}' not found.")


def document_urls(idp: EntraEmulator, tenant: str) -> list[str]:
    return [
        url
        for version in ("1.0", "2.0")
        for url in (
            idp.metadata_url(version=version, tenant=tenant),
            idp.jwks_url(version=version, tenant=tenant),
        )
    ]


def test_a_tenant_the_emulator_was_not_told_about_does_not_exist(shared: EntraEmulator) -> None:
    unknown = "3c9d2e1f-8a7b-4c6d-9e5f-0a1b2c3d4e5f"
    for url in document_urls(shared, unknown):
        assert_tenant_not_found(get(url), unknown)
    for url in document_urls(shared, unknown.upper()):  # the segment is echoed as sent
        assert_tenant_not_found(get(url), unknown.upper())
    known = [shared.tenant_id, OTHER_TENANT, "organizations", "common", "consumers", MSA_TENANT]
    for tenant in known:
        for url in document_urls(shared, tenant):
            assert get(url).status_code == 200, url
    assert shared.tenants == (shared.tenant_id, OTHER_TENANT)


def test_tenants_are_added_or_all_let_exist() -> None:
    with EntraEmulator() as idp:
        late = "3c9d2e1f-8a7b-4c6d-9e5f-0a1b2c3d4e5f"
        assert get(idp.metadata_url(tenant=late)).status_code == 400
        assert idp.add_tenant(late.upper()) == late
        assert get(idp.metadata_url(tenant=late)).status_code == 200
        made = idp.add_tenant()
        assert get_json(idp.metadata_url(tenant=made))["issuer"].endswith(f"/{made}/v2.0")
        assert idp.tenants == (idp.tenant_id, *sorted([late, made]))

        stranger = "5f2a8b1c-0d3e-4f5a-9b8c-7d6e5f4a3b2c"
        assert not idp.any_tenant
        idp.any_tenant = True
        assert get(idp.metadata_url(tenant=stranger)).status_code == 200
        assert get(idp.metadata_url(tenant="contoso.example")).status_code == 400  # no GUID
        idp.any_tenant = False
        assert get(idp.metadata_url(tenant=stranger)).status_code == 400

        replayed = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
        idp.serve_documents(
            tenant=replayed, version="2.0", metadata={"issuer": "x"}, jwks={"keys": []}
        )
        assert get_json(idp.metadata_url(tenant=replayed))["issuer"] == "x"
        assert replayed in idp.tenants
    with EntraEmulator(any_tenant=True) as idp:
        assert get(idp.metadata_url(tenant=stranger)).status_code == 200
    with pytest.raises(ValueError, match="GUID"):
        idp.add_tenant("contoso.onmicrosoft.com")
    with pytest.raises(ValueError, match="True or False"):
        idp.any_tenant = "yes"  # type: ignore[assignment]


async def test_keys_of_an_added_tenant_validate_its_tokens() -> None:
    with EntraEmulator() as idp:
        other = idp.add_tenant()
        token = idp.issue_token(tenant_id=other, roles=["r"])
        async with TokenValidator(idp.config(tenant_id=other)) as validator:
            assert (await validator.validate(token)).tenant_id == other


def test_the_token_endpoint_of_another_tenant(shared: EntraEmulator) -> None:
    api = shared.register_api(app_id_uri="api://tenants-test", roles=["r"])
    client = shared.register_client(name="t", roles={api.app_id_uri or "": ["r"]}, secret=True)
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.secret or "",
        "scope": "api://tenants-test/.default",
    }
    home = httpx.post(shared.token_endpoint(), data=form, verify=NO_TLS)
    assert home.status_code == 200, home.text
    unknown = "3c9d2e1f-8a7b-4c6d-9e5f-0a1b2c3d4e5f"
    refused = httpx.post(shared.token_endpoint(tenant=unknown), data=form, verify=NO_TLS)
    assert (refused.status_code, refused.json()["error_codes"]) == (400, [90002])
    # The added tenant exists, but the app is registered in the emulator's own tenant only.
    elsewhere = httpx.post(shared.token_endpoint(tenant=OTHER_TENANT), data=form, verify=NO_TLS)
    assert (elsewhere.status_code, elsewhere.json()["error_codes"]) == (400, [700016])
    assert f"directory '{OTHER_TENANT}'" in elsewhere.json()["error_description"]


# -- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "app_only", "names"),
    [
        ("2.0", True, V2_APP),
        ("2.0", False, V2_USER),
        ("1.0", True, V1_APP),
        ("1.0", False, V1_USER),
    ],
)
def test_token_shapes_verify_against_served_keys(
    shared: EntraEmulator, version: Version, app_only: bool, names: set[str]
) -> None:
    token = shared.issue_token(version=version, app_only=app_only)
    claims = verify(shared, token, version=version)

    assert set(claims) == names
    header = jwt.get_unverified_header(token)
    expected_header = {"typ": "JWT", "alg": "RS256", "kid": shared.current_key.kid}
    if version == "1.0":
        expected_header["x5t"] = shared.current_key.kid
    assert header == expected_header
    assert claims["ver"] == version
    assert claims["tid"] == shared.tenant_id
    assert claims["iat"] == claims["nbf"]
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 5
    assert "roles" not in claims
    client_claim, acr_claim = ("azp", "azpacr") if version == "2.0" else ("appid", "appidacr")
    assert claims[client_claim] == DEFAULT_CLIENT_ID
    assert claims[acr_claim] == ("1" if app_only else "0")
    if app_only:
        assert claims["sub"] == claims["oid"]
        v1_issuer = f"https://sts.windows.net/{shared.tenant_id}/"
        assert claims["idp"] == (claims["iss"] if version == "2.0" else v1_issuer)
    else:
        assert claims["scp"] == "access_as_user"
        assert claims["sub"] != claims["oid"]
    if version == "1.0" and not app_only:
        assert claims["amr"] == ["pwd"]
        assert claims["upn"] == claims["unique_name"]


def test_roles_scopes_and_identities(shared: EntraEmulator) -> None:
    app = verify(shared, shared.issue_token(roles=["Data.Read", "Data.Write"]), version="2.0")
    assert app["roles"] == ["Data.Read", "Data.Write"]
    again = verify(shared, shared.issue_token(), version="2.0")
    assert again["oid"] == app["oid"], "one client is one service principal"
    assert again["uti"] != app["uti"]

    user = shared.issue_token(app_only=False, scopes=["Files.Read", "User.Read"], roles=["Admin"])
    claims = verify(shared, user, version="2.0")
    assert claims["scp"] == "Files.Read User.Read"
    assert claims["roles"] == ["Admin"]


def test_tokens_for_other_tenants(shared: EntraEmulator) -> None:
    other = OTHER_TENANT
    claims = verify(
        shared, shared.issue_token(tenant_id=other.upper()), version="2.0", tenant=other
    )
    assert claims["tid"] == other
    assert claims["iss"] == f"{shared.instance}/{other}/v2.0"

    msa = shared.issue_token(tenant_id="consumers", version="1.0")
    claims = verify(shared, msa, version="1.0", tenant="consumers")
    assert claims["iss"] == f"https://sts.windows.net/{MSA_TENANT}/"


def test_clock_and_lifetime(shared: EntraEmulator) -> None:
    token = shared.issue_token(now=1_700_000_000.9, lifetime=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1_700_000_000,) * 2 + (1_700_000_060,)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(shared, token, version="2.0")


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_now_in_the_past_mints_a_token_refused_as_expired(
    shared: EntraEmulator, version: Version
) -> None:
    now = 1_800_000_000.0
    token = shared.issue_token(version=version, roles=["r"], now=now - 7200)  # expired 1 h ago
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["nbf"], claims["exp"]) == (now - 7200, now - 3600)
    async with TokenValidator(shared.config(), clock=lambda: now) as validator:
        with pytest.raises(InvalidToken) as refused:
            await validator.validate(token)
        assert refused.value.reason == "token_expired"
        # The same token is valid at a moment inside its lifetime: only the clock refused it.
        assert (await validator.validate(token, now=now - 5000)).tenant_id == shared.tenant_id


@pytest.mark.parametrize(
    ("lifetime", "message"),
    [
        (-60, "at least 1 second, got -60: for an expired token give now= in the past"),
        (0, "at least 1 second"),
        (0.5, "at least 1 second"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "a number of seconds"),
    ],
)
def test_lifetimes_that_put_exp_at_or_before_nbf_are_refused(
    shared: EntraEmulator, lifetime: float, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^lifetime must be .*{re.escape(message)}"):
        shared.issue_token(lifetime=lifetime)


@pytest.mark.parametrize("now", [float("nan"), float("-inf"), "1700000000"])
def test_now_must_be_unix_seconds(shared: EntraEmulator, now: Any) -> None:
    with pytest.raises(ValueError, match=r"^now must be"):
        shared.issue_token(now=now)


def test_overrides_forge_anything_and_remove(shared: EntraEmulator) -> None:
    huge = "x" * 100_000
    token = shared.issue_token(
        claims={
            "iss": 42,
            "exp": REMOVE,
            "roles": "not-a-list",
            "huge": huge,
            "nested": {"a": [1]},
        },
        headers={"typ": REMOVE, "kid": 7, "extra": True},
    )
    header_segment, payload_segment, _ = token.split(".")
    header = json.loads(b64url_decode(header_segment))
    claims = json.loads(b64url_decode(payload_segment))
    assert header == {"alg": "RS256", "kid": 7, "extra": True}
    assert claims["iss"] == 42
    assert "exp" not in claims
    assert claims["roles"] == "not-a-list"
    assert claims["huge"] == huge
    assert claims["nested"] == {"a": [1]}
    # Still a genuine signature by the published key: only the content is hostile.
    signing_input, _, signature = token.rpartition(".")
    public_key = shared.current_key.private_key.public_key()
    public_key.verify(
        b64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert repr(REMOVE) == "REMOVE"


def test_foreign_key_none_and_hmac_forgeries(shared: EntraEmulator) -> None:
    forged_key = EntraEmulator.generate_key()
    assert forged_key not in shared.published_keys
    token = shared.issue_token(version="1.0", key=forged_key)
    header = jwt.get_unverified_header(token)
    assert header["kid"] == header["x5t"] == forged_key.kid
    public_key = forged_key.private_key.public_key()
    assert jwt.decode(token, public_key, algorithms=["RS256"], options={"verify_aud": False})
    with pytest.raises(ValueError, match="not enough"):
        verify(shared, token, version="1.0")  # the kid is not in the served JWKS

    unsigned = shared.issue_token(algorithm="none")
    assert unsigned.endswith(".")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"

    confused = shared.issue_token(algorithm="HS256")
    signing_input, _, signature = confused.rpartition(".")
    expected = hmac.new(shared.current_key.public_pem(), signing_input.encode(), hashlib.sha256)
    assert b64url_decode(signature) == expected.digest()

    pss = shared.issue_token(algorithm="PS256")
    assert jwt.api_jws.PyJWS().decode(pss, shared.current_key.private_key.public_key(), ["PS256"])


def test_issue_token_refuses_likely_mistakes(shared: EntraEmulator) -> None:
    with pytest.raises(ValueError, match="roles"):
        shared.issue_token(roles="Admin")
    with pytest.raises(ValueError, match="app-only"):
        shared.issue_token(scopes=["User.Read"])
    with pytest.raises(ValueError, match="one tenant"):
        shared.issue_token(tenant_id="common")
    with pytest.raises(ValueError, match="version"):
        shared.issue_token(version="3.0")  # type: ignore[arg-type]


# -- keys --------------------------------------------------------------------------------------


def jwks_kids(idp: EntraEmulator, version: Version = "2.0") -> list[str]:
    return [key["kid"] for key in get_json(idp.jwks_url(version=version))["keys"]]


def test_rotate_add_and_remove_keys(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    first = idp.current_key
    assert jwks_kids(idp) == [first.kid]

    spare = idp.add_key()
    assert jwks_kids(idp) == jwks_kids(idp, "1.0") == [first.kid, spare.kid]
    assert idp.current_key == first, "an added key is published, not used"

    second = idp.rotate_keys()
    assert idp.current_key == second
    assert idp.published_keys == (first, spare, second)
    assert jwt.get_unverified_header(idp.issue_token())["kid"] == second.kid

    third = idp.rotate_keys(keep_previous=False)
    assert jwks_kids(idp) == [first.kid, spare.kid, third.kid]

    idp.remove_key(first.kid)
    assert jwks_kids(idp) == [spare.kid, third.kid]
    with pytest.raises(KeyError):
        idp.remove_key(first.kid)
    assert verify(idp, idp.issue_token(), version="2.0")["tid"] == idp.tenant_id


def test_key_repr_hides_key_material(shared: EntraEmulator) -> None:
    key = shared.current_key
    text = repr(key)
    assert text == f"EmulatorKey(kid={key.kid!r})"
    modulus = key.public_jwk()["n"]
    for secret in (modulus, str(key.private_key.private_numbers().d), "PRIVATE", "BEGIN"):
        assert secret not in text
    assert key.private_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(key.private_pem(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == key.private_key.private_numbers()


def test_public_jwk_issuer_member() -> None:
    key = EmulatorKey.generate()
    assert "issuer" not in key.public_jwk()
    assert key.public_jwk("https://example.test/x/v2.0")["issuer"] == "https://example.test/x/v2.0"


# -- replay, observation, faults ---------------------------------------------------------------


def test_serve_documents_replays_real_entra(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    metadata = real_document("metadata-common-v2.json")
    jwks = real_document("jwks-common-v2.json")
    idp.serve_documents(tenant="common", version="2.0", metadata=metadata, jwks=jwks)
    metadata["issuer"] = "mutated afterwards"  # must not leak into what is served

    served = get_json(idp.metadata_url(tenant="common"))
    assert served["jwks_uri"] == f"{idp.instance}/common/discovery/v2.0/keys"
    assert {**served, "jwks_uri": None} == {
        **real_document("metadata-common-v2.json"),
        "jwks_uri": None,
    }
    assert list(served) == list(metadata)
    assert get_json(served["jwks_uri"]) == jwks

    # Other tenants and versions keep their generated documents.
    assert get_json(idp.metadata_url())["issuer"] == f"{idp.instance}/{idp.tenant_id}/v2.0"
    assert (
        get_json(idp.jwks_url(version="1.0", tenant="common"))["keys"][0]["kid"]
        == idp.current_key.kid
    )
    with pytest.raises(ValueError, match="not a GUID"):
        idp.serve_documents(tenant="contoso.com", version="2.0", metadata={}, jwks={})


def test_fetch_count(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    with httpx.Client(verify=NO_TLS) as client:
        client.get(idp.metadata_url())
        client.get(idp.metadata_url(tenant=idp.tenant_id.upper()))
        client.get(idp.jwks_url())
        client.get(idp.metadata_url(version="1.0", tenant="common"))
        client.head(idp.jwks_url())
    assert idp.fetch_count("metadata") == 3
    assert idp.fetch_count("metadata", idp.tenant_id) == 2
    assert idp.fetch_count("metadata", idp.tenant_id.upper(), "2.0") == 2
    assert idp.fetch_count("metadata", "common", "2.0") == 0
    assert idp.fetch_count("metadata", version="1.0") == 1
    assert idp.fetch_count("jwks") == 1, "HEAD is not a fetch"
    idp.reset_counts()
    assert idp.fetch_count("metadata") == idp.fetch_count("jwks") == 0


def test_fail_status(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    idp.fail_status = 503
    for url in (idp.metadata_url(), idp.jwks_url(version="1.0"), idp.metadata_url(tenant="bad")):
        response = get(url)
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    assert idp.fetch_count("metadata") == 2
    assert idp.fetch_count("jwks") == 1
    idp.fail_status = 404
    assert get(idp.jwks_url()).status_code == 404
    idp.fail_status = None
    assert get_json(idp.jwks_url())["keys"]
    for bad in (99, 600, "503", True):
        with pytest.raises(ValueError, match="fail_status"):
            idp.fail_status = bad  # type: ignore[assignment]
    assert idp.fail_status is None


async def test_delay_is_per_request_and_does_not_block() -> None:
    """A delayed request waits at least the delay; five delayed requests wait side by side (all
    five have arrived while none is answered yet), not one after another."""
    async with EntraEmulator() as idp:
        idp.delay = 0.3
        async with httpx.AsyncClient(verify=NO_TLS) as client:
            started = time.perf_counter()
            assert (await client.get(idp.jwks_url())).status_code == 200
            assert time.perf_counter() - started >= 0.3
            idp.delay = 30
            waiting = [asyncio.create_task(client.get(idp.jwks_url())) for _ in range(5)]
            for _ in range(500):  # bounded: at most 5 s for five requests to arrive
                if idp.fetch_count("jwks") == 6:
                    break
                await asyncio.sleep(0.01)
            assert idp.fetch_count("jwks") == 6
            assert not any(task.done() for task in waiting)
            idp.stop()  # answers the delayed requests at once
            responses = await asyncio.gather(*waiting)
        assert [r.status_code for r in responses] == [503] * 5
        with pytest.raises(ValueError, match="delay"):
            idp.delay = -1
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(verify=NO_TLS) as client:
            await client.get(idp.jwks_url())


def test_stop_refuses_connections_and_start_reuses_the_port(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    port, url = idp.port, idp.metadata_url()
    token = idp.issue_token()
    with httpx.Client(verify=NO_TLS) as client:
        assert client.get(url).status_code == 200  # leaves a pooled keep-alive connection
        idp.stop()
        assert not idp.running
        with pytest.raises(httpx.ConnectError):
            client.get(url)
        assert idp.issue_token(), "tokens can still be minted while the IdP is down"
        assert idp.start() is idp
        assert idp.port == port
        assert client.get(url).status_code == 200
    assert verify(idp, token, version="2.0")["tid"] == idp.tenant_id


def _bind_plainly(port: int) -> OSError | None:
    """Bind 127.0.0.1:port as another program would (no SO_REUSEADDR); the error, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc
    return None


def test_a_stopped_emulator_keeps_its_port_until_closed() -> None:
    """While down, nobody else can take the port (the soak's restart once found it taken);
    close() lets it go."""
    idp = EntraEmulator().start()
    port = idp.port  # no request made: no TIME_WAIT connection holds the port
    idp.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    taken = _bind_plainly(port)
    assert isinstance(taken, OSError)
    assert taken.errno == errno.EADDRINUSE
    idp.start()
    assert idp.port == port
    assert httpx.get(idp.metadata_url()).status_code == 200
    idp.stop()
    idp.close()
    assert _bind_plainly(port) is None


def test_stop_answers_a_delayed_request_at_once(entra_emulator: EntraEmulator) -> None:
    idp = entra_emulator
    idp.delay = 30
    statuses: list[int] = []
    request = threading.Thread(target=lambda: statuses.append(get(idp.jwks_url()).status_code))
    request.start()
    deadline = time.monotonic() + 5
    while idp.fetch_count("jwks") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.perf_counter()
    idp.stop()
    request.join(5)
    assert time.perf_counter() - started < 2
    assert statuses == [503]


# -- https, lifecycle, config, API ------------------------------------------------------------


def test_https(entra_emulator_https: EntraEmulator) -> None:
    idp = entra_emulator_https
    assert idp.instance.startswith("https://127.0.0.1:")
    with httpx.Client(verify=idp.ssl_context()) as client:
        metadata = client.get(idp.metadata_url()).json()
        assert metadata["issuer"] == f"{idp.instance}/{idp.tenant_id}/v2.0"
        assert client.get(metadata["jwks_uri"]).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(idp.metadata_url())
    assert idp.ca_bundle is not None
    bundle = Path(idp.ca_bundle)
    context = ssl.create_default_context(cafile=str(bundle))
    assert httpx.get(
        f"https://localhost:{idp.port}/common/discovery/keys", verify=context
    ).is_success
    idp.stop()
    assert not bundle.parent.exists(), "the temporary PEM directory is removed on stop"


async def test_https_config_trusts_the_emulators_ca(entra_emulator_https: EntraEmulator) -> None:
    idp = entra_emulator_https
    config = idp.config()
    assert config.ca_bundle == idp.ca_bundle
    async with TokenValidator(config) as validator:  # its own httpx client, no injection
        principal = await validator.validate(idp.issue_token(roles=["Orders.Read"]))
    assert (principal.tenant_id, principal.roles) == (idp.tenant_id, frozenset({"Orders.Read"}))
    # The CA is read when the config is made: a restart (new PEM files) does not break it.
    idp.stop()
    idp.start()
    async with TokenValidator(config) as validator:
        assert (await validator.validate(idp.issue_token(roles=["r"]))).tenant_id == idp.tenant_id


def test_ssl_context_needs_https(shared: EntraEmulator) -> None:
    assert shared.ca_bundle is None
    with pytest.raises(ValueError, match="https=True"):
        shared.ssl_context()


async def test_async_context_manager_and_async_client() -> None:
    async with EntraEmulator(tenant_id="A1B2C3D4-0000-4000-8000-0123456789AB") as idp:
        assert idp.tenant_id == "a1b2c3d4-0000-4000-8000-0123456789ab"
        async with httpx.AsyncClient(verify=NO_TLS) as client:
            metadata = (await client.get(idp.metadata_url(version="1.0"))).json()
            jwks = (await client.get(metadata["jwks_uri"])).json()
        token = idp.issue_token(version="1.0", app_only=False)
        claims = jwt.decode(
            token,
            jwt.PyJWK(jwks["keys"][0]).key,
            algorithms=["RS256"],
            audience=DEFAULT_AUDIENCE,
            issuer=metadata["issuer"],
        )
        assert claims["scp"] == "access_as_user"
        assert idp.running
    assert not idp.running


def test_construction_and_instance_before_start() -> None:
    with pytest.raises(ValueError, match="GUID"):
        EntraEmulator(tenant_id="common")
    idp = EntraEmulator()
    assert idp.port == 0
    with pytest.raises(RuntimeError, match="start"):
        _ = idp.instance
    assert "unbound" in repr(idp)


def test_config(shared: EntraEmulator) -> None:
    config = shared.config()
    assert isinstance(config, EntraConfig)
    assert (config.tenant_id, config.instance) == (shared.tenant_id, shared.instance)
    assert tuple(config.audiences) == (DEFAULT_AUDIENCE,)
    assert config.ca_bundle is None  # plain http
    custom = shared.config(audiences=["api://custom"], leeway=0)
    assert (tuple(custom.audiences), custom.leeway) == (("api://custom",), 0)


def test_public_api_is_exactly_all() -> None:
    public = {
        name
        for name, value in vars(entra_guard.testing).items()
        if not name.startswith("_") and not isinstance(value, type(entra_guard))
    }
    assert public == set(entra_guard.testing.__all__)
    assert entra_guard.testing.__all__ == [
        "DEFAULT_AUDIENCE",
        "DEFAULT_CLIENT_ID",
        "REMOVE",
        "EmulatorKey",
        "EntraEmulator",
    ]


# -- logging ----------------------------------------------------------------------------------

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


LoggerState: TypeAlias = tuple[int, tuple[logging.Handler, ...], bool, tuple[Any, ...], bool]


def logger_state() -> dict[str, LoggerState]:
    loggers = {name: logging.getLogger(name) for name in UVICORN_LOGGERS}
    return {
        name: (lg.level, tuple(lg.handlers), lg.propagate, tuple(lg.filters), lg.disabled)
        for name, lg in loggers.items()
    }


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_in_process_emulator_leaves_uvicorns_loggers_alone() -> None:
    saved = logger_state()
    error_log, access_log = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")
    host = Collect()
    try:
        # Configured the way uvicorn's own command line configures them for the host's server.
        for logger in (error_log, access_log):
            logger.setLevel(logging.INFO)
            logger.addHandler(host)
        access_log.propagate = False
        before = logger_state()
        with EntraEmulator() as idp:
            get(idp.metadata_url())
            error_log.info("host: still logging")
            access_log.info("host: GET /orders 200")
        idp.start()
        get(idp.jwks_url())
        idp.stop()
        assert logger_state() == before
        assert error_log.getEffectiveLevel() == logging.INFO
    finally:
        for name, (level, handlers, propagate, filters, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers = list(handlers)
            logger.propagate, logger.disabled = propagate, disabled
            logger.filters = list(filters)
    # The host's records passed; the emulator's own start-up and access lines did not.
    assert host.messages == ["host: still logging", "host: GET /orders 200"]


def test_the_example_api_in_dev_mode_keeps_its_uvicorn_log() -> None:
    """Dev mode starts an emulator inside the API's process: uvicorn's own lines must stay."""
    port = closed_port()
    with subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", *example_api(), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,  # no ENTRA_TENANT_ID: dev mode
    ) as api:
        assert api.stdout is not None
        assert api.stderr is not None
        out, err = Output(api.stdout), Output(api.stderr)
        try:
            err.until(f"Uvicorn running on http://127.0.0.1:{port}")
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            out.until('"GET /health HTTP/1.1" 200')
        finally:
            stop(api)
        log = err.rest()
    assert "emulator is running at http://127.0.0.1:" in out.rest()  # dev mode it was
    assert log.count("Uvicorn running on") == 1  # the host's, not the emulator's
    assert "Application startup complete." in log
    assert "Shutting down" in log
    assert "Finished server process" in log


def test_the_readmes_registrations_file_loads(entra_emulator: EntraEmulator) -> None:
    """The README's registrations example, as a user copies it: it loads, and its daemon gets a
    token with the roles it lists."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- registrations-example", 1)[1].split("```json\n", 1)[1]
    loaded = entra_emulator.load_registrations(json.loads(block.split("```", 1)[0]))
    (api,) = loaded.apis
    daemon, spa = loaded.clients
    (user,) = loaded.users
    assert (api.app_id_uri, tuple(api.scopes)) == ("api://orders", ("Orders.Read",))
    assert (spa.type, user.upn, user.password) == ("spa", "adele@contoso.test", "Correct-Horse-1")
    answer = httpx.post(
        entra_emulator.token_endpoint(),
        data={"grant_type": "client_credentials", "client_id": daemon.client_id,
              "client_secret": daemon.secret, "scope": "api://orders/.default"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["Orders.Admin"]
