"""Route-level permission rules, shared by the FastAPI dependencies and the Starlette decorator.

A rule names the app roles and/or delegated scopes a route needs. App-only callers (client
credentials) carry ``roles``; users' apps carry ``scp``; Microsoft's "scope or app permission"
accepts either for the same permission. Failing a rule raises ``InsufficientPermissions``,
which the middleware answers with 403 ``insufficient_scope``.

A ``GroupRequirement`` names groups (object ids) instead. When the token had no room for the
user's groups (overage), it never reads that as "in no groups": it asks the app's
``GroupResolver`` (Microsoft Graph, through on-behalf-of), or refuses with its own reason,
``groups_overage``, saying what to configure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from entra_guard.async_cache import AsyncTTLCache
from entra_guard.errors import ClaimsChallenge, InsufficientPermissions, ServiceUnavailable
from entra_guard.principal import EntraPrincipal

if TYPE_CHECKING:
    from entra_guard.bearer import IncomingToken

__all__ = ["GroupRequirement", "GroupResolver", "Requirement"]

#: How long a user's resolved groups are remembered, in seconds.
DEFAULT_GROUPS_TTL = 300.0
#: How many users' resolved groups are remembered at most.
DEFAULT_GROUPS_CACHE_SIZE = 10_000

logger = logging.getLogger("entra_guard.authorization")


@dataclass(frozen=True, slots=True)
class Requirement:
    """Roles and/or scopes a route needs; either kind satisfies it when both are given.

    With ``any_of=False`` every listed role (or every listed scope) is needed; with
    ``any_of=True`` one is enough.
    """

    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    any_of: bool = False

    @classmethod
    def of(
        cls, *, roles: Iterable[str] = (), scopes: Iterable[str] = (), any_of: bool = False
    ) -> Requirement:
        roles, scopes = _names("roles", roles), _names("scopes", scopes)
        if not roles and not scopes:
            raise ValueError("a requirement needs at least one role or scope")
        return cls(roles=roles, scopes=scopes, any_of=any_of)

    def is_met_by(self, principal: EntraPrincipal) -> bool:
        return self._met(self.roles, principal.roles) or self._met(self.scopes, principal.scopes)

    def check(self, principal: EntraPrincipal) -> EntraPrincipal:
        """Return the principal, or raise ``InsufficientPermissions`` saying what is missing."""
        if not self.is_met_by(principal):
            raise InsufficientPermissions(
                "missing_permission", self.describe(), required=" ".join(sorted(self.names))
            )
        return principal

    @property
    def names(self) -> frozenset[str]:
        return self.roles | self.scopes

    def describe(self) -> str:
        joiner = " or " if self.any_of else " and "
        parts = []
        if self.roles:
            parts.append(f"app role {joiner.join(sorted(self.roles))}")
        if self.scopes:
            parts.append(f"scope {joiner.join(sorted(self.scopes))}")
        return f"This operation requires {' or '.join(parts)}"

    def _met(self, needed: frozenset[str], held: frozenset[str]) -> bool:
        if not needed:
            return False
        return not needed.isdisjoint(held) if self.any_of else needed <= held


def _names(kind: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        values = (values,)
    names = frozenset(values)
    for name in names:
        if not isinstance(name, str) or not name or any(c.isspace() or c in '"\\' for c in name):
            raise ValueError(f"{kind}: {name!r} is not a role or scope name")
    return names


class GroupResolver:
    """The groups of a user whose token had no room for them, remembered per user.

    ``resolve(principal)`` is the app's async function returning the user's group object ids
    (for instance Microsoft Graph's ``/me/transitiveMemberOf`` or ``checkMemberGroups`` on
    behalf of the caller). Its answers are kept ``ttl`` seconds per ``(tenant_id, object_id)``,
    at most ``maxsize`` users; concurrent first requests of one user make one call. A call that
    raises (or answers anything but a set of strings) becomes ``ServiceUnavailable``
    ``groups_unavailable`` (503): Graph being down is not the caller's fault; a
    ``ClaimsChallenge`` (Entra asking the user to sign in again) passes through unchanged, as
    the 401 the caller's app can act on. Share one resolver between routes so that they share
    its memory.

    Subclasses that call Graph on behalf of the user (``entra_guard.groups.GraphGroups``)
    override :meth:`lookup`, which also receives the caller's validated token.
    """

    def __init__(
        self,
        resolve: Callable[[EntraPrincipal], Awaitable[frozenset[str]]],
        *,
        ttl: float = DEFAULT_GROUPS_TTL,
        maxsize: int = DEFAULT_GROUPS_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._cache: AsyncTTLCache[tuple[str, str], frozenset[str]] = AsyncTTLCache(
            ttl=ttl, maxsize=maxsize, clock=clock
        )

    async def groups_of(
        self, principal: EntraPrincipal, incoming: IncomingToken | None = None
    ) -> frozenset[str]:
        """The user's group object ids, lower-case; raises ``ServiceUnavailable``.

        ``incoming`` is the caller's validated token (the middleware keeps it in the ASGI scope
        under ``bearer.INCOMING_TOKEN``), for lookups made on behalf of the user; the cache key
        stays ``(tenant_id, object_id)``, so it never holds a token.
        """
        if principal.object_id is None:
            raise _overage("the token names no user (no 'oid') whose groups could be looked up")
        key = (principal.tenant_id, principal.object_id)
        try:
            return await self._cache.get(key, lambda: self._call(principal, incoming))
        except ClaimsChallenge:
            raise
        except Exception as exc:  # logged where it was raised, once per call
            raise ServiceUnavailable(
                "groups_unavailable", "The user's group membership could not be looked up"
            ) from exc

    async def lookup(
        self, principal: EntraPrincipal, incoming: IncomingToken | None
    ) -> frozenset[str]:
        """One look-up, uncached: the app's ``resolve(principal)``. Subclasses may use
        ``incoming`` (``None`` when no middleware kept the caller's token)."""
        return await self._resolve(principal)

    async def _call(
        self, principal: EntraPrincipal, incoming: IncomingToken | None
    ) -> frozenset[str]:
        try:
            found: object = await self.lookup(principal, incoming)
            if not isinstance(found, (set, frozenset)) or not all(
                isinstance(g, str) for g in found
            ):
                raise TypeError(f"a group resolver must return a set of group ids, got {found!r}")
        except ClaimsChallenge:
            raise
        except Exception:
            # Once per call, not once per request waiting on it.
            logger.exception("resolving the groups of an overage token failed")
            raise
        return frozenset(g.lower() for g in found)

    def __repr__(self) -> str:
        return f"GroupResolver({self._resolve!r})"


@dataclass(frozen=True, slots=True)
class GroupRequirement:
    """Group memberships a route needs (object ids, compared without regard to case): all of
    them, or one with ``any_of=True``.

    For a token with groups overage, ``resolver`` is asked; without one the check refuses with
    ``groups_overage`` (403) rather than as if the user were in no groups.
    """

    groups: frozenset[str]
    any_of: bool = False
    resolver: GroupResolver | None = None

    @classmethod
    def of(
        cls,
        groups: Iterable[str],
        *,
        any_of: bool = False,
        resolver: GroupResolver
        | Callable[[EntraPrincipal], Awaitable[frozenset[str]]]
        | None = None,
    ) -> GroupRequirement:
        if isinstance(groups, str):
            groups = (groups,)
        names = frozenset(groups)
        if not names:
            raise ValueError("a group requirement needs at least one group object id")
        for name in names:
            # Object ids as a rule; any non-empty string, since a registration may emit on-premises
            # names (``DOMAIN\sAMAccountName``) instead.
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"groups: {name!r} is not a group object id")
        if resolver is not None and not isinstance(resolver, GroupResolver):
            if not callable(resolver):
                raise ValueError(
                    f"resolver must be a GroupResolver or an async function, got {resolver!r}"
                )
            resolver = GroupResolver(resolver)
        return cls(frozenset(n.lower() for n in names), any_of, resolver)

    async def check(
        self, principal: EntraPrincipal, incoming: IncomingToken | None = None
    ) -> EntraPrincipal:
        """Return the principal; raise ``InsufficientPermissions`` (403 ``missing_group`` or
        ``groups_overage``) or ``ServiceUnavailable`` (503 ``groups_unavailable``).

        ``incoming``, the caller's validated token, reaches the resolver only (for a look-up
        on behalf of the user)."""
        if not principal.has_groups_overage:
            held: frozenset[str] | tuple[str, ...] = principal.groups
        elif self.resolver is None:
            raise _overage("this API is not configured to look up group membership")
        else:
            held = await self.resolver.groups_of(principal, incoming)
        met = not self.groups.isdisjoint(held) if self.any_of else self.groups <= set(held)
        if not met:
            raise InsufficientPermissions("missing_group", self.describe())
        return principal

    def describe(self) -> str:
        joiner = " or " if self.any_of else " and "
        return f"This operation requires membership of group {joiner.join(sorted(self.groups))}"


def _overage(why: str) -> InsufficientPermissions:
    return InsufficientPermissions(
        "groups_overage",
        "The user is in more groups than fit in a token (groups overage), and "
        f"{why}: give require_groups a resolver (Microsoft Graph on behalf of the user), or have "
        "the app registration emit only the groups assigned to the application, or use app roles",
    )
