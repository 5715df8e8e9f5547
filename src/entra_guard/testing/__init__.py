"""A local Microsoft Entra ID for testing APIs offline.

``EntraEmulator`` serves Entra's discovery documents and signing keys over real HTTP on
loopback, mints access tokens with Entra's claim sets, answers the client-credentials grant
for the APIs and clients registered on it, and signs its users in (authorization code with
PKCE, refresh tokens), so the code under test (and MSAL or azure-identity)
runs exactly as it would against ``login.microsoftonline.com``. Needs the ``testing`` extra
(uvicorn). pytest users enable the fixtures with
``pytest_plugins = ["entra_guard.testing.pytest_plugin"]``.
"""

from entra_guard.testing.emulator import EntraEmulator
from entra_guard.testing.keys import EmulatorKey
from entra_guard.testing.tokens import DEFAULT_AUDIENCE, DEFAULT_CLIENT_ID, REMOVE

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_CLIENT_ID",
    "REMOVE",
    "EmulatorKey",
    "EntraEmulator",
]
