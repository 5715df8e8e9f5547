"""``EntraPrincipal``: who is calling, as established by a validated access token."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from entra_guard.config import TokenVersion, is_guid

__all__ = ["EntraPrincipal"]

# The personal-account (MSA) tenant: an ``idp`` naming it marks a Microsoft-account guest.
_MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


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

    # The claims below are read from ``claims`` when asked for, not when the principal is built:
    # most routes read none of them, and every fresh token builds a principal.

    @property
    def groups(self) -> tuple[str, ...]:
        """``groups``: object ids of the user's groups (lower-case GUIDs), ``()`` when absent.

        Emitted per the registration's ``groupMembershipClaims``. Absent, too, when the user is
        in more groups than fit (200 in a JWT): see :attr:`has_groups_overage`.
        """
        value = self.claims.get("groups")
        if not isinstance(value, list):
            return ()
        return tuple(g.lower() for g in value if isinstance(g, str))

    @property
    def has_groups_overage(self) -> bool:
        """True when Entra left ``groups`` out because there were too many.

        The JWT form is ``_claim_names: {"groups": "src1"}`` with ``_claim_sources`` naming a
        Graph endpoint; the implicit flow's form is ``hasgroups: true``. Either way the
        membership must be asked of Microsoft Graph, never read as "in no groups".
        """
        names = self.claims.get("_claim_names")
        return (isinstance(names, Mapping) and "groups" in names) or (
            self.claims.get("hasgroups") is True
        )

    @property
    def is_guest(self) -> bool:
        """True for a user homed in another tenant or identity provider (B2B guest).

        ``acct`` (optional claim: ``0`` member, ``1`` guest) decides when present. Otherwise
        ``idp``, the user's home identity provider, which Entra emits only when it differs from
        the issuer: absent or equal to ``iss``, a member; an STS URL naming the token's own
        ``tid``, a member; anything else (another tenant's STS, ``live.com``, ``google.com``,
        ``mail``), a guest. ``tid`` is the resource tenant for guests too, so it tells nothing.
        """
        acct = self.acct
        if acct is not None:
            return acct == 1
        idp, iss = self.claims.get("idp"), self.claims.get("iss")
        if not isinstance(idp, str) or idp == iss:
            return False
        return _stated_tenant(idp) != self.tenant_id

    @property
    def home_tenant_id(self) -> str | None:
        """The tenant the user comes from: ``tid`` for members, the tenant ``idp`` names for a
        guest of another Entra tenant (the MSA tenant for personal accounts), else ``None``."""
        if not self.is_guest:
            return self.tenant_id
        idp = self.claims.get("idp")
        if idp == "live.com":
            return _MSA_TENANT_ID
        return _stated_tenant(idp) if isinstance(idp, str) else None

    @property
    def acct(self) -> int | None:
        """``acct`` (optional claim): ``0`` a member of the tenant, ``1`` a guest."""
        value = self.claims.get("acct")
        return value if type(value) is int else None

    @property
    def idtyp(self) -> str | None:
        """``idtyp`` (optional claim; present by default in app-only tokens): ``app`` or
        ``user``."""
        value = self.claims.get("idtyp")
        return value if isinstance(value, str) else None

    @property
    def ipaddr(self) -> str | None:
        """``ipaddr``: the address the user signed in from, as Entra saw it (v1 tokens; an
        optional claim in v2). Not the address of this request."""
        value = self.claims.get("ipaddr")
        return value if isinstance(value, str) else None

    @property
    def wids(self) -> frozenset[str]:
        """``wids``: role-template ids of the user's tenant-wide directory roles (lower-case),
        emitted with ``groupMembershipClaims`` ``All`` or ``DirectoryRole``."""
        return _lowered_strings(self.claims.get("wids"))

    @property
    def xms_cc(self) -> frozenset[str]:
        """``xms_cc``: client capabilities; ``cp1`` means the client app handles claims
        challenges (Continuous Access Evaluation). Present only when this API requests the
        optional claim and the client announced it."""
        return _lowered_strings(self.claims.get("xms_cc"))

    @property
    def is_cae_capable(self) -> bool:
        """Whether the client can answer a claims challenge (``cp1`` in ``xms_cc``)."""
        return "cp1" in self.xms_cc

    def in_group(self, group_id: str) -> bool:
        """Whether ``group_id`` is in ``groups`` (object ids compare without regard to case).

        False says nothing when :attr:`has_groups_overage` is true."""
        return group_id.lower() in self.groups

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


def _stated_tenant(idp: str) -> str | None:
    """The tenant GUID in an STS URL (``https://sts.windows.net/<tid>/``,
    ``https://login.microsoftonline.com/<tid>/v2.0``), or ``None``."""
    for part in idp.split("/"):
        if is_guid(part):
            return part.lower()
    return None


def _lowered_strings(value: object) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v.lower() for v in value if isinstance(v, str))
