"""Loading the example API (``entra_guard.examples.orders_api``) against a test emulator."""

from __future__ import annotations

from types import ModuleType

import pytest

from entra_guard.cli.demo import load_example as fresh_example
from entra_guard.testing import DEFAULT_AUDIENCE, EntraEmulator


def load_example(
    monkeypatch: pytest.MonkeyPatch, idp: EntraEmulator | None, **env: str
) -> ModuleType:
    """A fresh import of the example, ``ENTRA_*`` pointing at ``idp`` (dev mode when None)."""
    for name in ("TENANT_ID", "AUDIENCES", "INSTANCE", "ALLOWED_TENANTS", "ALLOWED_CLIENT_IDS",
                 "SWAGGER_CLIENT_ID", "CLIENT_ID", "CLIENT_SECRET", "GRAPH_URL"):  # fmt: skip
        monkeypatch.delenv(f"ENTRA_{name}", raising=False)
    if idp is not None:
        monkeypatch.setenv("ENTRA_TENANT_ID", idp.tenant_id)
        monkeypatch.setenv("ENTRA_AUDIENCES", DEFAULT_AUDIENCE)
        monkeypatch.setenv("ENTRA_INSTANCE", idp.instance)
    for name, value in env.items():
        monkeypatch.setenv(f"ENTRA_{name}", value)
    return fresh_example()
