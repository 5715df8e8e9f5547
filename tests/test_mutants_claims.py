"""Rules of ``claims`` that mutation testing found untested (benchmarks/MUTATION.md).

The refusal's description is what a client developer reads in ``error_description``: each one
says which claim failed and how. The cases are ``test_claims``' table; this checks their words.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from entra_guard import EntraConfig, EntraGuardError, InsufficientPermissions, InvalidToken
from entra_guard.claims import check_app_key_audience, check_claims, check_issuer
from entra_guard.discovery import KeySet, SigningKey
from entra_guard.principal import LazyClaims
from tests.test_claims import (
    API,
    CASES,
    CLIENT,
    NOW,
    OTHER,
    PUBLIC_KEY,
    TENANT,
    V2_TEMPLATE,
    Case,
    app_v2,
    run,
    user_v1,
)

NUMERIC = "The '{}' claim is not a NumericDate"
EXPIRED = "The token has expired"
NOT_YET = "The token is not valid yet ('nbf')"
ISSUER = "The token's issuer is not accepted by this API"
TENANT_REFUSED = "The token's tenant is not allowed by this API"
NO_CLIENT = "The token names no client application (azp/appid): it is not an access token"
GRAPH = (
    "The token is meant for Microsoft Graph, not for this API: request a token with this API's "
    "scope"
)
AUD_TYPE = "The 'aud' claim is not a string or list of strings"
DESCRIPTIONS = {
    "exp == now - leeway": EXPIRED,
    "exp == now without leeway": EXPIRED,
    "nbf == now + leeway + 1": NOT_YET,
    "iat beyond leeway": "The token was issued in the future ('iat')",
    "nbf after exp": "The token's 'nbf' is after its 'exp'",
    "no exp": "The token has no expiration ('exp')",
    "exp as numeric string": NUMERIC.format("exp"),
    "exp as boolean": NUMERIC.format("exp"),
    "exp infinite": NUMERIC.format("exp"),
    "exp a 400-digit integer": NUMERIC.format("exp"),
    "nbf negative": NUMERIC.format("nbf"),
    "exp after the year 9999": NUMERIC.format("exp"),
    "exp NaN": NUMERIC.format("exp"),
    "exp null": NUMERIC.format("exp"),
    "nbf as string": NUMERIC.format("nbf"),
    "v2 issuer on a v1 token": ISSUER,
    "v1 issuer on a v2 token": ISSUER,
    "issuer with extra slash": ISSUER,
    "issuer of another cloud": ISSUER,
    "no issuer": "The token has no issuer ('iss')",
    "no tid": "The token has no tenant id ('tid') GUID",
    "tid not a GUID": "The token has no tenant id ('tid') GUID",
    "tid of another tenant, issuer ours": TENANT_REFUSED,
    "another tenant entirely": ISSUER,
    "tenant not in the allow-list": TENANT_REFUSED,
    "tid disagrees with iss": ISSUER,
    "key of personal accounts": "The token was signed by another issuer's key",
    "audience of another API": "The token's audience is not this API",
    "audience case differs": "The token's audience is not this API",
    "no audience": "The token has no audience ('aud')",
    "empty audience list": AUD_TYPE,
    "audience of wrong type": AUD_TYPE,
    "Microsoft Graph token": GRAPH,
    "Graph URL token": GRAPH,
    "ID token (no azp)": NO_CLIENT,
    "v2 token naming appid only": NO_CLIENT,
    "v1 ID token (no appid)": NO_CLIENT,
    "empty azp": NO_CLIENT,
    "scp not a string": "The 'scp' claim is not a string",
    "roles not a list": "The 'roles' claim is not a list of strings",
    "roles with a number": "The 'roles' claim is not a list of strings",
    "client not allowed": "The calling application is not allowed to use this API",
    "no scp, no roles": (
        "The token grants no scope and no app role: ask for a scope or an app role of this API"
    ),
    "empty scp, empty roles": (
        "The token grants no scope and no app role: ask for a scope or an app role of this API"
    ),
}
REFUSED = [case for case in CASES if case.reason is not None]


def test_every_refused_case_has_its_description() -> None:
    assert {case.name for case in REFUSED} == set(DESCRIPTIONS)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_each_refusal_says_which_claim_failed(case: Case) -> None:
    with pytest.raises(EntraGuardError) as refused:
        run(case)
    assert (refused.value.reason, refused.value.description) == (
        case.reason,
        DESCRIPTIONS[case.name],
    )


@pytest.mark.parametrize(
    ("claims", "allow_guests", "refused"),
    [
        (user_v1(acct=1), False, True),
        (user_v1(acct=1), True, False),
        (user_v1(acct=0), False, False),
    ],
)
def test_guests_are_refused_only_when_configured(
    claims: dict[str, Any], allow_guests: bool, refused: bool
) -> None:
    case = Case("guest", claims, version="1.0", config={"allow_guests": allow_guests})
    if not refused:
        assert run(case).is_guest is (claims["acct"] == 1)
        return
    with pytest.raises(InsufficientPermissions) as info:
        run(case)
    assert info.value.reason == "guest_not_allowed"
    assert info.value.description == (
        "This API does not accept guest users (users of another tenant)"
    )


def test_the_client_allow_list_ignores_the_case_of_the_guid() -> None:
    upper = run(Case("upper", app_v2(azp=CLIENT.upper()), config={"allowed_client_ids": [CLIENT]}))
    assert upper.client_id == CLIENT.upper()


# An app-specific key (the ?appid= document) signs the tokens of that one application only.
APP = "6514a8ca-d9e4-4155-b292-65258398f3aa"  # our API's client id (== CLIENT, the caller)
OTHER_API = "c1a7e2f0-0a4e-4e4c-9c55-3f2d6a3f7e11"
APP_KEY_AUDIENCE = "The token's audience is not the application whose own signing key signed it"


def app_keyset() -> tuple[KeySet, SigningKey]:
    key = SigningKey(kid="app", x5t=None, public_key=PUBLIC_KEY, issuer=None, alg=None)
    keyset = KeySet(
        version="2.0",
        issuer=V2_TEMPLATE.replace("{tenantid}", TENANT),
        jwks_uri="https://login.microsoftonline.com/keys?appid=" + APP,
        by_kid=MappingProxyType({"app": key}),
        by_x5t=MappingProxyType({}),
        app_id=APP,
    )
    return keyset, key


@pytest.mark.parametrize(
    ("audiences", "aud", "accepted"),
    [
        ([APP], APP, True),
        ([APP.upper()], APP.upper(), True),  # GUIDs compare without regard to case
        ([APP, OTHER_API], [OTHER_API, APP], True),
        ([APP, OTHER_API], OTHER_API, False),  # another API of ours: not this key's to vouch for
        ([APP, API], API, True),  # the App ID URI of the one client id among the audiences
        ([APP, OTHER_API, API], API, False),  # whose URI? cannot tell: refused
        ([API, APP], API + "/", True),
    ],
)
def test_an_app_specific_key_vouches_for_its_own_application_only(
    audiences: list[str], aud: str | list[str], accepted: bool
) -> None:
    config = EntraConfig(tenant_id=TENANT, audiences=audiences)
    keyset, key = app_keyset()
    claims = app_v2(aud=aud)

    def check() -> Any:
        return check_claims(claims, config=config, keyset=keyset, key=key, version="2.0", now=NOW)

    if accepted:
        assert check().client_id == CLIENT
        check_app_key_audience(claims, APP, config)
        return
    with pytest.raises(InvalidToken) as refused:
        check()
    assert (refused.value.reason, refused.value.description) == (
        "invalid_audience",
        APP_KEY_AUDIENCE,
    )


def test_an_app_specific_key_never_vouches_for_an_audience_not_its_own() -> None:
    """The function's own contract, without ``check_audience`` before it."""
    config = EntraConfig(tenant_id=TENANT, audiences=[APP, API])
    for aud in (OTHER_API, "api://someone-else"):  # another client id; a URI not ours
        with pytest.raises(InvalidToken) as refused:
            check_app_key_audience({"aud": aud}, APP, config)
        assert refused.value.reason == "invalid_audience"


