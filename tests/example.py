"""Loading the example API (examples/fastapi_app/main.py) against a test emulator."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from entra_guard.testing import DEFAULT_AUDIENCE, EntraEmulator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi_app" / "main.py"


def load_example(
    monkeypatch: pytest.MonkeyPatch, idp: EntraEmulator | None, **env: str
) -> ModuleType:
    """A fresh import of the example, ``ENTRA_*`` pointing at ``idp`` (dev mode when None)."""
    for name in ("TENANT_ID", "AUDIENCES", "INSTANCE", "ALLOWED_TENANTS", "ALLOWED_CLIENT_IDS"):
        monkeypatch.delenv(f"ENTRA_{name}", raising=False)
    if idp is not None:
        monkeypatch.setenv("ENTRA_TENANT_ID", idp.tenant_id)
        monkeypatch.setenv("ENTRA_AUDIENCES", DEFAULT_AUDIENCE)
        monkeypatch.setenv("ENTRA_INSTANCE", idp.instance)
    for name, value in env.items():
        monkeypatch.setenv(f"ENTRA_{name}", value)
    spec = importlib.util.spec_from_file_location(f"example_{uuid.uuid4().hex}", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
