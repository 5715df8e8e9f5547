"""Rules of ``validation`` that mutation testing found untested (benchmarks/MUTATION.md).

Tokens come from the emulator, checked by a real validator over loopback HTTP.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from entra_guard import EntraGuardError, TokenValidator
from entra_guard.discovery import KeyStore, SigningKey
from entra_guard.principal import LazyClaims
from entra_guard.testing import REMOVE, EntraEmulator
from tests.conftest import FakeClock
from tests.support import CountingVerifies

OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"


@pytest.fixture
async def check(entra_emulator: EntraEmulator) -> AsyncIterator[TokenValidator]:
    async with TokenValidator(entra_emulator.config()) as validator:
        yield validator


async def refusal(validator: TokenValidator, token: str | bytes) -> tuple[str, str]:
    with pytest.raises(EntraGuardError) as info:
        await validator.validate(token)
    return info.value.reason, info.value.description


async def test_each_header_refusal_says_what_is_wrong(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    issue = entra_emulator.issue_token
    assert await refusal(check, issue(roles=["r"], algorithm="RS512")) == (
        "algorithm_not_allowed",
        "The token's signing algorithm is not accepted",
    )
    assert await refusal(check, issue(roles=["r"], headers={"crit": ["exp"], "exp": 1})) == (
        "unsupported_header",
        "The token has critical header parameters this API does not support",
    )
    assert await refusal(check, issue(roles=["r"], headers={"nonce": "abc"})) == (
        "graph_token",
        "The token is meant for Microsoft Graph, not for this API: request a token with this "
        "API's scope",
    )
    assert await refusal(check, issue(roles=["r"], headers={"x5t": 7})) == (
        "malformed_token",
        "The token is malformed: 'kid' or 'x5t' is not a string",
    )
    assert await refusal(check, issue(roles=["r"], headers={"kid": "", "x5t": REMOVE})) == (
        "key_not_found",
        "The token names no signing key ('kid')",
    )
    assert await refusal(check, issue(roles=["r"], claims={"ver": "3.0"})) == (
        "version_not_accepted",
        "The token's version ('ver') is not accepted",
    )
    assert await refusal(check, "é".encode() + issue(roles=["r"]).encode()) == (
        "malformed_token",
        "The token is malformed: it contains non-ASCII bytes",
    )


async def test_run_time_tenant_decisions_refuse_with_their_reason_and_log_a_failure(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = {OTHER_TENANT}
    broken = [False]

    async def tenant_allowed(tid: str) -> bool:
        if broken[0]:
            raise RuntimeError("the customer database is down")
        return tid in allowed

    entra_emulator.add_tenant(OTHER_TENANT)
    config = entra_emulator.config(tenant_id="organizations", tenant_allowed=tenant_allowed)
    clock.advance(time.time() - clock())  # the tokens' lifetimes are on the real clock
    async with TokenValidator(config, clock=clock) as check:
        token = entra_emulator.issue_token(tenant_id=OTHER_TENANT, roles=["r"])
        assert (await check.validate(token)).tenant_id == OTHER_TENANT
        allowed.clear()  # the app removes the tenant; the remembered token stops once it ages
        clock.advance(config.tenant_decision_ttl)
        assert await refusal(check, token) == (
            "tenant_not_allowed",
            "The token's tenant is not allowed by this API",
        )
        broken[0] = True
        fourth = entra_emulator.add_tenant()
        caplog.set_level(logging.ERROR, logger="entra_guard.validation")
        assert await refusal(check, entra_emulator.issue_token(tenant_id=fourth, roles=["r"])) == (
            "tenant_decision_unavailable",
            "Whether the token's tenant is allowed could not be decided now",
        )
    [record] = [r for r in caplog.records if r.name == "entra_guard.validation"]
    assert record.getMessage() == "the tenant_allowed function failed"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the customer database is down"


async def test_a_bad_signature_and_a_key_pinned_to_another_algorithm_say_the_same(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    forged = entra_emulator.issue_token(
        roles=["r"], key=EntraEmulator.generate_key(),
        headers={"kid": entra_emulator.current_key.kid},
    )  # fmt: skip
    words = ("invalid_signature", "The token's signature is invalid")
    assert await refusal(check, forged) == words
    # The same words when the key's own 'alg' pins it to another algorithm: nothing is verified.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = SigningKey(kid="k", x5t=None, public_key=private.public_key(), issuer=None, alg="RS256")
    ps256 = get_default_algorithms()["PS256"]
    signature = ps256.sign(b"a.b", private)
    TokenValidator.verify_signature(b"a.b", signature, ps256, "PS256", replace(key, alg=None))
    with pytest.raises(EntraGuardError) as refused:
        TokenValidator.verify_signature(b"a.b", signature, ps256, "PS256", key)
    assert (refused.value.reason, refused.value.description) == words


def _with_segment(token: str, index: int, raw: bytes) -> str:
    parts = token.split(".")
    parts[index] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return ".".join(parts)


async def test_a_header_or_payload_that_is_no_json_object_is_named_in_the_refusal(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(roles=["r"])
    malformed = "The token is malformed: the {} {}"
    cases = [
        (0, b'{"alg":', malformed.format("header", "is not JSON")),
        (0, b'{"alg":"RS256","alg":"none"}', malformed.format("header", "repeats a member")),
        (1, b"[1, 2]", malformed.format("payload", "is not a JSON object")),
        (1, b'{"ver":"2.0"', malformed.format("payload", "is not JSON")),
        (1, b'{"ver":"2.0","ver":"1.0"}', malformed.format("payload", "repeats a member")),
    ]
    for index, raw, description in cases:
        assert await refusal(check, _with_segment(token, index, raw)) == (
            "malformed_token",
            description,
        )


@pytest.mark.parametrize("alg", [["RS256"], {"name": "RS256"}, 256, None])
async def test_an_alg_that_is_not_a_string_is_an_algorithm_not_allowed(
    entra_emulator: EntraEmulator, check: TokenValidator, alg: object
) -> None:
    token = entra_emulator.issue_token(roles=["r"], headers={"alg": alg})
    assert await refusal(check, token) == (
        "algorithm_not_allowed",
        "The token's signing algorithm is not accepted",
    )


@pytest.mark.parametrize(
    "public_key",
    [
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ],
    ids=["EC P-256", "Ed25519"],
)
def test_a_published_key_of_another_type_verifies_nothing(public_key: object) -> None:
    """An RS256 token naming a ``kid`` whose published key is not RSA: the signature library
    raises (``TypeError``) rather than answering no; that is a refusal too, never a pass."""
    key = SigningKey(kid="k", x5t=None, public_key=public_key, issuer=None, alg=None)  # type: ignore[arg-type]
    with pytest.raises(EntraGuardError) as refused:
        TokenValidator.verify_signature(
            b"a.b", b"\x01" * 256, get_default_algorithms()["RS256"], "RS256", key
        )
    assert (refused.value.reason, refused.value.description) == (
        "invalid_signature",
        "The token's signature is invalid",
    )


class _Counting(TokenValidator):
    """Counts the slow steps a warm validator must skip (headers checked, keys looked up)."""

    headers_checked = 0

    def check_header(self, header: dict[str, Any]) -> Any:
        self.headers_checked += 1
        return super().check_header(header)


async def test_warm_keys_and_a_known_header_take_the_fast_path(
    entra_emulator: EntraEmulator,
) -> None:
    """With the key set loaded, a token of a known key is verified without asking the key
    store (no await, no lock), and a header seen before is not checked again."""
    config = replace(entra_emulator.config(), token_cache_size=0)
    validator = _Counting(config)
    async with validator:
        await validator.prefetch()
        store = validator.key_store
        original = store.find_key
        calls: list[object] = []

        async def find_key(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return await original(*args, **kwargs)

        store.find_key = find_key  # type: ignore[method-assign]
        by_kid = entra_emulator.issue_token(roles=["r"], headers={"x5t": REMOVE})
        by_x5t_only = entra_emulator.issue_token(
            roles=["r"], headers={"kid": REMOVE, "x5t": entra_emulator.current_key.kid}
        )
        for token in (by_kid, by_kid, by_x5t_only, by_x5t_only):
            principal = await validator.validate(token)
            assert principal.roles == {"r"}
        assert calls == []
        assert validator.headers_checked == 2  # once per distinct header


async def test_a_statically_allowed_tenant_never_asks_the_run_time_function(
    entra_emulator: EntraEmulator,
) -> None:
    """``allowed_tenants`` decides first, on a fresh token and on a remembered one alike: the
    app's function is asked only about tenants the list does not name."""
    asked: list[str] = []

    async def tenant_allowed(tid: str) -> bool:
        asked.append(tid)
        return False

    config = entra_emulator.config(
        tenant_id="organizations",
        allowed_tenants=[entra_emulator.tenant_id],
        tenant_allowed=tenant_allowed,
    )
    async with TokenValidator(config) as check:
        token = entra_emulator.issue_token(roles=["r"])
        for _ in range(2):  # verified, then remembered
            assert (await check.validate(token)).tenant_id == entra_emulator.tenant_id
        assert asked == []


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_a_remembered_token_is_not_honoured_before_its_nbf_or_iat(
    entra_emulator: EntraEmulator, claim: str
) -> None:
    """The cache keeps the later of ``nbf`` and ``iat``: asked at an earlier time (a clock
    stepped back), a remembered token is checked in full again, and refused."""
    start = time.time() + 30  # within the 60 s leeway
    other = "iat" if claim == "nbf" else "nbf"
    token = entra_emulator.issue_token(roles=["r"], now=start, claims={other: REMOVE})
    validator = CountingVerifies(entra_emulator.config())
    async with validator:
        leeway = validator.config.leeway
        await validator.validate(token, now=start - 30)
        await validator.validate(token, now=start - 30)
        assert validator.verified == 1  # remembered
        with pytest.raises(EntraGuardError) as refused:
            await validator.validate(token, now=start - leeway - 1)
        assert refused.value.reason == "token_not_yet_valid"


