"""Rules of ``authorization`` that mutation testing found untested (benchmarks/MUTATION.md).

Principals come from emulator tokens checked by a real validator over loopback HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from entra_guard import EntraPrincipal, InsufficientPermissions, ServiceUnavailable
from entra_guard.authorization import GroupRequirement, GroupResolver, Requirement
from entra_guard.testing import REMOVE, EntraEmulator
from tests.support import validator_for

SALES = "6b0e1f2a-1111-4c5b-9c55-3f2d6a3f7e11"
ADMINS = "7c1f2a3b-2222-4c5b-9c55-3f2d6a3f7e11"
OVERAGE = {"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "x"}}}
NOT_CONFIGURED = (
    "The user is in more groups than fit in a token (groups overage), and this API is not "
    "configured to look up group membership: give require_groups a resolver (Microsoft Graph "
    "on behalf of the user), or have the app registration emit only the groups assigned to the "
    "application, or use app roles"
)


async def principal(idp: EntraEmulator, **claims: Any) -> EntraPrincipal:
    """A user's principal, as the validator builds it from a token the emulator signed."""
    token = idp.issue_token(app_only=False, scopes=["Orders.Read"], roles=["Orders.Admin"],
                            claims=claims)  # fmt: skip
    async with validator_for(idp) as check:
        return await check.validate(token)


async def test_a_requirement_needs_every_listed_name_unless_any_of(
    entra_emulator: EntraEmulator,
) -> None:
    caller = await principal(entra_emulator)  # scope Orders.Read, role Orders.Admin
    both_scopes = Requirement.of(scopes=["Orders.Read", "Orders.Write"])
    with pytest.raises(InsufficientPermissions) as refused:
        both_scopes.check(caller)
    assert refused.value.reason == "missing_permission"
    assert refused.value.required == "Orders.Read Orders.Write"
    assert refused.value.description == (
        "This operation requires scope Orders.Read and Orders.Write"
    )
    assert Requirement.of(scopes=["Orders.Read", "Orders.Write"], any_of=True).check(caller)
    either = Requirement.of(roles=["A", "B"], scopes=["C", "D"], any_of=True)
    assert either.describe() == "This operation requires app role A or B or scope C or D"
    with pytest.raises(ValueError, match=r"^roles: ' ' is not a role or scope name$"):
        Requirement.of(roles=[" "])


async def test_overage_refusals_say_why_and_what_to_configure(
    entra_emulator: EntraEmulator,
) -> None:
    overage = await principal(entra_emulator, **OVERAGE)
    with pytest.raises(InsufficientPermissions) as refused:
        await GroupRequirement.of([SALES]).check(overage)
    assert refused.value.reason == "groups_overage"
    assert refused.value.description == NOT_CONFIGURED

    async def never(_: EntraPrincipal) -> frozenset[str]:
        raise AssertionError("a principal without 'oid' must not be looked up")

    no_user = await principal(entra_emulator, oid=REMOVE, **OVERAGE)
    with pytest.raises(InsufficientPermissions) as refused:
        await GroupRequirement.of([SALES], resolver=never).check(no_user)
    assert refused.value.reason == "groups_overage"
    assert refused.value.description == NOT_CONFIGURED.replace(
        "this API is not configured to look up group membership",
        "the token names no user (no 'oid') whose groups could be looked up",
    )


async def test_resolved_groups_are_remembered_per_user_not_shared(
    entra_emulator: EntraEmulator,
) -> None:
    groups = {"alice": frozenset({SALES}), "bob": frozenset({ADMINS})}

    async def resolve(who: EntraPrincipal) -> frozenset[str]:
        return groups[str(who.name)]

    resolver = GroupResolver(resolve)
    alice = await principal(entra_emulator, name="alice", oid="a" * 8, **OVERAGE)
    bob = await principal(entra_emulator, name="bob", oid="b" * 8, **OVERAGE)
    assert await resolver.groups_of(alice) == {SALES}
    assert await resolver.groups_of(bob) == {ADMINS}  # not alice's answer, remembered
    sales = GroupRequirement.of([SALES], resolver=resolver)
    assert await sales.check(alice) is alice
    with pytest.raises(InsufficientPermissions) as refused:
        await sales.check(bob)
    assert refused.value.reason == "missing_group"


async def test_a_resolver_answering_a_list_is_a_503_and_logged(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    async def a_list(_: EntraPrincipal) -> Any:
        return [SALES]  # not a set: the contract says a set of group ids

    overage = await principal(entra_emulator, **OVERAGE)
    with (
        caplog.at_level(logging.ERROR, "entra_guard.authorization"),
        pytest.raises(ServiceUnavailable) as refused,
    ):
        await GroupRequirement.of([SALES], resolver=a_list).check(overage)
    assert refused.value.reason == "groups_unavailable"
    assert refused.value.description == "The user's group membership could not be looked up"
    [record] = caplog.records
    assert record.getMessage() == "resolving the groups of an overage token failed"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == (
        f"a group resolver must return a set of group ids, got ['{SALES}']"
    )


async def test_a_group_requirement_needs_every_group_unless_any_of(
    entra_emulator: EntraEmulator,
) -> None:
    sales_only = await principal(entra_emulator, groups=[SALES])
    both = GroupRequirement.of([SALES, ADMINS])
    with pytest.raises(InsufficientPermissions) as refused:
        await both.check(sales_only)
    assert refused.value.reason == "missing_group"
    assert refused.value.description == (
        f"This operation requires membership of group {SALES} and {ADMINS}"
    )
    either = GroupRequirement.of([SALES, ADMINS], any_of=True)
    assert await either.check(sales_only) is sales_only
    assert either.describe() == f"This operation requires membership of group {SALES} or {ADMINS}"
    one = GroupRequirement.of(SALES.upper())  # one id as a plain string, any case
    assert one.groups == {SALES}
    assert await one.check(sales_only) is sales_only
    with pytest.raises(ValueError, match=r"^a group requirement needs at least one group"):
        GroupRequirement.of([])


@pytest.mark.parametrize(
    ("kind", "name"),
    [("roles", ""), ("roles", "a b"), ("scopes", 'a"b'), ("scopes", "a\\b"), ("roles", 7)],
)
def test_role_and_scope_names_that_cannot_be_in_a_token_are_refused(
    kind: str, name: object
) -> None:
    names: Any = [name]  # wrong on purpose: what a caller's typo or a config file can hold
    with pytest.raises(ValueError, match=r"^") as refused:
        Requirement.of(**{kind: names})
    assert str(refused.value) == f"{kind}: {name!r} is not a role or scope name"


def test_a_requirement_takes_one_name_as_a_string_and_needs_at_least_one() -> None:
    assert Requirement.of(roles="Orders.X").roles == {"Orders.X"}  # 'X' is an ordinary letter
    assert Requirement.of(scopes="Orders.Read").scopes == {"Orders.Read"}
    with pytest.raises(ValueError, match=r"^a requirement needs at least one role or scope$"):
        Requirement.of()
