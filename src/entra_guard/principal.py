"""``EntraPrincipal``: who is calling, as established by a validated access token."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from entra_guard.config import TokenVersion

__all__ = ["EntraPrincipal"]


@dataclass(frozen=True, slots=True)
class EntraPrincipal:
    """The validated caller. Immutable; only built from a token that passed every check.

    Key your data by ``(tenant_id, object_id)``; ``name`` and ``preferred_username`` are for
    display only and must never be used to authorize.
    """

    tenant_id: str
    #: ``appid`` (v1) or ``azp`` (v2): the application that requested the token.
    client_id: str
    #: ``oid``: the user or service principal, stable across applications.
    object_id: str | None
    #: ``sub``: pairwise per application.
    subject: str | None
    roles: frozenset[str]
    scopes: frozenset[str]
    #: True for a client-credentials token (``idtyp == "app"``, or no delegated ``scp``).
    app_only: bool
    version: TokenVersion
    #: ``exp``, in Unix seconds.
    expires_on: float
    name: str | None = None
    preferred_username: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    #: ``authenticated``, the roles and the scopes: the names Starlette's ``@requires`` checks.
    permissions: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once per token, not on every request that presents it.
        names = ("authenticated", *self.roles, *self.scopes)
        object.__setattr__(self, "permissions", names)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires_on, tz=timezone.utc)

    # Starlette's BaseUser interface, by duck typing, so that ``request.user`` is the principal.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name or self.preferred_username or self.client_id

    @property
    def identity(self) -> str:
        return self.object_id or self.subject or self.client_id

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_any_role(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)

    def has_any_scope(self, scopes: Iterable[str]) -> bool:
        return not self.scopes.isdisjoint(scopes)

    @classmethod
    def from_claims(
        cls, claims: Mapping[str, Any], *, version: TokenVersion, client_id: str
    ) -> EntraPrincipal:
        """Build from claims the validator has already checked (types included).

        A ``dict`` is taken over, not copied: the validator hands in the payload it just parsed.
        """
        get = claims.get
        scp = get("scp")
        scopes = frozenset(scp.split()) if isinstance(scp, str) else frozenset()
        oid, sub, name = get("oid"), get("sub"), get("name")
        username = get("preferred_username") or get("upn")
        return cls(
            tenant_id=claims["tid"],
            client_id=client_id,
            object_id=oid if isinstance(oid, str) else None,
            subject=sub if isinstance(sub, str) else None,
            roles=frozenset(get("roles") or ()),
            scopes=scopes,
            app_only=get("idtyp") == "app" or not scopes,
            version=version,
            expires_on=claims["exp"],
            name=name if isinstance(name, str) else None,
            preferred_username=username if isinstance(username, str) else None,
            claims=MappingProxyType(claims if isinstance(claims, dict) else dict(claims)),
        )
