"""The public face is exactly what ``__all__`` says, and importing it pulls in no web framework."""

from __future__ import annotations

import subprocess
import sys

import entra_guard
import entra_guard.testing

PUBLIC = [
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
TESTING = ["DEFAULT_AUDIENCE", "DEFAULT_CLIENT_ID", "REMOVE", "EmulatorKey", "EntraEmulator"]


def test_public_api_is_pinned() -> None:
    assert entra_guard.__all__ == PUBLIC
    assert sorted(entra_guard.__all__) == entra_guard.__all__
    public = {name for name in vars(entra_guard) if not name.startswith("_")}
    modules = {
        "async_cache", "authorization", "bearer", "claims", "cli", "client", "config",
        "discovery", "errors", "fastapi", "groups", "jwks", "middleware", "parsing", "principal",
        "resource_metadata", "starlette", "token_cache", "validation",
    }  # fmt: skip
    assert public - modules - {"testing", "examples"} == set(PUBLIC)


def test_testing_api_is_pinned() -> None:
    assert sorted(entra_guard.testing.__all__) == sorted(TESTING)
    for name in TESTING:
        assert getattr(entra_guard.testing, name) is not None


def test_importing_the_core_loads_no_framework_and_no_emulator() -> None:
    code = (
        "import sys, entra_guard; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'entra_guard.testing') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
