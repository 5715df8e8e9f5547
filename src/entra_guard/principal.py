"""``EntraPrincipal``: who is calling, as established by a validated access token."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from entra_guard.config import TokenVersion, is_guid
from entra_guard.parsing import load_object

__all__ = ["EntraPrincipal", "LazyClaims", "guest_by_claims"]

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
        return guest_by_claims(self.claims, self.tenant_id)

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
        return _from_claims(
            claims,
            MappingProxyType(claims if isinstance(claims, dict) else dict(claims)),
            version,
            client_id,
        )

    @classmethod
    def from_payload(
        cls, claims: dict[str, Any], payload: bytes, *, version: TokenVersion, client_id: str
    ) -> EntraPrincipal:
        """Like :meth:`from_claims`, but ``claims`` is kept as ``payload``, the JSON text it was
        parsed from (compact: a principal lives in the token cache for the token's lifetime),
        and parsed again on the first read of :attr:`claims` or a claim property.

        ``payload`` must be the text ``claims`` was strictly parsed from (same members). It is
        kept as a copy: the decoded original was allocated among the parse's temporary buffers,
        and copies taken here, after them, leave fewer unusable gaps between the kept payloads
        in the C heap (``benchmarks/memory.py``: 1.56 KB of resident memory per cached token
        without the copy, 1.35 KB with it; tokens of 1,324 bytes).
        """
        return _from_claims(claims, LazyClaims(bytes(memoryview(payload))), version, client_id)


# Sets a slot of a frozen principal: what the dataclass's __init__ does, minus a call of
# object.__setattr__ per field (a principal is built for every fresh token).
_SLOTS = {name: EntraPrincipal.__dict__[name].__set__ for name in EntraPrincipal.__slots__}
_set_tenant_id, _set_client_id = _SLOTS["tenant_id"], _SLOTS["client_id"]
_set_object_id, _set_subject = _SLOTS["object_id"], _SLOTS["subject"]
_set_roles, _set_scopes, _set_app_only = _SLOTS["roles"], _SLOTS["scopes"], _SLOTS["app_only"]
_set_version, _set_expires_on, _set_name = _SLOTS["version"], _SLOTS["expires_on"], _SLOTS["name"]
_set_username, _set_claims = _SLOTS["preferred_username"], _SLOTS["claims"]
_set_permissions = _SLOTS["permissions"]
_EMPTY: frozenset[str] = frozenset()
# Most tokens of one API carry one of a few sets of roles and scopes: one frozenset (and one
# permissions tuple) per distinct set, not per token. Bounded: odd traffic starts it over.
_MAX_SHARED = 1024
_shared: dict[tuple[Any, Any], tuple[frozenset[str], frozenset[str], tuple[str, ...]]] = {}


def _permissions(roles: Any, scp: Any) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    key = (tuple(roles) if roles else None, scp if isinstance(scp, str) else None)
    found = _shared.get(key)
    if found is None:
        role_set = frozenset(roles) if roles else _EMPTY
        scope_set = frozenset(scp.split()) if isinstance(scp, str) else _EMPTY
        found = (role_set, scope_set, ("authenticated", *role_set, *scope_set))
        if len(_shared) >= _MAX_SHARED:
            _shared.clear()
        _shared[key] = found
    return found


def _shared_text(value: Any) -> Any:
    """One object for the tenant and client ids of many tokens (few distinct values)."""
    if type(value) is not str:  # from_claims takes claims as given
        return value
    found = _texts.get(value)
    if found is None:
        if len(_texts) >= _MAX_SHARED:
            _texts.clear()
        found = _texts[value] = value
    return found


_texts: dict[str, str] = {}


def _from_claims(
    claims: Mapping[str, Any], kept: Mapping[str, Any], version: TokenVersion, client_id: str
) -> EntraPrincipal:
    get = claims.get
    roles, scopes, permissions = _permissions(get("roles"), get("scp"))
    oid, sub, name = get("oid"), get("sub"), get("name")
    if sub == oid:  # one object when they are equal (v1 tokens, app-only tokens)
        sub = oid
    username = get("preferred_username") or get("upn")
    principal: EntraPrincipal = object.__new__(EntraPrincipal)
    _set_tenant_id(principal, _shared_text(claims["tid"]))
    _set_client_id(principal, _shared_text(client_id))
    _set_object_id(principal, oid if isinstance(oid, str) else None)
    _set_subject(principal, sub if isinstance(sub, str) else None)
    _set_roles(principal, roles)
    _set_scopes(principal, scopes)
    _set_app_only(principal, get("idtyp") == "app" or not scopes)
    _set_version(principal, version)
    _set_expires_on(principal, claims["exp"])
    _set_name(principal, name if isinstance(name, str) else None)
    _set_username(principal, username if isinstance(username, str) else None)
    _set_claims(principal, kept)
    _set_permissions(principal, permissions)
    return principal


def guest_by_claims(claims: Mapping[str, Any], tenant_id: str) -> bool:
    """The rule of :attr:`EntraPrincipal.is_guest`, for claims not yet in a principal."""
    acct = claims.get("acct")
    if type(acct) is int:
        return acct == 1
    idp, iss = claims.get("idp"), claims.get("iss")
    if not isinstance(idp, str) or idp == iss:
        return False
    return _stated_tenant(idp) != tenant_id


class LazyClaims(Mapping[str, Any]):
    """A token's claims, kept as the JSON text of its payload and parsed on the first read.

    Read-only, like the ``MappingProxyType`` a principal built with :meth:`~EntraPrincipal.
    from_claims` holds. The text was parsed strictly once already (duplicate members refused),
    so parsing it again gives the same members.
    """

    __slots__ = ("_claims", "_payload")

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self._claims: dict[str, Any] | None = None

    @property
    def _parsed(self) -> dict[str, Any]:
        claims = self._claims
        if claims is None:
            claims = self._claims = load_object(self._payload, "payload")
        return claims

    def __getitem__(self, name: str) -> Any:
        return self._parsed[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._parsed.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._parsed

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)

    def copy(self) -> dict[str, Any]:
        """A shallow copy, as a ``dict`` (what ``MappingProxyType.copy`` gives)."""
        return self._parsed.copy()

    def __repr__(self) -> str:
        return f"LazyClaims({self._parsed!r})"


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
