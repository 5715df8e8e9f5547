"""Tenant path segments and issuers, the way Entra reads and writes them.

Kept apart from the documents because tokens need the same rules: an issuer in a token must be
exactly the one the metadata promises, or the emulator would teach clients the wrong thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from entra_guard.config import MSA_TENANT_ID, MULTI_TENANT_IDS, is_guid

__all__ = [
    "MSA_TENANT_ID",
    "TENANT_PLACEHOLDER",
    "V1_ISSUER_HOST",
    "Tenant",
    "Version",
    "issuer",
    "resolve_tenant",
    "token_tenant_id",
]

Version: TypeAlias = Literal["1.0", "2.0"]

#: Written literally, lower case and in braces, into multi-tenant issuers.
TENANT_PLACEHOLDER = "{tenantid}"
#: v1 tokens name this host whatever the login host is; that is what Entra really does.
V1_ISSUER_HOST = "https://sts.windows.net"


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant as a URL names it."""

    #: The path segment, lower-cased: a GUID, ``organizations``, ``common`` or ``consumers``.
    segment: str
    #: The concrete tenant GUID, or ``None`` for ``organizations``/``common``.
    tid: str | None

    @property
    def issuer_tenant(self) -> str:
        """What goes into issuers: the GUID, or the ``{tenantid}`` placeholder."""
        return self.tid if self.tid is not None else TENANT_PLACEHOLDER


def resolve_tenant(segment: str) -> Tenant | None:
    """The tenant a path segment names, or ``None`` where Entra answers AADSTS90002."""
    lowered = segment.lower()
    if lowered in MULTI_TENANT_IDS:
        return Tenant(segment=lowered, tid=None)
    if lowered == "consumers":
        return Tenant(segment=lowered, tid=MSA_TENANT_ID)
    if is_guid(lowered):
        return Tenant(segment=lowered, tid=lowered)
    return None


def token_tenant_id(tenant_id: str) -> str:
    """The ``tid`` a token for ``tenant_id`` carries: always one concrete GUID."""
    tenant = resolve_tenant(tenant_id)
    if tenant is None or tenant.tid is None:
        raise ValueError(
            f"tenant_id {tenant_id!r}: a token belongs to one tenant; give its GUID (or "
            "'consumers'), or forge anything else with claims={'tid': ...}"
        )
    return tenant.tid


def issuer(instance: str, version: Version, tenant: str) -> str:
    """The issuer for a tenant GUID or the placeholder.

    v2 lives on the login host without a trailing slash; v1 on ``sts.windows.net`` with one.
    """
    if version == "1.0":
        return f"{V1_ISSUER_HOST}/{tenant}/"
    return f"{instance}/{tenant}/v2.0"