# A tenant the app's tenant_allowed function has allowed at run time (the validator asks it).


@pytest.mark.parametrize("decided", [False, True])
def test_a_tenant_decided_at_run_time_is_accepted_only_when_decided(decided: bool) -> None:
    claims = app_v2(tid=OTHER, iss=V2_TEMPLATE.replace("{tenantid}", OTHER))
    config = EntraConfig(tenant_id="organizations", audiences=[API], allowed_tenants=[TENANT])
    key = SigningKey(kid="k1", x5t=None, public_key=PUBLIC_KEY, issuer=None, alg=None)
    keyset = KeySet(
        version="2.0",
        issuer=V2_TEMPLATE,
        jwks_uri="https://login.microsoftonline.com/organizations/discovery/v2.0/keys",
        by_kid=MappingProxyType({"k1": key}),
        by_x5t=MappingProxyType({}),
    )
    if decided:
        principal = check_claims(
            claims, config=config, keyset=keyset, key=key, version="2.0", now=NOW,
            tenant_decided=True,
        )  # fmt: skip
        assert principal.tenant_id == OTHER
        return
    for check in (
        lambda: check_claims(claims, config=config, keyset=keyset, key=key, version="2.0", now=NOW),
        lambda: check_issuer(claims, config=config, keyset=keyset, key=key),
    ):
        with pytest.raises(InvalidToken) as refused:
            check()
        assert (refused.value.reason, refused.value.description) == (
            "tenant_not_allowed",
            TENANT_REFUSED,
        )


MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last NumericDate accepted


@pytest.mark.parametrize(
    "times",
    [
        {"exp": MAX_TIME},  # the upper bound is inclusive, as an integer
        {"exp": float(MAX_TIME)},  # and as a float
        {"nbf": 0, "iat": 0},  # the lower bound is inclusive, as an integer
        {"nbf": 0.0, "iat": 0.5},  # and as a float, fractions included
    ],
    ids=["int max", "float max", "int zero", "float zero and a half"],
)
def test_numeric_dates_at_the_bounds_of_their_range_are_accepted(times: dict[str, float]) -> None:
    principal = run(Case("bounds", app_v2(**times)))
    assert principal.expires_on == times.get("exp", NOW + 3600)


def test_nbf_equal_to_exp_is_no_inverted_lifetime() -> None:
    """Only an ``nbf`` after ``exp`` is; at equality the leeway decides, as for any token."""
    principal = run(Case("nbf == exp", app_v2(nbf=NOW + 10, iat=NOW, exp=NOW + 10)))
    assert principal.expires_on == NOW + 10


def test_a_member_whose_idp_names_the_tokens_own_tenant_is_no_guest() -> None:
    claims = user_v1(idp=f"https://sts.windows.net/{TENANT.upper()}/")
    principal = run(Case("member", claims, version="1.0", config={"allow_guests": False}))
    assert not principal.is_guest


@pytest.mark.parametrize(
    ("aud", "reason"),
    [
        (["api://other", "api://another"], "invalid_audience"),
        (["https://graph.microsoft.com", "api://other"], "graph_token"),
    ],
)
def test_a_list_audience_with_none_of_ours_is_refused_for_its_reason(
    aud: list[str], reason: str
) -> None:
    with pytest.raises(InvalidToken) as refused:
        run(Case("list", app_v2(aud=aud)))
    assert refused.value.reason == reason


def test_the_principal_keeps_the_payload_text_it_is_given() -> None:
    """A cached principal holds the payload's compact JSON text, not the parsed dict (the
    memory bound per cached token); the claims read from it are the checked ones."""
    claims = app_v2()
    payload = json.dumps(claims, separators=(",", ":")).encode()
    config = EntraConfig(tenant_id=TENANT, audiences=[API])
    key = SigningKey(kid="k1", x5t="k1", public_key=PUBLIC_KEY, issuer=None, alg=None)
    keyset = KeySet(
        version="2.0",
        issuer=V2_TEMPLATE.replace("{tenantid}", TENANT),
        jwks_uri="https://login.microsoftonline.com/keys",
        by_kid=MappingProxyType({"k1": key}),
        by_x5t=MappingProxyType({"k1": key}),
    )
    principal = check_claims(
        claims, config=config, keyset=keyset, key=key, version="2.0", now=NOW, payload=payload
    )
    assert isinstance(principal.claims, LazyClaims)
    assert principal.claims._payload == payload  # a copy of it: see from_payload
    assert dict(principal.claims) == claims
