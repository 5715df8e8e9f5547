"""The claim rules, table-driven, at their exact boundaries (signature checks live elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from entra_guard import EntraConfig, EntraGuardError, InsufficientPermissions, InvalidToken
from entra_guard.claims import check_claims
from entra_guard.config import MSA_TENANT_ID, TokenVersion
from entra_guard.discovery import KeySet, SigningKey

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "add29489-7269-41f4-8841-b63c95564420"
CLIENT = "6514a8ca-d9e4-4155-b292-65258398f3aa"
API = "api://orders"
NOW = 1_700_000_000.0
V2_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
V1_TEMPLATE = "https://sts.windows.net/{tenantid}/"
PUBLIC_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
REMOVE = object()


def v2_issuer(tid: str) -> str:
    return V2_TEMPLATE.replace("{tenantid}", tid)


def v1_issuer(tid: str) -> str:
    return V1_TEMPLATE.replace("{tenantid}", tid)


def app_v2(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": API,
        "iss": v2_issuer(TENANT),
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "azp": CLIENT,
        "azpacr": "1",
        "oid": "0b6e4a3c-43a5-4b1f-bd1c-1c2b3a4d5e6f",
        "sub": "0b6e4a3c-43a5-4b1f-bd1c-1c2b3a4d5e6f",
        "roles": ["Orders.Read"],
        "tid": TENANT,
        "ver": "2.0",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not REMOVE}


def user_v1(**changes: Any) -> dict[str, Any]:
    claims = app_v2(
        iss=v1_issuer(TENANT), ver="1.0", azp=REMOVE, azpacr=REMOVE, roles=REMOVE,
        appid=CLIENT, appidacr="0", scp="Orders.Read profile", name="Ada", upn="ada@contoso.test",
    )  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not REMOVE}


@dataclass
class Case:
    name: str
    claims: dict[str, Any]
    reason: str | None = None  # None: valid
    version: TokenVersion = "2.0"
    config: dict[str, Any] = field(default_factory=dict)
    key_issuer: str | None = None
    now: float = NOW


CASES = [
    Case("v2 app token", app_v2()),
    Case("v1 delegated token", user_v1(), version="1.0"),
    # lifetime, with the default 60 s leeway
    Case("exp == now", app_v2(exp=NOW)),
    Case("exp == now - leeway + 1", app_v2(exp=NOW - 59, nbf=NOW - 100, iat=NOW - 100)),
    Case("exp == now - leeway", app_v2(exp=NOW - 60, nbf=NOW - 100, iat=NOW - 100), "token_expired"),
    Case("exp == now without leeway", app_v2(exp=NOW), "token_expired", config={"leeway": 0}),
    Case("exp == now + 1 without leeway", app_v2(exp=NOW + 1), config={"leeway": 0}),
    Case("nbf == now + leeway", app_v2(nbf=NOW + 60, iat=NOW)),
    Case("nbf == now + leeway + 1", app_v2(nbf=NOW + 61), "token_not_yet_valid"),
    Case("iat beyond leeway", app_v2(iat=NOW + 61), "token_not_yet_valid"),
    Case("iat at leeway", app_v2(iat=NOW + 60)),
    Case("nbf after exp", app_v2(nbf=NOW + 10, exp=NOW + 5), "invalid_lifetime"),
    Case("no exp", app_v2(exp=REMOVE), "missing_claim"),
    Case("no nbf, no iat", app_v2(nbf=REMOVE, iat=REMOVE)),
    Case("exp as numeric string", app_v2(exp=str(int(NOW + 3600))), "invalid_claim"),
    Case("exp as boolean", app_v2(exp=True), "invalid_claim"),
    Case("exp infinite", app_v2(exp=float("inf")), "invalid_claim"),
    Case("exp a 400-digit integer", app_v2(exp=10**400), "invalid_claim"),
    Case("nbf negative", app_v2(nbf=-1), "invalid_claim"),
    Case("exp after the year 9999", app_v2(exp=253402300800), "invalid_claim"),
    Case("exp NaN", app_v2(exp=float("nan")), "invalid_claim"),
    Case("exp null", app_v2(exp=None), "invalid_claim"),
    Case("nbf as string", app_v2(nbf="yesterday"), "invalid_claim"),
    Case("float exp", app_v2(exp=NOW + 0.5)),
    # issuer and tenant
    Case("v2 issuer on a v1 token", user_v1(iss=v2_issuer(TENANT)), "invalid_issuer", version="1.0"),
    Case("v1 issuer on a v2 token", app_v2(iss=v1_issuer(TENANT)), "invalid_issuer"),
    Case("issuer with extra slash", app_v2(iss=v2_issuer(TENANT) + "/"), "invalid_issuer"),
    Case("issuer of another cloud", app_v2(iss=f"https://login.microsoftonline.us/{TENANT}/v2.0"), "invalid_issuer"),
    Case("no issuer", app_v2(iss=REMOVE), "missing_claim"),
    Case("no tid", app_v2(tid=REMOVE), "invalid_claim"),
    Case("tid not a GUID", app_v2(tid="contoso"), "invalid_claim"),
    Case("tid of another tenant, issuer ours", app_v2(tid=OTHER), "tenant_not_allowed"),
    Case("another tenant entirely", app_v2(tid=OTHER, iss=v2_issuer(OTHER)), "invalid_issuer"),
    # multi-tenant: the metadata issuer is a template filled with the token's tid
    Case("allowed tenant", app_v2(), config={"tenant_id": "organizations", "allowed_tenants": [TENANT]}),
    Case("allowed tenant, v1", user_v1(), version="1.0", config={"tenant_id": "common", "allowed_tenants": [TENANT]}),
    Case("tenant not in the allow-list", app_v2(tid=OTHER, iss=v2_issuer(OTHER)), "tenant_not_allowed",
         config={"tenant_id": "organizations", "allowed_tenants": [TENANT]}),
    Case("any tenant, explicitly", app_v2(tid=OTHER, iss=v2_issuer(OTHER)),
         config={"tenant_id": "organizations", "allow_any_tenant": True}),
    Case("tid disagrees with iss", app_v2(iss=v2_issuer(OTHER)), "invalid_issuer",
         config={"tenant_id": "organizations", "allow_any_tenant": True}),
    # the v2 key's own issuer
    Case("key issuer template", app_v2(), key_issuer=V2_TEMPLATE),
    Case("key issuer of the tenant", app_v2(), key_issuer=v2_issuer(TENANT)),
    Case("key of personal accounts", app_v2(), "invalid_issuer", key_issuer=v2_issuer(MSA_TENANT_ID)),
    # audience
    Case("audience with trailing slash", app_v2(aud=API + "/")),
    Case("audience list containing ours", app_v2(aud=["api://other", API])),
    Case("audience of another API", app_v2(aud="api://other"), "invalid_audience"),
    Case("audience case differs", app_v2(aud=API.upper()), "invalid_audience"),
    Case("no audience", app_v2(aud=REMOVE), "missing_claim"),
    Case("empty audience list", app_v2(aud=[]), "invalid_claim"),
    Case("audience of wrong type", app_v2(aud=42), "invalid_claim"),
    Case("Microsoft Graph token", app_v2(aud="00000003-0000-0000-c000-000000000000"), "graph_token"),
    Case("Graph URL token", app_v2(aud="https://graph.microsoft.com/"), "graph_token"),
    Case("Graph configured on purpose", app_v2(aud="https://graph.microsoft.com"),
         config={"audiences": ["https://graph.microsoft.com"]}),
    # the client and what the token grants
    Case("ID token (no azp)", app_v2(azp=REMOVE), "not_an_access_token"),
    Case("v2 token naming appid only", app_v2(azp=REMOVE, appid=CLIENT), "not_an_access_token"),
    Case("v1 ID token (no appid)", user_v1(appid=REMOVE), "not_an_access_token", version="1.0"),
    Case("empty azp", app_v2(azp=""), "not_an_access_token"),
    Case("scp not a string", user_v1(scp=["Orders.Read"]), "invalid_claim", version="1.0"),
    Case("roles not a list", app_v2(roles="Orders.Read"), "invalid_claim"),
    Case("roles with a number", app_v2(roles=["Orders.Read", 7]), "invalid_claim"),
    Case("client allowed", app_v2(), config={"allowed_client_ids": [CLIENT]}),
    Case("client not allowed", app_v2(azp=OTHER), "client_not_allowed", config={"allowed_client_ids": [CLIENT]}),
    Case("no scp, no roles", app_v2(roles=REMOVE), "no_permissions"),
    Case("empty scp, empty roles", app_v2(roles=[], scp=""), "no_permissions"),
    Case("no permissions, allowed by client id", app_v2(roles=REMOVE),
         config={"allow_tokens_without_permissions": True, "allowed_client_ids": [CLIENT]}),
]  # fmt: skip


def run(case: Case) -> Any:
    config = EntraConfig(**{"tenant_id": TENANT, "audiences": [API], **case.config})
    template = V2_TEMPLATE if case.version == "2.0" else V1_TEMPLATE
    issuer = template if config.is_multi_tenant else template.replace("{tenantid}", TENANT)
    key = SigningKey(kid="k1", x5t="k1", public_key=PUBLIC_KEY, issuer=case.key_issuer, alg=None)
    keyset = KeySet(
        version=case.version,
        issuer=issuer,
        jwks_uri="https://login.microsoftonline.com/keys",
        by_kid=MappingProxyType({"k1": key}),
        by_x5t=MappingProxyType({"k1": key}),
    )
    return check_claims(
        case.claims, config=config, keyset=keyset, key=key, version=case.version, now=case.now
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_claim_rules(case: Case) -> None:
    if case.reason is None:
        principal = run(case)
        assert principal.tenant_id == case.claims["tid"]
        return
    with pytest.raises(EntraGuardError) as info:
        run(case)
    assert info.value.reason == case.reason
    expected = (
        InsufficientPermissions
        if case.reason in {"client_not_allowed", "no_permissions"}
        else InvalidToken
    )
    assert type(info.value) is expected


def test_principal_of_an_app_token() -> None:
    principal = run(Case("app", app_v2(roles=["Orders.Read", "Orders.Write"])))
    assert principal.client_id == CLIENT
    assert principal.app_only
    assert principal.roles == {"Orders.Read", "Orders.Write"}
    assert principal.scopes == frozenset()
    assert principal.version == "2.0"
    assert principal.object_id == principal.subject == "0b6e4a3c-43a5-4b1f-bd1c-1c2b3a4d5e6f"
    assert principal.expires_at.timestamp() == NOW + 3600
    assert principal.has_role("Orders.Write")
    assert not principal.has_scope("Orders.Read")
    assert principal.claims["azpacr"] == "1"
    with pytest.raises(TypeError):
        principal.claims["azp"] = "x"


def test_principal_of_a_delegated_token() -> None:
    principal = run(Case("user", user_v1(), version="1.0"))
    assert not principal.app_only
    assert principal.scopes == {"Orders.Read", "profile"}
    assert principal.has_any_scope(["x", "profile"])
    assert principal.name == "Ada"
    assert principal.preferred_username == "ada@contoso.test"
    assert principal.version == "1.0"


def test_idtyp_app_marks_an_app_token_even_with_scopes() -> None:
    assert run(Case("idtyp", app_v2(idtyp="app", scp="x"))).app_only
