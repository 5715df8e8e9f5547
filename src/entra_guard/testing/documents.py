"""The OpenID metadata and JWKS documents, field for field as Entra serves them.

Every top-level member of the real documents is present (a client that trips over an unknown
member should trip here, not in production), and every URL in them points back at the
emulator, so nothing a client follows leaves the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entra_guard.testing.tenants import issuer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from entra_guard.testing.keys import EmulatorKey
    from entra_guard.testing.tenants import Tenant, Version

__all__ = ["jwks_document", "jwks_path", "metadata_document", "metadata_path"]

_AUTH_METHODS = ["client_secret_post", "private_key_jwt", "client_secret_basic"]
_RESPONSE_MODES = ["query", "fragment", "form_post"]
_RESPONSE_TYPES_V1 = ["code", "id_token", "code id_token", "token id_token", "token"]
_RESPONSE_TYPES_V2 = ["code", "id_token", "code id_token", "id_token token"]
_CLAIMS_V1 = [
    "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email",
    "given_name", "family_name", "nickname",
]  # fmt: skip
_CLAIMS_V2 = [
    "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
    "name", "tid", "ver", "at_hash", "c_hash", "email",
]  # fmt: skip
# Plausible public-cloud values; clients read them at most for display.
_CLOUD = {
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}


def metadata_path(segment: str, version: Version) -> str:
    """Where Entra serves the openid-configuration of a tenant and token version."""
    infix = "/v2.0" if version == "2.0" else ""
    return f"/{segment}{infix}/.well-known/openid-configuration"


def jwks_path(segment: str, version: Version) -> str:
    """Where that metadata's ``jwks_uri`` points."""
    infix = "/v2.0" if version == "2.0" else ""
    return f"/{segment}/discovery{infix}/keys"


def metadata_document(instance: str, tenant: Tenant, version: Version) -> dict[str, Any]:
    """The openid-configuration for ``tenant``; endpoints keep the path segment as asked."""
    base = f"{instance}/{tenant.segment}"
    iss = issuer(instance, version, tenant.issuer_tenant)
    jwks_uri = instance + jwks_path(tenant.segment, version)
    # Entra names a region only for real tenants; the multi-tenant documents say null.
    region = "NA" if tenant.segment == tenant.tid else None
    if version == "1.0":
        return {
            "token_endpoint": f"{base}/oauth2/token",
            "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
            "jwks_uri": jwks_uri,
            "response_modes_supported": list(_RESPONSE_MODES),
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": list(_RESPONSE_TYPES_V1),
            "scopes_supported": ["openid"],
            "issuer": iss,
            "microsoft_multi_refresh_token": True,
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/logout",
            "claims_supported": list(_CLAIMS_V1),
            "check_session_iframe": f"{base}/oauth2/checksession",
            "userinfo_endpoint": f"{base}/openid/userinfo",
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": region,
            **_CLOUD,
        }
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "jwks_uri": jwks_uri,
        "response_modes_supported": list(_RESPONSE_MODES),
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": list(_RESPONSE_TYPES_V2),
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": iss,
        "request_uri_parameter_supported": False,
        # Entra points at Microsoft Graph here; the emulator keeps every URL local.
        "userinfo_endpoint": f"{instance}/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS_V2),
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": region,
        **_CLOUD,
    }


def jwks_document(
    instance: str, tenant: Tenant, version: Version, keys: Iterable[EmulatorKey]
) -> dict[str, Any]:
    """The key set; v2 keys name their issuer (with the placeholder in multi-tenant sets)."""
    key_issuer = issuer(instance, "2.0", tenant.issuer_tenant) if version == "2.0" else None
    return {"keys": [key.public_jwk(key_issuer) for key in keys]}
