"""Rules of ``validation`` that mutation testing found untested (benchmarks/MUTATION.md).

Tokens come from the emulator, checked by a real validator over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from entra_guard import EntraGuardError, TokenValidator
from entra_guard.testing import REMOVE, EntraEmulator


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
