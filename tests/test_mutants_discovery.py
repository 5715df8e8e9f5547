"""Rules of ``discovery`` that mutation testing found untested (benchmarks/MUTATION.md).

Against the emulator over real loopback HTTP, with a hand-moved clock.
"""

from __future__ import annotations

from entra_guard import KeyStore
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock

API_CLIENT = "6514a8ca-d9e4-4155-b292-65258398f3aa"


async def test_the_metadata_urls_of_each_version_and_application(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    config = entra_emulator.config(audiences=["api://orders", API_CLIENT.upper()])
    keys = KeyStore(config, clock=clock)
    base = f"{entra_emulator.instance}/{entra_emulator.tenant_id}"
    assert keys.app_ids == (API_CLIENT,)
    assert keys.metadata_url("1.0") == f"{base}/.well-known/openid-configuration"
    assert keys.metadata_url("2.0") == f"{base}/v2.0/.well-known/openid-configuration"
    assert keys.metadata_url("2.0", API_CLIENT) == (
        f"{base}/v2.0/.well-known/openid-configuration?appid={API_CLIENT}"
    )
    await keys.aclose()
