"""Conformance with real Entra-issued tokens, replayed through the emulator over loopback.

The fixtures live in ``../shared/fixtures/entra-real/`` (see its README) and are read in place.
Every token is checked with the clock inside its lifetime, against the real metadata document of
its version (served by the emulator with only ``jwks_uri`` pointing home) and the key set that
signed it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from entra_guard import EntraGuardError, InvalidToken, KeysUnavailable, TokenValidator
from entra_guard.testing import EntraEmulator
from tests.conftest import REAL_FIXTURES


def load_cases() -> list[dict[str, Any]]:
    path = REAL_FIXTURES / "tokens.json"
    if not path.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(path.read_text())
    return cases


CASES = load_cases()
# Without the fixtures, each test gets one stand-in case, and its ``real_fixtures`` fixture skips
# it (or, with CI set, errors): never a test that silently collects nothing.
_MISSING = [pytest.param({}, id="fixtures-missing")]
ALL_CASES = [pytest.param(c, id=c["name"]) for c in CASES] or _MISSING
VALID_CASES = [pytest.param(c, id=c["name"]) for c in CASES if c["expected_valid"]] or _MISSING


def replay(
    idp: EntraEmulator, fixtures: Path, case: dict[str, Any], key_file: str | None = None
) -> TokenValidator:
    version = case["version"]
    suffix = "v2" if version == "2.0" else "v1"
    idp.serve_documents(
        tenant="common",
        version=version,
        metadata=json.loads((fixtures / f"metadata-common-{suffix}.json").read_text()),
        jwks=json.loads((fixtures / (key_file or case["key_file"])).read_text()),
    )
    config = idp.config(tenant_id="common", allowed_tenants=[case["tid"]], audiences=[case["aud"]])
    return TokenValidator(config)


@pytest.mark.parametrize("case", ALL_CASES)
async def test_real_token(
    entra_emulator: EntraEmulator, real_fixtures: Path, case: dict[str, Any]
) -> None:
    async with replay(entra_emulator, real_fixtures, case) as check:
        if case["kind"] == "access" and case["expected_valid"]:
            principal = await check.validate(case["token"], now=case["valid_at"])
            assert principal.tenant_id == case["tid"]
            assert principal.version == case["version"]
            assert principal.claims["iss"] == case["iss"]
            assert principal.scopes  # both real access tokens are delegated
            assert not principal.app_only
            return
        with pytest.raises(InvalidToken) as info:
            await check.validate(case["token"], now=case["valid_at"])
        if not case["expected_valid"]:
            assert info.value.reason == "invalid_signature"  # only the signature can catch it
        else:
            # An ID token: genuine, for us, in its lifetime, but not an access token.
            assert info.value.reason == "not_an_access_token"


@pytest.mark.parametrize("case", VALID_CASES)
async def test_real_token_lifetime_boundaries(
    entra_emulator: EntraEmulator, real_fixtures: Path, case: dict[str, Any]
) -> None:
    leeway = 60
    async with replay(entra_emulator, real_fixtures, case) as check:
        for now, expected in (
            (case["exp"] + leeway, "token_expired"),
            (case["nbf"] - leeway - 1, "token_not_yet_valid"),
        ):
            with pytest.raises(InvalidToken) as info:
                await check.validate(case["token"], now=now)
            assert info.value.reason == expected
        for now in (case["exp"] + leeway - 1, case["nbf"] - leeway):
            try:
                await check.validate(case["token"], now=now)
            except EntraGuardError as exc:
                assert exc.reason == "not_an_access_token"
                assert case["kind"] == "id"


@pytest.mark.parametrize("case", VALID_CASES)
async def test_real_tokens_fail_against_todays_keys(
    entra_emulator: EntraEmulator, real_fixtures: Path, case: dict[str, Any]
) -> None:
    todays = "jwks-common-v2.json" if case["version"] == "2.0" else "jwks-common-v1.json"
    async with replay(entra_emulator, real_fixtures, case, key_file=todays) as check:
        with pytest.raises(InvalidToken) as info:
            await check.validate(case["token"], now=case["valid_at"])
        assert info.value.reason == "key_not_found"


async def test_the_verbatim_identitymodel_key_set_is_unusable(
    entra_emulator: EntraEmulator, real_fixtures: Path
) -> None:
    case = next(c for c in CASES if c["key_file"] == "jwks-identitymodel-2014.json")
    verbatim = "verbatim/identitymodel-JsonWebKeySet.json"
    async with replay(entra_emulator, real_fixtures, case, key_file=verbatim) as check:
        with pytest.raises(KeysUnavailable):
            await check.validate(case["token"], now=case["valid_at"])
