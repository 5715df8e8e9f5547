"""entra-guard: protect ASGI APIs with Microsoft Entra ID access tokens."""

from entra_guard.config import EntraConfig
from entra_guard.discovery import KeyStore
from entra_guard.errors import (
    ClaimsChallenge,
    EntraGuardError,
    InsufficientPermissions,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
    ServiceUnavailable,
)
from entra_guard.middleware import AuthOutcome, EntraAuthMiddleware
from entra_guard.principal import EntraPrincipal
from entra_guard.resource_metadata import ProtectedResource
from entra_guard.validation import TokenValidator

__all__ = [
    "AuthOutcome",
    "ClaimsChallenge",
    "EntraAuthMiddleware",
    "EntraConfig",
    "EntraGuardError",
    "EntraPrincipal",
    "InsufficientPermissions",
    "InvalidRequest",
    "InvalidToken",
    "KeyStore",
    "KeysUnavailable",
    "MissingToken",
    "ProtectedResource",
    "ServiceUnavailable",
    "TokenValidator",
]
