"""Rules of ``principal`` that mutation testing found untested (benchmarks/MUTATION.md).

Principals come from emulator tokens checked by a real validator over loopback HTTP.
"""

from __future__ import annotations

from typing import Any

from entra_guard import EntraPrincipal
from entra_guard.testing import REMOVE, EntraEmulator
from tests.support import validator_for


async def principal(idp: EntraEmulator, *, app_only: bool = False, **claims: Any) -> EntraPrincipal:
    token = idp.issue_token(app_only=app_only, roles=["Orders.Admin"], claims=claims)
    async with validator_for(idp) as check:
        return await check.validate(token)


async def test_the_user_name_falls_back_to_upn_and_only_strings_are_kept(
    entra_emulator: EntraEmulator,
) -> None:
    user = await principal(entra_emulator, preferred_username=REMOVE, upn="ada@contoso.test")
    assert user.preferred_username == "ada@contoso.test"
    odd = await principal(entra_emulator, name=7, oid=8, sub=9, preferred_username=10)
    assert (odd.name, odd.object_id, odd.subject, odd.preferred_username) == (None,) * 4
    assert odd.display_name == odd.client_id == odd.identity
    assert odd.permissions == ("authenticated", "Orders.Admin", "access_as_user")
