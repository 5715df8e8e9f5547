"""Test users: who can sign in at the emulator, and what their tokens say about them.

A user has a user principal name (``upn``, the sign-in name), a password, a display name, an
immutable object id (``oid``), group memberships (object ids, the ``groups`` claim), app roles
assigned on APIs (the ``roles`` claim of tokens for that API) and whether they are a guest
(a B2B user homed in another tenant). Users are immutable values; the directory swaps its
mapping under a lock, so the server thread never sees half a registration.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from entra_guard.config import is_guid

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from entra_guard.testing.registrations import Registry

__all__ = ["EmulatorUser", "UserDirectory", "generate_password"]

# A guest's home tenant is derived from its UPN's domain, so it is stable across runs.
_HOME_TENANT_NAMESPACE = uuid.UUID("3c0b6a53-6b0e-4bd4-9c55-3f2d6a3f7e11")


def generate_password() -> str:
    """A password the emulator hands out: 20 URL-safe characters, never logged by it."""
    return secrets.token_urlsafe(15)


@dataclass(frozen=True, slots=True)
class EmulatorUser:
    """One user of the emulator's tenant. The password stays out of the repr."""

    #: The user principal name they sign in with (``adele@contoso.test``).
    upn: str
    password: str = field(repr=False)
    #: Display name (the ``name`` claim).
    name: str
    #: The immutable object id (the ``oid`` claim), a lower-case GUID.
    object_id: str
    #: Object ids of the groups they belong to (the ``groups`` claim), in registration order.
    groups: tuple[str, ...] = ()
    #: App roles assigned to them, keyed by the API's client id.
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: A B2B guest: homed in another tenant, so ``idp`` names that tenant and v1 tokens carry
    #: no ``upn``.
    guest: bool = False

    @property
    def home_tenant_id(self) -> str:
        """The tenant a guest comes from (a GUID derived from the UPN's domain)."""
        domain = self.upn.rpartition("@")[2].lower()
        return str(uuid.uuid5(_HOME_TENANT_NAMESPACE, domain))

    @property
    def given_name(self) -> str:
        return self.name.partition(" ")[0]

    @property
    def family_name(self) -> str:
        return self.name.partition(" ")[2]

    def password_matches(self, candidate: str) -> bool:
        """Constant-time comparison, as for client secrets."""
        return secrets.compare_digest(candidate.encode("utf-8"), self.password.encode("utf-8"))


class UserDirectory:
    """The users of one emulator, found by UPN (without regard to case, as Entra does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, EmulatorUser] = {}

    def add(
        self,
        registry: Registry,
        *,
        upn: str,
        password: str | None = None,
        name: str | None = None,
        object_id: str | None = None,
        groups: Iterable[str] = (),
        roles: Mapping[str, Iterable[str]] | None = None,
        guest: bool = False,
    ) -> EmulatorUser:
        """Register a user; ``ValueError`` for a malformed field or a UPN taken already."""
        if not isinstance(upn, str) or upn.count("@") != 1 or upn != upn.strip() or " " in upn:
            raise ValueError(f"upn must look like name@domain, got {upn!r}")
        if password is not None and (not isinstance(password, str) or not password):
            raise ValueError("password must be a non-empty string, or None to generate one")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty string or None, got {name!r}")
        if not isinstance(guest, bool):
            raise ValueError(f"guest must be true or false, got {guest!r}")
        if isinstance(groups, str):
            raise ValueError(f"groups must be a list of group object ids, not {groups!r}")
        group_ids = tuple(dict.fromkeys(_guid("groups", group) for group in groups))
        user = EmulatorUser(
            upn=upn,
            password=generate_password() if password is None else password,
            name=name if name is not None else upn.partition("@")[0],
            object_id=str(uuid.uuid4()) if object_id is None else _guid("object_id", object_id),
            groups=group_ids,
            roles=_assigned_roles(registry, roles or {}),
            guest=guest,
        )
        with self._lock:
            if user.upn.lower() in self._users:
                raise ValueError(f"a user {upn!r} exists")
            if any(other.object_id == user.object_id for other in self._users.values()):
                raise ValueError(f"a user with object id {user.object_id!r} exists")
            self._users = {**self._users, user.upn.lower(): user}
        return user

    def find(self, upn: str) -> EmulatorUser | None:
        return self._users.get(upn.strip().lower())

    def by_object_id(self, object_id: str) -> EmulatorUser | None:
        return next((u for u in self._users.values() if u.object_id == object_id), None)

    @property
    def all(self) -> tuple[EmulatorUser, ...]:
        return tuple(self._users.values())


def _guid(what: str, value: object) -> str:
    if not isinstance(value, str) or not is_guid(value):
        raise ValueError(f"{what}: {value!r} is not a GUID")
    return value.lower()


def _assigned_roles(
    registry: Registry, roles: Mapping[str, Iterable[str]]
) -> dict[str, tuple[str, ...]]:
    """Assignments keyed by API client id; the API must exist and define every role."""
    if not hasattr(roles, "items"):
        raise ValueError(f"roles must map an API to app role names, got {roles!r}")
    assigned: dict[str, tuple[str, ...]] = {}
    for resource, names in roles.items():
        api = registry.find_api(resource)
        if api is None:
            raise ValueError(f"roles: no API is registered as {resource!r}; register it first")
        if isinstance(names, str):
            raise ValueError(f"roles[{resource!r}] must be a list of role names, not {names!r}")
        wanted = tuple(names)
        undefined = sorted(str(name) for name in wanted if name not in api.roles)
        if undefined:
            raise ValueError(f"roles: {resource!r} defines no app roles {undefined}")
        assigned[api.client_id] = tuple(dict.fromkeys((*assigned.get(api.client_id, ()), *wanted)))
    return assigned
