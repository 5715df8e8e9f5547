"""The verified-token cache's safety rules: expiry, bound, key removal, off switch."""

from __future__ import annotations

import pytest

from entra_guard import InvalidToken, KeysUnavailable
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock
from tests.support import segments, settle, validator_for

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
    # One character of the signature changed (to another one, always: a fixed replacement
    # would be the original once in a while, and the "forged" token a cache hit).
    swapped = "B" if signature[10] == "A" else "A"
    forged = f"{header}.{payload}.{signature[:10]}{swapped}{signature[11:]}"
    with pytest.raises(InvalidToken):
        await check.validate(forged)
    assert check.cache is not None
    assert len(check.cache) == 1  # failures are never remembered
    await check.aclose()


async def test_a_hit_keeps_its_entry_and_the_least_recently_used_goes(
    entra_emulator: EntraEmulator,
) -> None:
    check = validator_for(entra_emulator, token_cache_size=2)
    first, second, third = (
        entra_emulator.issue_token(roles=["r"], claims={"uti": str(i)}) for i in range(3)
    )
    remembered = await check.validate(first)
    await check.validate(second)
    assert await check.validate(first) is remembered  # a hit: now the most recently used
    await check.validate(third)  # the cache is full: the least recently used (second) goes
    assert check.cache is not None
    assert len(check.cache) == 2
    assert await check.validate(first) is remembered
    again = await check.validate(second)
    assert again is not await check.validate(third)  # validated in full, third stayed
    await check.aclose()


async def test_a_remembered_principal_keeps_every_claim(entra_emulator: EntraEmulator) -> None:
    check = validator_for(entra_emulator)
    extra = {
        "groups": ["A0B1C2D3-0000-0000-0000-000000000001"],
        "xms_cc": ["CP1"],
        "acct": 1,
        "nested": {"deep": [1, 2.5, None, True, "\u00e9"]},
        "big": 2**70,
    }
    token = entra_emulator.issue_token(roles=["r"], claims=extra)
    _, expected, _ = segments(token)
    for _ in range(2):  # fresh, then from the cache
        principal = await check.validate(token)
        assert principal.claims == expected
        assert dict(principal.claims) == expected
        assert principal.claims.copy() == expected  # type: ignore[attr-defined]
        assert len(principal.claims) == len(expected)
        assert "nested" in principal.claims
        assert principal.claims.get("missing", 7) == 7
        assert principal.groups == ("a0b1c2d3-0000-0000-0000-000000000001",)
        assert principal.is_cae_capable
        assert principal.is_guest
        with pytest.raises(TypeError):
            principal.claims["roles"] = ["admin"]  # type: ignore[index]
    assert principal == await check.validate(token)
    await check.aclose()


async def test_a_full_cache_drops_its_least_recently_used_64th(
    entra_emulator: EntraEmulator,
) -> None:
    check = validator_for(entra_emulator, token_cache_size=128)
    tokens = [entra_emulator.issue_token(roles=["r"], claims={"uti": str(i)}) for i in range(129)]
    principals = [await check.validate(token) for token in tokens[:128]]
    assert await check.validate(tokens[0]) is principals[0]  # a hit: the most recent now
    await check.validate(tokens[128])  # 129 entries: the two least recently used go
    assert check.cache is not None
    assert len(check.cache) == 127
    assert await check.validate(tokens[0]) is principals[0]
    assert await check.validate(tokens[3]) is principals[3]
    assert await check.validate(tokens[1]) is not principals[1]  # validated in full again
    assert await check.validate(tokens[2]) is not principals[2]
    await check.aclose()
