"""Rules of ``principal`` that mutation testing found untested (benchmarks/MUTATION.md).

Principals come from emulator tokens checked by a real validator over loopback HTTP.
"""

from __future__ import annotations

import json
import uuid
from collections import UserDict
from types import MappingProxyType
from typing import Any

import pytest

from entra_guard import EntraPrincipal
from entra_guard import principal as principal_module
from entra_guard.principal import LazyClaims, guest_by_claims
from entra_guard.testing import REMOVE, EntraEmulator
from tests.support import validator_for


async def principal(
    emulator: EntraEmulator, *, app_only: bool = False, **claims: Any
) -> EntraPrincipal:
    token = emulator.issue_token(app_only=app_only, roles=["Orders.Admin"], claims=claims)
    async with validator_for(emulator) as check:
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


SALES = "6b0e1f2a-1111-4c5b-9c55-3f2d6a3f7e11"
OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"


async def test_group_role_and_scope_questions(entra_emulator: EntraEmulator) -> None:
    user = await principal(
        entra_emulator, groups=[SALES.upper(), 7], scp="Orders.Read profile",
        wids=["62E90394-69F5-4237-9190-012177145E10", None], xms_cc=["CP1"],
    )  # fmt: skip
    assert user.groups == (SALES,)  # lower-case ids; anything but a string left out
    assert user.in_group(SALES.upper())
    assert not user.in_group(SALES[:-1])
    assert user.has_role("Orders.Admin")
    assert not user.has_role("orders.admin")
    assert user.has_scope("profile")
    assert not user.has_scope("Orders.Write")
    assert user.has_any_role(["x", "Orders.Admin"])
    assert not user.has_any_role(["x"])
    assert user.has_any_scope(["x", "profile"])
    assert not user.has_any_scope(["x"])
    assert user.wids == {"62e90394-69f5-4237-9190-012177145e10"}
    assert user.is_cae_capable
    assert not user.app_only
    bare = await principal(entra_emulator, wids="not a list", xms_cc=REMOVE)
    assert (bare.wids, bare.xms_cc, bare.is_cae_capable) == (frozenset(), frozenset(), False)


async def test_a_guest_of_another_tenant_is_told_by_the_tenant_its_idp_names(
    entra_emulator: EntraEmulator,
) -> None:
    own = entra_emulator.tenant_id
    member = await principal(entra_emulator, idp=f"https://sts.windows.net/{own.upper()}/")
    assert not member.is_guest
    assert member.home_tenant_id == own
    guest = await principal(entra_emulator, idp=f"https://sts.windows.net/{OTHER_TENANT.upper()}/")
    assert guest.is_guest
    assert guest.home_tenant_id == OTHER_TENANT
    social = await principal(entra_emulator, idp="google.com")
    assert (social.is_guest, social.home_tenant_id) == (True, None)


async def test_an_app_token_is_app_only_even_with_scopes_and_its_roles_are_kept(
    entra_emulator: EntraEmulator,
) -> None:
    app = await principal(entra_emulator, app_only=True, idtyp="app", scp="x")
    assert app.app_only
    assert app.roles == {"Orders.Admin"}
    user = await principal(entra_emulator, idtyp="user")
    assert not user.app_only


def test_a_principal_built_directly_lists_its_permissions() -> None:
    """As Starlette's ``@requires`` reads them: ``authenticated``, then roles, then scopes."""
    built = EntraPrincipal(
        tenant_id=OTHER_TENANT, client_id="c", object_id=None, subject=None,
        roles=frozenset({"Orders.Admin"}), scopes=frozenset({"Orders.Read"}), app_only=False,
        version="2.0", expires_on=0.0,
    )  # fmt: skip
    assert built.permissions == ("authenticated", "Orders.Admin", "Orders.Read")


def test_from_claims_takes_a_dict_over_and_copies_any_other_mapping() -> None:
    claims: dict[str, Any] = {"tid": OTHER_TENANT, "exp": 1, "scp": "a", "oid": "o"}
    taken = EntraPrincipal.from_claims(claims, version="2.0", client_id="c")
    claims["later"] = 1
    assert "later" in taken.claims  # the validator's own payload: not copied
    other: UserDict[str, Any] = UserDict({"tid": OTHER_TENANT, "exp": 1, "scp": "a"})
    copied = EntraPrincipal.from_claims(other, version="2.0", client_id="c")
    other["later"] = 1
    assert "later" not in copied.claims
    assert copied.claims["scp"] == "a"


def test_an_idp_equal_to_the_issuer_is_no_guest() -> None:
    same = "https://idp.example/"
    assert not guest_by_claims({"idp": same, "iss": same}, OTHER_TENANT)
    assert guest_by_claims({"idp": same, "iss": "https://other.example/"}, OTHER_TENANT)


