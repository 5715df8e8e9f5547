"""Rules of ``token_cache`` that mutation testing found untested (benchmarks/MUTATION.md).

Tokens come from the emulator, checked by a real validator over loopback HTTP; times are the
``now=`` of each call.
"""

from __future__ import annotations

import asyncio
import time

from entra_guard import InvalidToken, TokenValidator
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock
from tests.support import validator_for

NOW = 1_800_000_000.0
OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"


async def test_a_hit_at_either_edge_of_the_leeway_is_still_served_from_the_cache(
    entra_emulator: EntraEmulator,
) -> None:
    check = validator_for(entra_emulator)  # leeway 60 s
    token = entra_emulator.issue_token(roles=["r"], now=NOW, lifetime=600)  # nbf = NOW
    first = await check.validate(token, now=NOW)
    assert await check.validate(token, now=NOW - 60) is first  # nbf == now + leeway
    assert await check.validate(token, now=NOW + 600 + 59) is first  # just before exp + leeway
    assert check.cache is not None
    assert len(check.cache) == 1
    await check.aclose()


async def test_a_token_of_a_tenant_removed_at_run_time_is_forgotten(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    allowed = {OTHER_TENANT}

    async def tenant_allowed(tid: str) -> bool:
        return tid in allowed

    entra_emulator.add_tenant(OTHER_TENANT)
    config = entra_emulator.config(tenant_id="organizations", tenant_allowed=tenant_allowed)
    clock.advance(time.time() - clock())  # the tokens' lifetimes are on the real clock
    async with TokenValidator(config, clock=clock) as check:
        token = entra_emulator.issue_token(tenant_id=OTHER_TENANT, roles=["r"])
        first = await check.validate(token)
        assert await check.validate(token) is first  # remembered
        assert check.cache is not None
        assert len(check.cache) == 1
        allowed.clear()
        clock.advance(config.tenant_decision_ttl)
        # Two requests with it at once: both wait on the one decision, both forget the entry.
        refused = await asyncio.gather(*(check.validate(token) for _ in range(2)),
                                       return_exceptions=True)  # fmt: skip
        assert [(type(r), getattr(r, "reason", None)) for r in refused] == [
            (InvalidToken, "tenant_not_allowed")
        ] * 2
        assert len(check.cache) == 0  # forgotten, not kept to be refused again and again
