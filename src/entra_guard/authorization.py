"""Route-level permission rules, shared by the FastAPI dependencies and the Starlette decorator.

A rule names the app roles and/or delegated scopes a route needs. App-only callers (client
credentials) carry ``roles``; users' apps carry ``scp``; Microsoft's "scope or app permission"
accepts either for the same permission. Failing a rule raises ``InsufficientPermissions``,
which the middleware answers with 403 ``insufficient_scope``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from entra_guard.errors import InsufficientPermissions
from entra_guard.principal import EntraPrincipal

__all__ = ["Requirement"]


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