async def test_the_claims_of_a_validated_token_answer_membership(
    entra_emulator: EntraEmulator,
) -> None:
    user = await principal(entra_emulator, scp="Orders.Read")
    assert "scp" in user.claims
    assert "nope" not in user.claims


def test_lazy_claims_read_like_the_read_only_mapping_they_stand_for() -> None:
    """What ``from_claims`` gives (a ``MappingProxyType``), ``from_payload`` gives lazily."""
    payload = b'{"oid": "o", "roles": ["A"], "n": null}'
    lazy, eager = LazyClaims(payload), MappingProxyType(json.loads(payload))
    assert lazy.get("absent", "fallback") == eager.get("absent", "fallback") == "fallback"
    assert lazy.get("absent") is None
    assert lazy.get("n", "fallback") is None  # a null claim is there, not absent
    assert (lazy["oid"], lazy.get("roles")) == ("o", ["A"])
    with pytest.raises(KeyError):
        lazy["absent"]
    assert ("oid" in lazy, "absent" in lazy) == (True, False)
    assert (list(lazy), len(lazy), dict(lazy)) == (list(eager), 3, dict(eager))
    copied = lazy.copy()
    copied["oid"] = "changed"  # a copy, not the claims themselves
    assert lazy["oid"] == "o"
    assert repr(lazy) == "LazyClaims({'oid': 'o', 'roles': ['A'], 'n': None})"
    assert not hasattr(lazy, "__setitem__")


def _built(**claims: Any) -> EntraPrincipal:
    return EntraPrincipal.from_claims(
        {"tid": OTHER_TENANT, "exp": 1, **claims}, version="2.0", client_id="c"
    )


def test_role_and_scope_sets_are_built_right_and_shared_by_principals_alike() -> None:
    """One frozenset per distinct set of roles or scopes (a principal per cached token), kept
    per process: names no earlier test used make this test build them, not find them."""
    role = f"Role.{uuid.uuid4().hex}"
    first, second = (
        _built(roles=[role, "B"], scp=f"s1 {role}"),
        _built(roles=[role, "B"], scp=f"s1 {role}"),
    )
    assert (first.roles, first.scopes) == (frozenset({role, "B"}), frozenset({"s1", role}))
    assert first.permissions[0] == "authenticated"
    assert sorted(first.permissions[1:]) == sorted([role, "B", "s1", role])
    assert first.roles is second.roles
    assert first.scopes is second.scopes
    assert first.permissions is second.permissions
    # No roles, and a scp that is not a string (from_claims takes claims as given): empty sets.
    odd = _built(scp=[f"s.{uuid.uuid4().hex}"])
    assert (odd.roles, odd.scopes, odd.permissions) == (
        frozenset(),
        frozenset(),
        ("authenticated",),
    )


def test_the_shared_sets_are_bounded() -> None:
    for _ in range(principal_module._MAX_SHARED + 10):
        _built(roles=[uuid.uuid4().hex])
        assert len(principal_module._shared) <= principal_module._MAX_SHARED


def test_tenant_and_client_ids_are_one_object_per_value_and_bounded() -> None:
    tenant = str(uuid.uuid4())
    first = EntraPrincipal.from_claims({"tid": tenant, "exp": 1}, version="2.0", client_id="c")
    copy = "".join(tenant)  # equal, another object
    assert copy is not tenant
    second = EntraPrincipal.from_claims({"tid": copy, "exp": 1}, version="2.0", client_id="c")
    assert second.tenant_id == tenant
    assert second.tenant_id is first.tenant_id
    odd = EntraPrincipal.from_claims({"tid": 7, "exp": 1}, version="2.0", client_id="c")
    given: Any = odd.tenant_id
    assert given == 7  # taken as given (from_claims trusts the validator's checks)
    for _ in range(principal_module._MAX_SHARED + 10):
        EntraPrincipal.from_claims(
            {"tid": str(uuid.uuid4()), "exp": 1}, version="2.0", client_id="c"
        )
        assert len(principal_module._texts) <= principal_module._MAX_SHARED


async def test_subject_object_id_and_user_name_are_each_the_token_own(
    entra_emulator: EntraEmulator,
) -> None:
    oid = str(uuid.uuid4())
    user = await principal(
        entra_emulator, sub="pairwise-sub", oid=oid, preferred_username="ada@contoso.test",
        upn="ada.lovelace@contoso.test",
    )  # fmt: skip
    assert (user.subject, user.object_id) == ("pairwise-sub", oid)
    assert user.preferred_username == "ada@contoso.test"  # preferred_username before upn
    # Equal sub and oid (v1 and app-only tokens) are kept as one object.
    same = _built(sub="".join(oid), oid=oid)
    assert same.subject == same.object_id == oid
    assert same.subject is same.object_id
