"""The verified-token cache's safety rules: expiry, bound, key removal, off switch."""

from __future__ import annotations

import pytest

from entra_guard import InvalidToken, KeysUnavailable
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock
from tests.support import settle, validator_for

NOW = 1_800_000_000.0
HOUR = 3600.0


async def test_a_repeated_token_is_served_from_the_cache(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator)
    token = entra_emulator.issue_token(roles=["Orders.Read"], now=NOW)
    first = await check.validate(token, now=NOW)
    assert check.cache is not None
    assert len(check.cache) == 1
    again = await check.validate(token, now=NOW + 10)
    assert again is first  # the same object: no signature, no claims were checked again
    await check.aclose()


async def test_an_entry_never_outlives_its_token(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator)
    token = entra_emulator.issue_token(roles=["r"], now=NOW, lifetime=600)
    await check.validate(token, now=NOW)
    assert (await check.validate(token, now=NOW + 600 + 59)).roles == {"r"}  # within leeway
    with pytest.raises(InvalidToken) as info:
        await check.validate(token, now=NOW + 600 + 60)
    assert info.value.reason == "token_expired"
    assert check.cache is not None
    assert len(check.cache) == 0
    await check.aclose()


async def test_a_hit_before_nbf_is_checked_in_full(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator)
    token = entra_emulator.issue_token(roles=["r"], now=NOW)  # nbf = iat = NOW
    await check.validate(token, now=NOW)
    with pytest.raises(InvalidToken) as info:
        await check.validate(token, now=NOW - 61)
    assert info.value.reason == "token_not_yet_valid"
    await check.aclose()


async def test_the_cache_is_bounded(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator, token_cache_size=5)
    tokens = [entra_emulator.issue_token(roles=["r"], claims={"uti": str(i)}) for i in range(20)]
    for token in tokens:
        await check.validate(token)
    assert check.cache is not None
    assert (len(check.cache), check.cache.maxsize) == (5, 5)
    first = await check.validate(tokens[-1])
    assert await check.validate(tokens[-1]) is first  # the newest are kept
    await check.aclose()


async def test_a_removed_key_stops_its_cached_tokens(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    check = validator_for(entra_emulator, clock, refresh_interval=HOUR)
    token = entra_emulator.issue_token(roles=["r"])
    await check.validate(token)
    old = entra_emulator.current_key.kid
    entra_emulator.rotate_keys()
    entra_emulator.remove_key(old)
    assert (await check.validate(token)).roles == {"r"}  # until the keys are refreshed
    clock.advance(1.06 * HOUR)
    await check.validate(token)  # stale keys: the hit starts the background refresh
    await settle(check.key_store)
    with pytest.raises(InvalidToken) as info:
        await check.validate(token)
    assert info.value.reason == "key_not_found"
    await check.aclose()


async def test_a_refresh_that_keeps_the_key_keeps_the_entries(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    check = validator_for(entra_emulator, clock, refresh_interval=HOUR)
    token = entra_emulator.issue_token(roles=["r"])
    first = await check.validate(token)
    entra_emulator.add_key()  # the JWKS changes, the signing key stays
    clock.advance(1.06 * HOUR)
    await check.validate(token)
    await settle(check.key_store)
    assert entra_emulator.fetch_count("jwks") == 2
    assert await check.validate(token) is first
    await check.aclose()


async def test_no_keys_at_all_means_no_hits(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    check = validator_for(
        entra_emulator, clock, refresh_interval=HOUR, last_known_good_lifetime=2 * HOUR
    )
    token = entra_emulator.issue_token(roles=["r"], lifetime=10 * HOUR)
    await check.validate(token)
    entra_emulator.stop()
    clock.advance(2 * HOUR + 1)  # the last known good keys are too old now
    with pytest.raises(KeysUnavailable):
        await check.validate(token)
    await check.aclose()


async def test_the_cache_can_be_turned_off(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator, token_cache_size=0)
    token = entra_emulator.issue_token(roles=["r"])
    assert check.cache is None
    assert await check.validate(token) is not await check.validate(token)
    await check.aclose()


async def test_only_the_whole_token_hits(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator)
    token = entra_emulator.issue_token(roles=["r"])
    await check.validate(token)
    header, payload, signature = token.split(".")
    other = entra_emulator.issue_token(roles=["r"])
    with pytest.raises(InvalidToken) as info:  # same header and claims, another signature
        await check.validate(f"{header}.{payload}.{other.split('.')[2]}")
    assert info.value.reason == "invalid_signature"
    forged = f"{header}.{payload}.{signature[:-2]}AA"
    with pytest.raises(InvalidToken):
        await check.validate(forged)
    assert check.cache is not None
    assert len(check.cache) == 1  # failures are never remembered
    await check.aclose()
