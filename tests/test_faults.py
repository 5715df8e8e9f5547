"""Fault injection over loopback: the identity provider misbehaves, the API keeps serving.

Each scenario drives the middleware in process (httpx's ASGI transport: no server on the API's
side) while its key store fetches from the emulator over real loopback HTTP with one fault
switched on, and asserts the status of every request, that nothing was
answered 500, and the fetch counts the refresh policy allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from entra_guard import AuthOutcome, EntraAuthMiddleware, InvalidToken, KeyStore, TokenValidator
from entra_guard.client import ClientSecret, ConfidentialClient, TokenRequestError
from entra_guard.testing import EntraEmulator
from tests.conftest import FakeClock
from tests.support import settle

HOUR = 3600.0
FAULTS = ["refuse", "500", "503", "slow", "invalid-json", "huge", "no-usable-keys"]


def switch(idp: EntraEmulator, fault: str, on: bool) -> None:
    """Turn one kind of outage on or off."""
    if fault == "refuse":
        idp.stop() if on else idp.start()
    elif fault in ("500", "503"):
        idp.fail_status = int(fault) if on else None
    elif fault == "slow":
        idp.delay = 2.0 if on else 0.0  # beyond the 0.5 s fetch timeout below
    else:
        idp.document_fault = fault if on else None  # type: ignore[assignment]


async def orders(request: Request) -> PlainTextResponse:
    return PlainTextResponse("orders")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


class Api:
    """The protected app, its key store on a clock the test moves, and an ASGI client."""

    def __init__(self, idp: EntraEmulator, clock: FakeClock, **config: Any) -> None:
        settings = idp.config(**{"fetch_timeout": 0.5, "refresh_interval": HOUR, **config})
        self.keys = KeyStore(settings, clock=clock)
        self.validator = TokenValidator(settings, key_store=self.keys)
        #: Every decision of the middleware, in order: the reasons behind the statuses.
        self.outcomes: list[AuthOutcome] = []
        app = Starlette(
            routes=[Route("/orders", orders), Route("/health", health)],
            middleware=[Middleware(EntraAuthMiddleware, validator=self.validator,
                                   exclude_paths=["/health"], on_outcome=self.outcomes.append)],
        )  # fmt: skip
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api")

    async def get(self, token: str | None, path: str = "/orders") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.get(path, headers=headers)
        assert response.status_code != 500
        return response

    async def settle(self) -> None:
        await settle(self.keys)

    async def close(self) -> None:
        await self.http.aclose()
        await self.validator.aclose()


@pytest.mark.parametrize("fault", FAULTS)
async def test_cold_cache_idp_down_is_a_quick_503_then_recovers(
    entra_emulator: EntraEmulator, clock: FakeClock, fault: str
) -> None:
    api = Api(entra_emulator, clock)
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    switch(entra_emulator, fault, on=True)
    started = time.monotonic()
    down = await api.get(token)
    elapsed = time.monotonic() - started
    assert (down.status_code, api.outcomes[-1].reason) == (503, "keys_unavailable")
    assert down.json()["error"] == "temporarily_unavailable"
    assert int(down.headers["retry-after"]) >= 1
    assert elapsed < 2.0  # bounded by the 0.5 s fetch timeout, not by the fault's 2 s delay
    assert (await api.get(None, "/health")).status_code == 200  # the app keeps serving
    again = await api.get(token)  # within the back-off: no new attempt, still 503
    assert again.status_code == 503

    switch(entra_emulator, fault, on=False)
    clock.advance(1.0)  # the first back-off step
    assert (await api.get(token)).status_code == 200  # recovered, no restart
    await api.close()


@pytest.mark.parametrize("fault", FAULTS)
async def test_warm_cache_idp_down_serves_last_known_good_keys(
    entra_emulator: EntraEmulator, clock: FakeClock, fault: str
) -> None:
    api = Api(entra_emulator, clock, last_known_good_lifetime=24 * HOUR)
    token = entra_emulator.issue_token(roles=["Orders.Read"], lifetime=48 * HOUR)
    assert (await api.get(token)).status_code == 200
    switch(entra_emulator, fault, on=True)
    for _ in range(10):  # 10 x 2.2 h: past every refresh, inside the last-known-good day
        clock.advance(2.2 * HOUR)
        assert (await api.get(token)).status_code == 200
        await api.settle()
    clock.advance(3 * HOUR)  # more than 24 h since the keys were last fetched
    assert (await api.get(token)).status_code == 503
    switch(entra_emulator, fault, on=False)
    clock.advance(30.0)
    assert (await api.get(token)).status_code == 200
    await api.close()


async def test_key_rotation(entra_emulator: EntraEmulator, clock: FakeClock) -> None:
    api = Api(entra_emulator, clock)
    old_token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await api.get(old_token)).status_code == 200
    old = entra_emulator.current_key.kid
    entra_emulator.rotate_keys()
    new_token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await api.get(new_token)).status_code == 200  # accepted after one refresh
    assert entra_emulator.fetch_count("jwks") == 2
    entra_emulator.remove_key(old)
    clock.advance(1.06 * HOUR)
    assert (await api.get(new_token)).status_code == 200
    await api.settle()  # the refresh that removes the old key
    rejected = await api.get(old_token)
    assert rejected.status_code == 401
    assert "signature key" in rejected.json()["error_description"]
    await api.close()


async def test_floods_of_unknown_kids_and_garbage(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    api = Api(entra_emulator, clock)
    valid = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await api.get(valid)).status_code == 200
    attacker = EntraEmulator.generate_key()
    random_kids = [
        entra_emulator.issue_token(roles=["r"], key=attacker, headers={"kid": uuid.uuid4().hex})
        for _ in range(1000)
    ]
    garbage = [f"{uuid.uuid4().hex}.{uuid.uuid4().hex}.{uuid.uuid4().hex}" for _ in range(1000)]
    requests = [api.get(t) for t in random_kids + garbage] + [api.get(valid) for _ in range(200)]
    answers = await asyncio.gather(*requests)
    statuses = [r.status_code for r in answers]
    assert statuses[:2000] == [401] * 2000
    assert statuses[2000:] == [200] * 200  # valid tokens kept passing
    assert entra_emulator.fetch_count("jwks") == 2  # the first fetch and one forced refresh
    assert entra_emulator.fetch_count("metadata") == 2
    clock.advance(60)  # a minute later, another flood: still within the 5-minute interval
    await asyncio.gather(*(api.get(t) for t in random_kids[:200]))
    assert entra_emulator.fetch_count("jwks") == 2
    await api.close()


async def test_slow_idp_at_cold_start_one_fetch_everyone_answered(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    # Slow, but both documents well inside the fetch timeout, even on a loaded machine: the
    # 500 requests share the event loop (and the GIL) with the fetch and the emulator.
    api = Api(entra_emulator, clock, fetch_timeout=2.0)
    entra_emulator.delay = 0.2  # per document
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    answers = await asyncio.wait_for(asyncio.gather(*(api.get(token) for _ in range(500))), 10)
    assert {r.status_code for r in answers} == {200}
    assert entra_emulator.fetch_count("metadata") == 1
    assert entra_emulator.fetch_count("jwks") == 1
    await api.close()


async def test_token_endpoint_faults_for_the_client(entra_emulator: EntraEmulator) -> None:
    entra_emulator.register_api(app_id_uri="api://orders", roles=["Orders.Read"])
    app = entra_emulator.register_client(name="d", roles={"api://orders": ["Orders.Read"]})
    now = [time.time()]
    client = ConfidentialClient(
        tenant_id=entra_emulator.tenant_id, client_id=app.client_id,
        credential=ClientSecret(app.secret or ""), instance=entra_emulator.instance,
        max_retries=2, retry_delay=0.01, timeout=0.3, clock=lambda: now[0],
    )  # fmt: skip
    # throttled twice, with Retry-After: bounded retries get through
    entra_emulator.fail_token_requests(status=429, count=2, retry_after=0)
    first = await client.acquire_token("api://orders/.default")
    assert entra_emulator.token_request_count() == 3

    # due for renewal; the endpoint times out and then errs: the cached token still serves
    now[0] = first.expires_at - 60
    entra_emulator.delay = 1.0
    assert (await client.acquire_token("api://orders/.default")).token == first.token
    entra_emulator.delay = 0.0
    entra_emulator.fail_token_requests(status=503, count=None)
    now[0] += 31  # past the pause after a failed renewal
    assert (await client.acquire_token("api://orders/.default")).token == first.token

    # expired, and the endpoint still fails: a clear, transient error
    now[0] = first.expires_at + 1
    with pytest.raises(TokenRequestError) as info:
        await client.acquire_token("api://orders/.default")
    assert info.value.transient
    assert info.value.status_code == 503
    entra_emulator.fail_token_requests(status=503, count=0)
    await client.aclose()


async def test_a_version_the_authority_does_not_serve_is_an_invalid_token_logged_once(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    entra_emulator.served_versions = ("2.0",)  # v1 metadata answers 404, as External ID's does
    api = Api(entra_emulator, clock)  # the default token_versions: 1.0 and 2.0
    caplog.set_level(logging.WARNING, logger="entra_guard.discovery")
    attacker = EntraEmulator.generate_key()
    junk = [
        entra_emulator.issue_token(version="1.0", key=attacker, roles=[str(n)]) for n in range(200)
    ]
    answers = await asyncio.gather(*(api.get(t) for t in junk))
    assert {r.status_code for r in answers} == {401}
    assert 'error="invalid_token"' in answers[0].headers["www-authenticate"]
    with pytest.raises(InvalidToken) as info:
        await api.validator.validate(junk[0])
    assert info.value.reason == "version_not_served"
    genuine_v2 = entra_emulator.issue_token(roles=["Orders.Read"])
    assert (await api.get(genuine_v2)).status_code == 200
    assert entra_emulator.fetch_count("metadata", version="1.0") == 1
    assert entra_emulator.fetch_count("jwks", version="1.0") == 0

    clock.advance(300)  # one new look per min_refresh_interval, in case that changes
    assert (await api.get(junk[1])).status_code == 401
    assert entra_emulator.fetch_count("metadata", version="1.0") == 2
    not_served = [r for r in caplog.records if "publishes no 1.0 metadata" in r.getMessage()]
    assert len(not_served) == 1  # once per version, not per request
    await api.close()


@pytest.mark.parametrize("fault", ["500", "503", "slow", "refuse"])
async def test_a_version_whose_metadata_fails_otherwise_stays_an_outage(
    entra_emulator: EntraEmulator, clock: FakeClock, fault: str
) -> None:
    api = Api(entra_emulator, clock)
    switch(entra_emulator, fault, on=True)
    answer = await api.get(entra_emulator.issue_token(version="1.0", roles=["Orders.Read"]))
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) >= 1
    switch(entra_emulator, fault, on=False)
    await api.close()