async def test_a_token_without_nbf_or_iat_is_remembered(entra_emulator: EntraEmulator) -> None:
    token = entra_emulator.issue_token(roles=["r"], claims={"nbf": REMOVE, "iat": REMOVE})
    validator = CountingVerifies(entra_emulator.config())
    async with validator:
        for _ in range(3):
            await validator.validate(token)
        assert validator.verified == 1


async def test_the_validated_principal_keeps_the_payload_text(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    """What the token cache holds per token: the payload's text, parsed again only when a
    claim property is read (the memory bound per cached token)."""
    principal = await check.validate(entra_emulator.issue_token(roles=["r"], claims={"n": 7}))
    assert isinstance(principal.claims, LazyClaims)
    assert principal.claims["n"] == 7


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
async def test_the_size_limit_holds_for_a_token_given_as_bytes_too(
    check: TokenValidator, as_bytes: bool
) -> None:
    limit = check.config.max_token_bytes
    at_limit, over = "a" * limit, "a" * (limit + 1)
    reason, _ = await refusal(check, at_limit.encode() if as_bytes else at_limit)
    assert reason == "malformed_token"  # long enough to be looked at
    assert await refusal(check, over.encode() if as_bytes else over) == (
        "token_too_large",
        f"The token is longer than {limit} bytes",
    )


async def test_an_unknown_key_is_refused_with_its_description(
    entra_emulator: EntraEmulator, check: TokenValidator
) -> None:
    token = entra_emulator.issue_token(roles=["r"], headers={"kid": "nobody-publishes-this"})
    assert await refusal(check, token) == ("key_not_found", "The signature key was not found")


def test_a_validator_takes_a_key_store_or_an_http_client_not_both(
    entra_emulator: EntraEmulator,
) -> None:
    config = entra_emulator.config()
    with pytest.raises(ValueError, match=r"^give either key_store or http_client, not both$"):
        TokenValidator(config, key_store=KeyStore(config), http_client=httpx.AsyncClient())


async def test_a_given_http_client_fetches_the_keys(entra_emulator: EntraEmulator) -> None:
    fetched: list[str] = []

    async def record(request: httpx.Request) -> None:
        fetched.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        async with TokenValidator(entra_emulator.config(), http_client=http) as validator:
            await validator.validate(entra_emulator.issue_token(roles=["r"]))
        assert any(path.endswith("/openid-configuration") for path in fetched)
        assert not http.is_closed  # the caller's client: the validator leaves it open
