"""Rules of ``token_cache`` that mutation testing found untested (benchmarks/MUTATION.md).

Tokens come from the emulator, checked by a real validator over loopback HTTP; times are the
``now=`` of each call.
"""

from __future__ import annotations

from entra_guard.testing import EntraEmulator
from tests.support import validator_for

NOW = 1_800_000_000.0


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
