"""entra-guard: protect ASGI APIs with Microsoft Entra ID access tokens."""

from entra_guard.config import EntraConfig
from entra_guard.errors import EntraGuardError, InsufficientPermissions, InvalidToken, KeysUnavailable

__all__ = [
    "EntraConfig",
    "EntraGuardError",
    "InsufficientPermissions",
    "InvalidToken",
    "KeysUnavailable",
]
