"""entra-guard: protect ASGI APIs with Microsoft Entra ID access tokens."""

from entra_guard.config import EntraConfig
from entra_guard.discovery import KeyStore
from entra_guard.errors import (
    EntraGuardError,
    InsufficientPermissions,
    InvalidToken,
    KeysUnavailable,
)
from entra_guard.principal import EntraPrincipal
from entra_guard.validation import TokenValidator

__all__ = [
    "EntraConfig",
    "EntraGuardError",
    "EntraPrincipal",
    "InsufficientPermissions",
    "InvalidToken",
    "KeyStore",
    "KeysUnavailable",
    "TokenValidator",
]
