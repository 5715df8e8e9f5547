"""The example API under real uvicorn on loopback, keys from the emulator: the main paths."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from entra_guard.testing import EntraEmulator
from entra_guard.testing.server import BackgroundServer
from tests.example import load_example


@pytest.fixture
async def api(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    example = load_example(monkeypatch, entra_emulator, FETCH_TIMEOUT_SECONDS="1")
    server = BackgroundServer(example.app, host="127.0.0.1", port=0, tls=None, lifespan="on")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_main_paths(entra_emulator: EntraEmulator, api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    reader = entra_emulator.issue_token(roles=["Orders.Read"])
    orders = await api.get("/orders", headers=bearer(reader))
    assert orders.status_code == 200
    assert orders.json()[0]["item"] == "coffee beans"

    forged = entra_emulator.issue_token(
        roles=["Orders.Read"], key=EntraEmulator.generate_key(),
        headers={"kid": entra_emulator.current_key.kid},
    )  # fmt: skip
    invalid = await api.get("/orders", headers=bearer(forged))
    assert invalid.status_code == 401
    assert invalid.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    expired = entra_emulator.issue_token(roles=["Orders.Read"], now=time.time() - 7200)
    late = await api.get("/orders", headers=bearer(expired))
    assert late.status_code == 401
    assert late.json()["error_description"] == "The token has expired"

    missing_role = await api.post(
        "/orders", headers=bearer(reader), json={"item": "tea", "quantity": 1}
    )
    assert missing_role.status_code == 403
    assert 'scope="Orders.Write"' in missing_role.headers["www-authenticate"]

    writer = entra_emulator.issue_token(roles=["Orders.Write"])
    created = await api.post("/orders", headers=bearer(writer), json={"item": "tea", "quantity": 1})
    assert created.status_code == 201

    assert (await api.get("/orders")).status_code == 401


async def test_idp_down_with_warm_keys_keeps_serving(
    entra_emulator: EntraEmulator, api: httpx.AsyncClient
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await api.get("/orders", headers=bearer(token))).status_code == 200
    entra_emulator.stop()
    for _ in range(5):
        assert (await api.get("/orders", headers=bearer(token))).status_code == 200


async def test_idp_down_with_cold_keys_is_503_then_recovers(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    entra_emulator.stop()  # before the API starts: its start-up prefetch fails too
    example = load_example(monkeypatch, entra_emulator, FETCH_TIMEOUT_SECONDS="1")
    server = BackgroundServer(example.app, host="127.0.0.1", port=0, tls=None, lifespan="on")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as api:
            down = await api.get("/orders", headers=bearer(token))
            assert down.status_code == 503
            assert int(down.headers["retry-after"]) >= 1
            assert (await api.get("/health")).status_code == 200  # the process keeps serving
            entra_emulator.start()
            for _ in range(60):  # the back-off is a few seconds at most; poll, boundedly
                if (await api.get("/orders", headers=bearer(token))).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the API did not recover after the identity provider came back")
    finally:
        server.stop()
