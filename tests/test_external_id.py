"""Conformance with a Microsoft Entra External ID (``*.ciamlogin.com``) authority.

What differs from a workforce tenant, as Microsoft's identity-platform documentation on
security tokens states it for external tenants: the metadata is served by the tenant's own
host, ``https://{tenantname}.ciamlogin.com/{tenantid}/v2.0/.well-known/openid-configuration``,
while the ``issuer`` it names is on another host,
``https://{tenantid}.ciamlogin.com/{tenantid}/v2.0``; and only v2 metadata is published (v1
answers 404). The emulator serves a v2 document shaped like a real one (every endpoint on the
authority host, only ``jwks_uri`` pointing home) and answers 404 for v1, as such an authority
does.
"""

from __future__ import annotations

from typing import Any

import pytest

from entra_guard import EntraConfig, InvalidToken, KeyStore, TokenValidator
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock

SUBDOMAIN_HOST = "https://contoso.ciamlogin.com"
API_CLIENT_ID = "7db01206-135b-4a34-a4d5-2622d1a888bf"


def ciam_issuer(tenant_id: str) -> str:
    return f"https://{tenant_id}.ciamlogin.com/{tenant_id}/v2.0"


def ciam_metadata(tenant_id: str) -> dict[str, Any]:
    """The v2 openid-configuration of an external tenant, member for member."""
    base = f"{SUBDOMAIN_HOST}/{tenant_id}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post", "private_key_jwt", "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": ciam_issuer(tenant_id),
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
        ],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }  # fmt: skip


@pytest.fixture
def external_id(entra_emulator: EntraEmulator) -> EntraEmulator:
    """The emulator answering as an external tenant's authority."""
    tenant = entra_emulator.tenant_id
    entra_emulator.served_versions = ("2.0",)
    entra_emulator.serve_documents(
        tenant=tenant,
        version="2.0",
        metadata=ciam_metadata(tenant),
        # Each key names the issuer it signs for: the metadata's, as Microsoft.Identity.Web's
        # signing-key issuer check (on by default) needs for these tokens to pass there too.
        jwks={"keys": [entra_emulator.current_key.public_jwk(ciam_issuer(tenant))]},
    )
    return entra_emulator


def validator(idp: EntraEmulator, clock: FakeClock, **config: Any) -> TokenValidator:
    settings = idp.config(audiences=[API_CLIENT_ID], **config)
    return TokenValidator(settings, key_store=KeyStore(settings, clock=clock))


def ciam_token(idp: EntraEmulator, **overrides: Any) -> str:
    """A user's delegated v2 access token as an external tenant issues it for the API."""
    claims = {"iss": ciam_issuer(idp.tenant_id), **overrides.pop("claims", {})}
    return idp.issue_token(
        audience=API_CLIENT_ID, app_only=False, scopes=["Orders.Read"], claims=claims, **overrides
    )


async def test_an_external_id_access_token_is_accepted(
    external_id: EntraEmulator, clock: FakeClock
) -> None:
    async with validator(external_id, clock) as check:
        principal = await check.validate(ciam_token(external_id))
        assert principal.scopes == {"Orders.Read"}
        assert principal.tenant_id == external_id.tenant_id
        assert principal.claims["iss"] == ciam_issuer(external_id.tenant_id)
        keyset = check.key_store.current("2.0")
        assert keyset is not None
        assert keyset.issuer == ciam_issuer(external_id.tenant_id)


@pytest.mark.parametrize(
    "issuer",
    [
        "https://login.microsoftonline.com/{tid}/v2.0",  # the workforce form
        SUBDOMAIN_HOST + "/{tid}/v2.0",  # the authority host, not the issuer host
        "https://{tid}.ciamlogin.com/{tid}/v2.0/",  # one trailing slash too many
    ],
)
async def test_only_the_issuer_the_metadata_names_is_accepted(
    external_id: EntraEmulator, clock: FakeClock, issuer: str
) -> None:
    token = ciam_token(external_id, claims={"iss": issuer.format(tid=external_id.tenant_id)})
    async with validator(external_id, clock) as check:
        with pytest.raises(InvalidToken) as info:
            await check.validate(token)
        assert info.value.reason == "invalid_issuer"


async def test_v1_tokens_are_invalid_not_an_outage(
    external_id: EntraEmulator, clock: FakeClock
) -> None:
    junk = external_id.issue_token(version="1.0", key=EntraEmulator.generate_key(), roles=["r"])
    async with validator(external_id, clock) as check:  # default token_versions: 1.0 and 2.0
        await check.prefetch()  # no KeysUnavailable: the 404 is not an outage
        with pytest.raises(InvalidToken) as info:
            await check.validate(junk)
        assert info.value.reason == "version_not_served"
        assert (await check.validate(ciam_token(external_id))).scopes == {"Orders.Read"}
    assert external_id.fetch_count("metadata", version="1.0") == 1

    async with validator(external_id, clock, token_versions=["2.0"]) as check:
        with pytest.raises(InvalidToken) as info:
            await check.validate(junk)
        assert info.value.reason == "version_not_accepted"  # configured so: not even asked
    assert external_id.fetch_count("metadata", version="1.0") == 1


def test_a_ciamlogin_instance_is_accepted_and_asked_at_the_right_urls() -> None:
    tenant = "8d5e6c7a-6a3c-4a4b-9f39-1d6d0c5c2b71"
    config = EntraConfig(tenant_id=tenant, audiences=[API_CLIENT_ID], instance=SUBDOMAIN_HOST + "/")
    assert config.instance == SUBDOMAIN_HOST
    keys = KeyStore(config)
    assert keys.metadata_url("2.0") == (
        f"{SUBDOMAIN_HOST}/{tenant}/v2.0/.well-known/openid-configuration"
    )
    assert keys.metadata_url("2.0", API_CLIENT_ID) == (
        f"{SUBDOMAIN_HOST}/{tenant}/v2.0/.well-known/openid-configuration?appid={API_CLIENT_ID}"
    )
    assert keys.app_ids == (API_CLIENT_ID,)
