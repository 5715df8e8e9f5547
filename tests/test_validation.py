"""TokenValidator end to end: emulator-issued tokens checked over real loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entra_guard import (
    EntraGuardError,
    InsufficientPermissions,
    InvalidToken,
    TokenValidator,
)
from entra_guard.testing import REMOVE, EntraEmulator
from tests.support import assemble, b64, segments

OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"


@pytest.fixture
async def check(entra_emulator: EntraEmulator) -> AsyncIterator[TokenValidator]:
    async with TokenValidator(entra_emulator.config()) as validator:
        yield validator


async def reason(validator: TokenValidator, token: str | bytes) -> str:
    with pytest.raises(EntraGuardError) as info:
        await validator.validate(token)
    return info.value.reason


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_app_tokens_of_both_versions(
    entra_emulator: EntraEmulator, check: TokenValidator, version: Any
) -> None:
    token = entra_emulator.issue_token(version=version, roles=["Orders.Read"])
    principal = await check.validate(token)
    assert principal.version == version
    assert principal.app_only
    assert principal.roles == {"Orders.Read"}
    assert principal.tenant_id == entra_emulator.tenant_id
    assert principal.client_id == segments(token)[1]["azp" if version == "2.0" else "appid"]


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_delegated_tokens_of_both_versions(
    entra_emulator: EntraEmulator, check: TokenValidator, version: Any
) -> None:
    token = entra_emulator.issue_token(version=version, app_only=False, scopes=["Orders.Read"])
    principal = await check.validate(token)
    assert not principal.app_only
    assert principal.scopes == {"Orders.Read"}
    assert principal.object_id


async def test_bytes_are_accepted_and_non_ascii_bytes_refused(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await check.validate(token.encode())).roles == {"Orders.Read"}
    assert await reason(check, b"\xff" + token.encode()) == "malformed_token"


async def test_a_version_not_accepted_is_refused_without_fetching(
    entra_emulator: EntraEmulator,
) -> None:
    async with TokenValidator(entra_emulator.config(token_versions=["2.0"])) as check:
        token = entra_emulator.issue_token(version="1.0", roles=["Orders.Read"])
        assert await reason(check, token) == "version_not_accepted"
        assert entra_emulator.fetch_count("metadata") == 0
        no_ver = entra_emulator.issue_token(roles=["Orders.Read"], claims={"ver": REMOVE})
        assert await reason(check, no_ver) == "version_not_accepted"


async def test_a_signature_of_impossible_length_is_refused_without_fetching(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    """Payload and signature are decoded before the key is looked up: a signature segment no
    base64url can be (1 character past a multiple of 4) naming an unknown key fetches nothing."""
    token = entra_emulator.issue_token(roles=["Orders.Read"], headers={"kid": "no-such-key"})
    header, payload, signature = token.split(".")
    cut = signature[: len(signature) // 4 * 4 + 1]
    assert len(cut) % 4 == 1
    with pytest.raises(InvalidToken) as info:
        await check.validate(f"{header}.{payload}.{cut}")
    assert info.value.reason == "malformed_token"
    assert "not valid base64url" in info.value.description
    assert entra_emulator.fetch_count("metadata") == entra_emulator.fetch_count("jwks") == 0


async def test_old_v1_tokens_with_only_x5t_find_their_key(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(
        version="1.0", roles=["Orders.Read"], headers={"kid": REMOVE}
    )
    assert "kid" not in segments(token)[0]
    assert (await check.validate(token)).version == "1.0"


async def test_multi_tenant_fills_the_issuer_template(entra_emulator: EntraEmulator) -> None:
    config = entra_emulator.config(tenant_id="organizations", allowed_tenants=[OTHER_TENANT])
    async with TokenValidator(config) as check:
        for version in ("1.0", "2.0"):
            ok = entra_emulator.issue_token(version=version, tenant_id=OTHER_TENANT, roles=["r"])
            assert (await check.validate(ok)).tenant_id == OTHER_TENANT
            stranger = entra_emulator.issue_token(version=version, roles=["r"])
            assert await reason(check, stranger) == "tenant_not_allowed"
        assert entra_emulator.fetch_count("metadata", tenant="organizations") == 2


async def test_signature_attacks(entra_emulator: EntraEmulator, check: TokenValidator) -> None:
    good = entra_emulator.issue_token(roles=["Orders.Read"])
    header, payload, signature = segments(good)
    await check.validate(good)

    # a valid signature by a key that is not the tenant's, under the tenant's kid
    stranger = EntraEmulator.generate_key()
    forged = entra_emulator.issue_token(
        roles=["Orders.Read"], key=stranger, headers={"kid": header["kid"]}
    )
    assert await reason(check, forged) == "invalid_signature"
    # tampered payload, original signature
    tampered = assemble(header, {**payload, "roles": ["Orders.Admin"]}, signature)
    assert await reason(check, tampered) == "invalid_signature"
    # the signature of another token
    other = entra_emulator.issue_token(roles=["Orders.Write"])
    assert await reason(check, assemble(header, payload, segments(other)[2])) == "invalid_signature"
    # headers that point at the attacker's own key are never followed
    jwk = stranger.public_jwk()
    for injected in (
        {"jwk": jwk},
        {"jku": "https://attacker.example/keys"},
        {"x5u": "https://attacker.example/cert"},
        {"x5c": jwk["x5c"]},
    ):
        for kid in (header["kid"], stranger.kid):
            token = entra_emulator.issue_token(
                roles=["Orders.Read"], key=stranger, headers={**injected, "kid": kid}
            )
            assert await reason(check, token) in {"invalid_signature", "key_not_found"}


async def test_algorithm_attacks(entra_emulator: EntraEmulator, check: TokenValidator) -> None:
    good = entra_emulator.issue_token(roles=["Orders.Read"])
    header, payload, _ = segments(good)
    await check.validate(good)

    unsigned = assemble({**header, "alg": "none"}, payload, "")
    assert await reason(check, unsigned) == "malformed_token"  # empty signature segment
    assert (
        await reason(check, assemble({**header, "alg": "none"}, payload, b"x"))
        == "algorithm_not_allowed"
    )
    assert (
        await reason(check, assemble({**header, "alg": "None"}, payload, b"x"))
        == "algorithm_not_allowed"
    )

    # HS256 keyed with the tenant's public key (algorithm confusion)
    public_pem = entra_emulator.current_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = {**header, "alg": "HS256"}
    signing_input = assemble(hs_header, payload, "").rstrip(".").encode()
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    assert await reason(check, assemble(hs_header, payload, mac)) == "algorithm_not_allowed"

    # RSA, but not the configured algorithm
    rs512 = entra_emulator.issue_token(roles=["Orders.Read"], algorithm="RS512")
    assert await reason(check, rs512) == "algorithm_not_allowed"
    assert (
        await reason(check, assemble({**header, "alg": 256}, payload, b"x"))
        == "algorithm_not_allowed"
    )


async def test_header_rules(entra_emulator: EntraEmulator, check: TokenValidator) -> None:
    crit = entra_emulator.issue_token(roles=["r"], headers={"crit": ["exp"], "exp": 1})
    assert await reason(check, crit) == "unsupported_header"
    graph = entra_emulator.issue_token(roles=["r"], headers={"nonce": "abc"})
    assert await reason(check, graph) == "graph_token"
    no_key_id = entra_emulator.issue_token(roles=["r"], headers={"kid": REMOVE, "x5t": REMOVE})
    assert await reason(check, no_key_id) == "key_not_found"
    numeric_kid = entra_emulator.issue_token(roles=["r"], headers={"kid": 7})
    assert await reason(check, numeric_kid) == "malformed_token"


async def test_graph_tokens_are_explained(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(
        roles=["User.Read.All"], audience="https://graph.microsoft.com"
    )
    with pytest.raises(InvalidToken) as info:
        await check.validate(token)
    assert info.value.reason == "graph_token"
    assert "Microsoft Graph" in info.value.description


async def test_authentication_comes_before_authorization(
    entra_emulator: EntraEmulator,
) -> None:
    config = entra_emulator.config(allowed_client_ids=["11111111-1111-1111-1111-111111111111"])
    async with TokenValidator(config) as check:
        genuine = entra_emulator.issue_token(roles=[])
        with pytest.raises(InsufficientPermissions) as info:
            await check.validate(genuine)
        assert info.value.reason == "client_not_allowed"
        assert info.value.status_code == 403
        # the same token forged: a forger learns nothing about the policy
        kid = entra_emulator.current_key.kid
        forged = entra_emulator.issue_token(
            roles=[], key=EntraEmulator.generate_key(), headers={"kid": kid}
        )
        assert await reason(check, forged) == "invalid_signature"


async def test_tokens_without_permissions(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    bare = entra_emulator.issue_token(roles=[])
    with pytest.raises(InsufficientPermissions) as info:
        await check.validate(bare)
    assert info.value.reason == "no_permissions"
    client = segments(bare)[1]["azp"]
    config = entra_emulator.config(
        allow_tokens_without_permissions=True, allowed_client_ids=[client]
    )
    async with TokenValidator(config) as lenient:
        assert (await lenient.validate(bare)).roles == frozenset()


async def test_expiry_uses_the_injected_clock(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(roles=["r"], now=1_000_000.0, lifetime=600)
    assert (await check.validate(token, now=1_000_000.0 + 600 + 59)).roles == {"r"}
    with pytest.raises(InvalidToken) as info:
        await check.validate(token, now=1_000_000.0 + 600 + 60)
    assert info.value.reason == "token_expired"


async def test_oversized_tokens_are_refused(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    huge = entra_emulator.issue_token(roles=["r"], claims={"pad": "x" * 20_000})
    assert await reason(check, huge) == "token_too_large"
    # a real token with 200 group ids still fits under the default cap
    groups = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(200)]
    large = entra_emulator.issue_token(roles=["r"], claims={"groups": groups})
    assert len(large) > 8000
    assert (await check.validate(large)).roles == {"r"}


def test_arbitrary_bytes_only_ever_raise_invalid_token(entra_emulator: EntraEmulator) -> None:
    loop = asyncio.new_event_loop()
    validator = TokenValidator(entra_emulator.config())
    real = entra_emulator.issue_token(roles=["r"])
    header = real.split(".")[0]

    values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    real_header, real_payload, real_signature = segments(real)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.one_of(
            st.binary(max_size=2000),
            st.binary(max_size=400).map(lambda b: f"{header}.{b64(b)}.{b64(b[:64])}".encode()),
            st.dictionaries(st.text(max_size=8), values, max_size=8).map(
                lambda d: assemble(real_header, {**real_payload, **d}, real_signature).encode()
            ),
        )
    )
    def check(data: bytes) -> None:
        try:
            loop.run_until_complete(validator.validate(data))
        except InvalidToken as exc:
            assert exc.status_code == 401
        else:
            pytest.fail("a token that is not the issuer's validated")

    try:
        check()
    finally:
        loop.run_until_complete(validator.aclose())
        loop.close()
