"""pytest fixtures for the emulator.

Enable them with ``pytest_plugins = ["entra_guard.testing.pytest_plugin"]`` in the root
``conftest.py``. The plugin is not registered automatically: an installed library should not
add fixtures to every test suite in the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from entra_guard.testing.emulator import EntraEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["entra_emulator", "entra_emulator_https"]


@pytest.fixture
def entra_emulator() -> Iterator[EntraEmulator]:
    """A started emulator on plain http, with a fresh tenant and key; stopped afterwards."""
    with EntraEmulator() as emulator:
        yield emulator


@pytest.fixture
def entra_emulator_https() -> Iterator[EntraEmulator]:
    """The same over https; trust it with ``emulator.ssl_context()`` or ``emulator.ca_bundle``."""
    with EntraEmulator(https=True) as emulator:
        yield emulator
