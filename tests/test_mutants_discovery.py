"""Rules of ``discovery`` that mutation testing found untested (benchmarks/MUTATION.md).

Against the emulator over real loopback HTTP, with a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from entra_guard import InvalidToken, KeyStore, KeysUnavailable, TokenValidator, discovery
from entra_guard.testing import REMOVE, EmulatorKey, EntraEmulator
from tests.conftest import FakeClock
from tests.support import CountingVerifies, settle, validator_for

HOUR = 3600.0
APP_ID_URI = "api://orders"
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


class _AppSpecificAnswers(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, except that metadata asked with ``?appid=`` gets
    ``status`` with an OAuth error body, while the tenant's documents serve as usual."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"appid=" in request.url.query:
            return httpx.Response(self.status, json={"error": "x", "error_description": "y"})
        return await super().handle_async_request(request)


@pytest.mark.parametrize(
    ("status", "absent"),
    [
        (400, True),  # a refusal: this API has no keys of its own, noted once at INFO
        (409, True),
        (499, True),
        (408, False),  # a passing condition: a failed fetch, logged as an error, backing off
        (429, False),
        (500, False),
    ],
)
async def test_an_app_specific_document_refused_is_absent_but_a_passing_fault_is_a_failure(
    entra_emulator: EntraEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    status: int,
    absent: bool,
) -> None:
    api = entra_emulator.register_api(custom_signing_key=True)
    config = entra_emulator.config(audiences=[api.client_id])
    async with httpx.AsyncClient(transport=_AppSpecificAnswers(status)) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = TokenValidator(config, key_store=keys)
        good = entra_emulator.issue_token(audience=api.client_id, roles=["r"])
        assert (await check.validate(good)).roles == {"r"}  # the tenant's keys are in hand
        junk = entra_emulator.issue_token(
            key=EntraEmulator.generate_key(), audience=api.client_id, roles=["r"]
        )
        caplog.set_level(logging.INFO, logger="entra_guard.discovery")
        with pytest.raises(InvalidToken) as refused:  # either way: not an outage of ours
            await check.validate(junk)
        assert refused.value.reason == "key_not_found"
    said = f"GET {keys.metadata_url('2.0', api.client_id)} answered HTTP {status} (x: y)"
    label = f"2.0 app-specific ({api.client_id})"
    expected = (
        (logging.INFO, f"no {label} metadata is published ({said})")
        if absent
        else (logging.ERROR, f"cannot fetch the {label} signing keys (_FetchError: {said}); "
              "retrying in 1 s")
    )  # fmt: skip
    assert expected in discovery_records(caplog)


def discovery_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "entra_guard.discovery"
    ]


async def test_a_version_not_published_is_warned_about_once_and_backs_off_from_1_s(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="entra_guard.discovery")
    entra_emulator.served_versions = ("2.0",)  # v1 metadata answers 404, as External ID's does
    keys = KeyStore(entra_emulator.config(), clock=clock)
    for _ in range(2):
        with pytest.raises(InvalidToken) as refused:
            await keys.get_key_set("1.0")
        assert (refused.value.reason, refused.value.description) == (
            "version_not_served",
            "The token's version ('ver') is not one this API's identity provider issues",
        )
        clock.advance(300)  # one new look per min_refresh_interval
    url = keys.metadata_url("1.0")
    warned = [m for level, m in discovery_records(caplog) if level == logging.WARNING]
    assert warned == [  # once, not once per look
        f"the authority publishes no 1.0 metadata (GET {url} answered HTTP 404): tokens that "
        "say ver 1.0 are refused as invalid; leave 1.0 out of token_versions if this is expected"
    ]
    assert entra_emulator.fetch_count("metadata", version="1.0") == 2
    # Not an outage: when the authority then fails for real, the back-off starts at 1 s.
    entra_emulator.fail_status = 500
    with pytest.raises(KeysUnavailable) as unavailable:
        await keys.get_key_set("1.0")
    assert unavailable.value.retry_after == 1
    await keys.aclose()


async def test_an_app_specific_document_not_published_is_noted_once_at_info(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="entra_guard.discovery")
    api = entra_emulator.register_api()
    config = entra_emulator.config(audiences=[api.client_id])
    async with httpx.AsyncClient(transport=_AppSpecificAnswers(404)) as http:
        check = TokenValidator(config, key_store=KeyStore(config, http_client=http, clock=clock))
        junk = entra_emulator.issue_token(
            key=EntraEmulator.generate_key(), audience=api.client_id, roles=["r"]
        )
        for _ in range(2):
            with pytest.raises(InvalidToken) as refused:
                await check.validate(junk)
            assert refused.value.reason == "key_not_found"
            clock.advance(300)
    noted = [(level, m) for level, m in discovery_records(caplog) if "metadata is published" in m]
    assert len(noted) == 1
    assert noted[0][0] == logging.INFO
    url = check.key_store.metadata_url("2.0", api.client_id)
    assert noted[0][1] == (
        f"no 2.0 app-specific ({api.client_id}) metadata is published "
        f"(GET {url} answered HTTP 404 (x: y))"
    )
    assert not [m for level, m in discovery_records(caplog) if level >= logging.WARNING]


async def test_a_404_after_good_answers_keeps_the_keys_and_waits_an_interval(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = KeyStore(entra_emulator.config(refresh_interval=3600), clock=clock)
    good = await keys.get_key_set("2.0")
    entra_emulator.served_versions = ("1.0",)  # v2 now answers 404: a proxy's fault of the moment
    clock.advance(1.06 * 3600)  # past the interval and its jitter: one background refresh
    caplog.set_level(logging.WARNING, logger="entra_guard.discovery")
    assert await keys.get_key_set("2.0") is good
    await settle(keys)
    assert entra_emulator.fetch_count("metadata", version="2.0") == 2
    [(level, message)] = discovery_records(caplog)
    assert level == logging.WARNING
    assert message == (
        f"refreshing the 2.0 signing keys failed (GET {keys.metadata_url('2.0')} answered HTTP "
        "404); serving the last known good keys"
    )
    clock.advance(299)  # the next attempt waits min_refresh_interval (300 s)
    assert await keys.get_key_set("2.0") is good
    await settle(keys)
    assert entra_emulator.fetch_count("metadata", version="2.0") == 2
    clock.advance(1)
    assert await keys.get_key_set("2.0") is good
    await settle(keys)
    assert entra_emulator.fetch_count("metadata", version="2.0") == 3
    await keys.aclose()


# A fetch cut by fetch_timeout may leave its connection in httpx's pool for good, so the client
# that made it is retired and closed once no other refresh still uses it. The emulator answers
# after 2 s; the fetch is cut after 0.2 s (the behaviour under test is that timeout).


async def test_a_timed_out_fetch_retires_and_closes_the_client_the_store_made(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = KeyStore(entra_emulator.config(fetch_timeout=0.2), clock=clock)
    made = keys._http()  # the store's own client, as its first fetch would make it
    entra_emulator.delay = 2.0
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    with pytest.raises(KeysUnavailable):
        await keys.get_key_set("2.0")  # the fetch runs in a refresh task of its own
    assert made.is_closed  # no refresh still used it
    assert keys._client is not made
    assert [m for _, m in discovery_records(caplog)] == [
        "cannot fetch the 2.0 signing keys (timed out after 0.2 s); retrying in 1 s"
    ]
    await keys.aclose()


class _V1Late(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, but v1.0 metadata times out at once (as
    ``fetch_timeout`` would cut it, without the wait) and v2.0's is held until ``release`` is
    set (``arrived`` says it was asked for)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            if "/v2.0/" not in request.url.path:
                raise asyncio.TimeoutError
            self.arrived.set()
            await self.release.wait()
        return await super().handle_async_request(request)


async def test_a_retired_client_is_closed_only_when_no_other_refresh_still_uses_it(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    keys = KeyStore(entra_emulator.config(), clock=clock)
    keys._http()
    shared = keys._client = httpx.AsyncClient(transport=_V1Late())  # as the store made it
    answers = shared._transport
    assert isinstance(answers, _V1Late)
    v2 = asyncio.create_task(keys.get_key_set("2.0"))
    await answers.arrived.wait()  # v2.0's fetch is in flight on the shared client
    with pytest.raises(KeysUnavailable):
        await keys.get_key_set("1.0")  # timed out: the client is retired
    assert keys._client is not shared
    open_while_used = not shared.is_closed  # v2.0's refresh still uses it
    answers.release.set()
    assert len(await v2) > 0  # served through the retired client
    assert open_while_used
    assert shared.is_closed  # closed by the last refresh that used it
    await keys.aclose()


class _Raises(httpx.AsyncBaseTransport):
    """A transport that fails in a way no HTTP library names: an unexpected exception."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise LookupError("secret-ish detail of the failure")


async def test_an_unexpected_failure_of_a_fetch_is_logged_by_its_type_only(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    async with httpx.AsyncClient(transport=_Raises()) as http:
        keys = KeyStore(entra_emulator.config(), http_client=http, clock=clock)
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        assert [m for _, m in discovery_records(caplog)] == [
            "cannot fetch the 2.0 signing keys (unexpected LookupError); retrying in 1 s"
        ]
        clock.advance(1)  # and the store keeps its back-off per source
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        await keys.aclose()


async def test_a_timed_out_fetch_never_closes_the_callers_client(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    async with httpx.AsyncClient() as client:
        keys = KeyStore(entra_emulator.config(fetch_timeout=0.2), http_client=client, clock=clock)
        entra_emulator.delay = 2.0
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        assert not client.is_closed  # the caller's to close
        assert keys._http() is client  # and still the one the store fetches with
        await keys.aclose()


class _ErrorBody(httpx.AsyncHTTPTransport):
    """An identity provider refusing discovery with HTTP 400 and ``chunks`` as the body."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self.chunks = chunks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk

        return httpx.Response(400, content=body())


def padded(document: bytes, size: int) -> bytes:
    """``document`` (a JSON object) grown with blanks to exactly ``size`` bytes."""
    return document[:-1] + b" " * (size - len(document)) + b"}"


ERROR = b'{"error": "x", "error_description": "y"}'


@pytest.mark.parametrize(
    ("chunks", "said"),
    [
        ([ERROR[:15], ERROR[15:]], " (x: y)"),  # read in pieces, as it arrives
        ([padded(ERROR, 4096)], " (x: y)"),  # 4 KiB is read
        ([padded(ERROR, 4097)], ""),  # beyond it, nothing is said
        ([b'{"error": "x", "error_description": "y", "n": NaN}'], ""),  # not JSON
        ([b'["x", "y"]'], ""),
        ([b'{"error": 1, "error_description": "y"}'], ""),
        ([b'{"error": "x", "error_description": "  first\\nsecond"}'], " (x: first)"),
        ([b'{"error": "x", "error_description": " "}'], " (x: )"),
        ([b'{"error": "x", "error_description": "a\\u00e9\\u0007b"}'], " (x: a b)"),
        ([b'{"error": "x", "error_description": "' + b"d" * 400 + b'"}'], f" (x: {'d' * 297})"),
        ([b'{"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant \'t\' not '
          b'found.\\r\\nTrace ID: 1"}'],
         " (invalid_tenant: AADSTS90002: Tenant 't' not found.; "
         "check tenant_id (ENTRA_TENANT_ID))"),
    ],
)  # fmt: skip
async def test_what_an_error_answer_says_is_logged_within_bounds(
    entra_emulator: EntraEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    chunks: list[bytes],
    said: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    async with httpx.AsyncClient(transport=_ErrorBody(chunks)) as http:
        keys = KeyStore(entra_emulator.config(), http_client=http, clock=clock)
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
    url = keys.metadata_url("2.0")
    assert discovery_records(caplog) == [
        (logging.ERROR, f"cannot fetch the 2.0 signing keys (_FetchError: GET {url} answered "
                        f"HTTP 400{said}); retrying in 1 s")
    ]  # fmt: skip


async def test_no_keys_at_all_is_a_503_saying_so(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    entra_emulator.fail_status = 500
    keys = KeyStore(entra_emulator.config(), clock=clock)
    with pytest.raises(KeysUnavailable) as unavailable:
        await keys.get_key_set("2.0")
    assert (unavailable.value.reason, unavailable.value.description) == (
        "keys_unavailable",
        "The signing keys of the identity provider are unavailable; try again later",
    )
    assert (unavailable.value.status_code, unavailable.value.retry_after) == (503, 1)
    await keys.aclose()


class _JwksWithoutKid(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, with its JWKS keys stripped of ``kid``: keys
    known by ``x5t`` only, as old v1 key sets and tokens have them."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not request.url.path.endswith("/keys"):
            return response
        document = json.loads(await response.aread())
        for key in document["keys"]:
            key.pop("kid", None)
        return httpx.Response(response.status_code, json=document)


@pytest.mark.parametrize("named_by", ["kid", "x5t"])
async def test_a_remembered_token_stays_remembered_when_a_refresh_keeps_its_key(
    entra_emulator: EntraEmulator, clock: FakeClock, named_by: str
) -> None:
    """A refresh brings a new key set; a remembered token whose key it still publishes (found
    by ``kid``, or by ``x5t`` where the set has no ``kid``) is not verified again."""
    config = entra_emulator.config(refresh_interval=HOUR)
    transport = _JwksWithoutKid() if named_by == "x5t" else httpx.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = CountingVerifies(config, key_store=keys)
        kid = entra_emulator.current_key.kid
        headers = {"kid": REMOVE, "x5t": kid} if named_by == "x5t" else {"x5t": REMOVE}
        token = entra_emulator.issue_token(roles=["r"], headers=headers)
        await check.validate(token)
        before = entra_emulator.fetch_count("jwks")
        clock.advance(HOUR * (1 + discovery._JITTER))  # due for a refresh: a lookup starts one
        await check.validate(token)
        await settle(keys)
        assert entra_emulator.fetch_count("jwks") == before + 1
        assert keys.current("2.0") is not None
        await check.validate(token)
        assert check.verified == 1
        await keys.aclose()


async def test_a_rotated_in_key_named_by_x5t_only_is_found_by_a_forced_refresh(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    config = entra_emulator.config(audiences=[APP_ID_URI])  # no app-specific keys to look in
    async with httpx.AsyncClient(transport=_JwksWithoutKid()) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = TokenValidator(config, key_store=keys)
        await keys.prefetch()
        rotated = entra_emulator.rotate_keys()
        token = entra_emulator.issue_token(
            roles=["r"], audience=APP_ID_URI, headers={"kid": REMOVE, "x5t": rotated.kid}
        )
        assert (await check.validate(token)).roles == {"r"}
        await keys.aclose()


async def test_requests_waiting_on_a_forced_refresh_find_the_key_it_brings(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    # No client id among the audiences: no app-specific keys to find the key in instead.
    check = validator_for(entra_emulator, clock, token_cache_size=0, audiences=[APP_ID_URI])
    await check.prefetch()
    entra_emulator.rotate_keys()
    tokens = [
        entra_emulator.issue_token(roles=["r"], audience=APP_ID_URI, claims={"n": n})
        for n in range(5)
    ]
    principals = await asyncio.gather(*(check.validate(t) for t in tokens))
    assert [p.roles for p in principals] == [{"r"}] * 5
    # one at start-up, one forced, shared by all
    assert entra_emulator.fetch_count("jwks", version="2.0") == 2
    await check.aclose()


async def test_unknown_key_ids_share_one_forced_refresh_per_interval(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Never-seen ids spend the forced-refresh budget only, whichever id comes: a flood of
    distinct ids costs one fetch per interval. Each forced refresh is logged at INFO."""
    check = validator_for(entra_emulator, clock)
    await check.prefetch()
    caplog.set_level(logging.INFO, logger="entra_guard.discovery")
    forged = [
        entra_emulator.issue_token(roles=["r"], key=EntraEmulator.generate_key()) for _ in range(3)
    ]
    for token in forged:
        with pytest.raises(InvalidToken):
            await check.validate(token)
    assert entra_emulator.fetch_count("jwks", version="2.0") == 2
    messages = [r.getMessage() for r in caplog.records if "refreshing the 2.0 keys" in r.message]
    assert messages == ["unknown signing key id; refreshing the 2.0 keys"]
    await check.aclose()


async def test_a_key_seen_unpublished_is_looked_for_again_once_per_interval_and_logged(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    check = validator_for(entra_emulator, clock, token_cache_size=0)
    await check.prefetch()
    forged = entra_emulator.issue_token(roles=["r"], key=EntraEmulator.generate_key())
    with pytest.raises(InvalidToken):
        await check.validate(forged)  # never seen: a forced refresh shows it absent
    clock.advance(entra_emulator.config().min_refresh_interval)
    caplog.set_level(logging.INFO, logger="entra_guard.discovery")
    with pytest.raises(InvalidToken):
        await check.validate(forged)
    assert entra_emulator.fetch_count("jwks", version="2.0") == 3
    messages = [r.getMessage() for r in caplog.records if "refreshing the 2.0 keys" in r.message]
    assert messages == ["a signing key id seen unpublished; refreshing the 2.0 keys"]
    await check.aclose()


async def test_the_memory_of_unpublished_key_ids_is_bounded_oldest_first(
    entra_emulator: EntraEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discovery, "_MAX_ABSENT", 2)
    keys = KeyStore(entra_emulator.config(), clock=clock)
    await keys.prefetch()
    interval = entra_emulator.config().min_refresh_interval
    remembered = []
    for kid in ("gone-1", "gone-2", "gone-3", "gone-2"):
        clock.advance(interval)
        _, key = await keys.find_key("2.0", kid, None)
        assert key is None
        remembered.append([key_id for key_id, _ in keys._sources["2.0"].absent])
    assert remembered == [
        ["gone-1"],
        ["gone-1", "gone-2"],
        ["gone-2", "gone-3"],  # full: the oldest made room
        ["gone-2", "gone-3"],  # one already remembered takes no room
    ]
    await keys.aclose()


async def test_a_key_of_an_app_specific_set_in_hand_costs_no_refresh(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    """The app-specific set is fetched once, on first use (even when it lacks the key it was
    fetched for); after that a token of its key
    (named by ``kid`` or by ``x5t``) is found in it without refreshing the tenant's set."""
    api = entra_emulator.register_api(custom_signing_key=True)
    assert api.signing_key is not None
    config = entra_emulator.config(audiences=[api.client_id], token_cache_size=0)
    check = validator_for(entra_emulator, clock, audiences=[api.client_id], token_cache_size=0)
    await check.prefetch()

    def app_token(**headers: Any) -> str:
        return entra_emulator.issue_token(
            key=api.signing_key, audience=api.client_id, roles=["r"], headers=headers
        )

    forged = entra_emulator.issue_token(
        key=EntraEmulator.generate_key(), audience=api.client_id, roles=["r"]
    )
    with pytest.raises(InvalidToken):  # the app's set, fetched for it, lacks it: no refetch
        await check.validate(forged)
    assert entra_emulator.fetch_count("jwks", app_id=api.client_id) == 1
    await check.validate(app_token())
    tenant = entra_emulator.fetch_count("jwks", version="2.0")
    assert entra_emulator.fetch_count("jwks", app_id=api.client_id) == 1
    for headers in ({"x5t": REMOVE}, {"kid": REMOVE, "x5t": api.signing_key.kid}):
        clock.advance(config.min_refresh_interval)  # a refresh would be allowed: none is made
        assert (await check.validate(app_token(**headers))).roles == {"r"}
    assert entra_emulator.fetch_count("jwks", version="2.0") == tenant
    assert entra_emulator.fetch_count("jwks", app_id=api.client_id) == 1
    await check.aclose()


class _OneAppFails(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, but metadata asked for ``app_id`` answers 500."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self.app_id = app_id.encode()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if b"appid=" + self.app_id in request.url.query:
            return httpx.Response(500, json={"error": "server_error", "error_description": "x"})
        return await super().handle_async_request(request)


async def test_an_app_specific_set_that_cannot_be_had_does_not_stop_the_next_one(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    first = entra_emulator.register_api(custom_signing_key=True)
    second = entra_emulator.register_api(custom_signing_key=True)
    config = entra_emulator.config(audiences=[first.client_id, second.client_id])
    async with httpx.AsyncClient(transport=_OneAppFails(first.client_id)) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = TokenValidator(config, key_store=keys)
        assert keys.app_ids == (first.client_id, second.client_id)
        token = entra_emulator.issue_token(
            key=second.signing_key, audience=second.client_id, roles=["r"]
        )
        assert (await check.validate(token)).roles == {"r"}
        await keys.aclose()


async def test_keys_are_fetched_over_https_trusting_the_configured_ca_bundle(
    clock: FakeClock,
) -> None:
    """The store's clients verify TLS with the context built from ``ca_bundle`` (the emulator's
    own CA here), never with the system's default trust alone."""
    async with EntraEmulator(https=True) as idp:
        check = validator_for(idp, clock)
        assert (await check.validate(idp.issue_token(roles=["r"]))).roles == {"r"}
        await check.aclose()


async def test_a_first_token_of_an_app_specific_key_named_by_x5t_only_is_found(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    api = entra_emulator.register_api(custom_signing_key=True)
    assert api.signing_key is not None
    check = validator_for(entra_emulator, clock, audiences=[api.client_id])
    token = entra_emulator.issue_token(
        key=api.signing_key, audience=api.client_id, roles=["r"],
        headers={"kid": REMOVE, "x5t": api.signing_key.kid},
    )  # fmt: skip
    assert (await check.validate(token)).roles == {"r"}
    await check.aclose()


async def test_the_store_serves_again_after_aclose_cancelled_a_refresh(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    config = entra_emulator.config(refresh_interval=HOUR)
    keys = KeyStore(config, clock=clock)
    await keys.prefetch()
    clock.advance(HOUR * (1 + discovery._JITTER))
    assert keys.current("2.0") is not None  # stale: starts a background refresh
    assert keys._refreshes_running()
    await keys.aclose()  # cancels it
    assert not keys._refreshes_running()
    assert keys.current("2.0") is not None  # and starts another, with a new client
    await settle(keys)
    assert entra_emulator.fetch_count("jwks", version="2.0") == 2
    await keys.aclose()


class _AppKeyRotatesInFirst(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP. With ``added`` set, app-specific key sets list
    that key too, and the tenant's key set answers only once ``installed()`` says the store
    holds such an app-specific set (at most 5 s): a background refresh of the app's set ends
    while a request waits on the tenant's."""

    def __init__(self) -> None:
        super().__init__()
        self.added: EmulatorKey | None = None
        self.installed: Callable[[], bool] = lambda: True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.added is None or not request.url.path.endswith("/keys"):
            return await super().handle_async_request(request)
        if b"appid=" not in request.url.query:
            for _ in range(500):  # bounded: a store that never installs it fails the test
                if self.installed():
                    break
                await asyncio.sleep(0.01)
            return await super().handle_async_request(request)
        response = await super().handle_async_request(request)
        document = json.loads(await response.aread())
        document["keys"].append(self.added.public_jwk(document["keys"][0].get("issuer")))
        return httpx.Response(response.status_code, json=document)


@pytest.mark.parametrize("named_by", ["kid", "x5t"])
async def test_a_key_in_an_app_specific_set_a_background_refresh_brought_costs_no_fetch(
    entra_emulator: EntraEmulator, clock: FakeClock, named_by: str
) -> None:
    """A request that finds neither set in hand holding its key waits on the tenant's refresh;
    meanwhile a background refresh replaces the app-specific set with one that holds it. The
    request looks in the new set before spending a forced refresh on it."""
    api = entra_emulator.register_api(custom_signing_key=True)
    config = entra_emulator.config(
        audiences=[api.client_id], refresh_interval=HOUR, last_known_good_lifetime=3 * HOUR,
        token_cache_size=0,
    )  # fmt: skip
    transport = _AppKeyRotatesInFirst()
    async with httpx.AsyncClient(transport=transport) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = TokenValidator(config, key_store=keys)
        await keys.prefetch()
        app_token = entra_emulator.issue_token(
            key=api.signing_key, audience=api.client_id, roles=["r"]
        )
        await check.validate(app_token)  # the app-specific set, fetched now
        first = keys.current("2.0", api.client_id)
        rotated_in = EntraEmulator.generate_key()
        transport.added = rotated_in
        transport.installed = lambda: keys.current("2.0", api.client_id) is not first
        clock.advance(HOUR * (1 + discovery._JITTER))  # both sets due for a refresh
        headers = {"x5t": REMOVE} if named_by == "kid" else {"kid": REMOVE, "x5t": rotated_in.kid}
        token = entra_emulator.issue_token(
            key=rotated_in, audience=api.client_id, roles=["r"], headers=headers
        )
        assert (await check.validate(token)).roles == {"r"}
        # One fetch of the app's set at first use, one by the background refresh: no more.
        assert entra_emulator.fetch_count("jwks", app_id=api.client_id) == 2
        await keys.aclose()


class _TenantKeysFail(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP; while ``failing``, the tenant's own JWKS (not an
    app-specific one) answers 500."""

    failing = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (
            self.failing
            and request.url.path.endswith("/keys")
            and b"appid=" not in request.url.query
        ):
            return httpx.Response(500, json={"error": "server_error", "error_description": "x"})
        return await super().handle_async_request(request)


@pytest.mark.parametrize("named_by", ["kid", "x5t"])
async def test_the_tenants_own_set_is_looked_in_before_the_app_specific_sets_in_hand(
    entra_emulator: EntraEmulator, clock: FakeClock, named_by: str
) -> None:
    """An app-specific JWKS lists the tenant's keys too. A token of a tenant key, found once
    the tenant's set is fetched again, is the tenant's: were it taken from an app's set in
    hand, that app's audience rule would refuse an App ID URI shared by two APIs."""
    first = entra_emulator.register_api(custom_signing_key=True)
    second = entra_emulator.register_api()
    config = entra_emulator.config(
        audiences=[first.client_id, second.client_id, APP_ID_URI], refresh_interval=HOUR,
        last_known_good_lifetime=2 * HOUR, token_cache_size=0,
    )  # fmt: skip
    transport = _TenantKeysFail()
    async with httpx.AsyncClient(transport=transport) as http:
        keys = KeyStore(config, http_client=http, clock=clock)
        check = TokenValidator(config, key_store=keys)
        await keys.prefetch()  # the tenant's set, usable until 2 h
        clock.advance(0.9 * HOUR)
        transport.failing = True  # the tenant's refresh fails: its set stays the one of 0 h
        app_token = entra_emulator.issue_token(
            key=first.signing_key, audience=first.client_id, roles=["r"]
        )
        await check.validate(app_token)  # the first API's set, fetched now: usable until 2.9 h
        transport.failing = False
        clock.advance(1.15 * HOUR)  # the tenant's set is dropped, the app's still in hand
        assert keys.current("2.0") is None
        assert keys.current("2.0", first.client_id) is not None
        kid = entra_emulator.current_key.kid
        headers = {"x5t": REMOVE} if named_by == "kid" else {"kid": REMOVE, "x5t": kid}
        token = entra_emulator.issue_token(audience=APP_ID_URI, roles=["r"], headers=headers)
        assert (await check.validate(token)).roles == {"r"}
        await keys.aclose()


async def test_a_key_set_is_dropped_at_the_end_of_its_last_known_good_lifetime(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    """Usable up to, not including, fetch time + ``last_known_good_lifetime``."""
    config = entra_emulator.config(refresh_interval=HOUR, last_known_good_lifetime=2 * HOUR)
    keys = KeyStore(config, clock=clock)
    await keys.prefetch()
    clock.advance(2 * HOUR - 0.5)
    assert keys.current("1.0") is not None  # still usable (and a refresh starts)
    await keys.aclose()  # the refresh is cancelled: the 2.0 set is never refreshed
    clock.advance(0.5)
    assert keys.current("2.0") is None
    await keys.aclose()


def test_the_store_makes_one_client_per_event_loop(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    keys = KeyStore(entra_emulator.config(), clock=clock)

    async def two_lookups() -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        return keys._http(), keys._http()

    first, again = asyncio.run(two_lookups())
    assert first is again  # one client for the loop
    other, _ = asyncio.run(two_lookups())
    assert other is not first  # a new loop: a new client (the old one's loop is gone)
    asyncio.run(keys.aclose())


class _Rewrites(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, with its metadata document bent by ``change``."""

    def __init__(self, change: dict[str, Any]) -> None:
        super().__init__()
        self.change = change

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not request.url.path.endswith("/openid-configuration"):
            return response
        document = json.loads(await response.aread())
        document.update(self.change)
        return httpx.Response(
            response.status_code, json={k: v for k, v in document.items() if v is not None}
        )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"issuer": None}, "metadata has no 'issuer' string"),
        (
            {"jwks_uri": "http://keys.example.com/keys"},
            "metadata 'jwks_uri' is missing or not an https URL",
        ),
    ],
    ids=["no issuer", "jwks_uri not https"],
)
async def test_a_metadata_document_refused_says_why_in_the_log(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    change: dict[str, Any], said: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    async with httpx.AsyncClient(transport=_Rewrites(change)) as http:
        keys = KeyStore(entra_emulator.config(), http_client=http, clock=clock)
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        assert [m for _, m in discovery_records(caplog)] == [
            f"cannot fetch the 2.0 signing keys (_FetchError: {said}); retrying in 1 s"
        ]
        await keys.aclose()


async def test_a_key_set_without_usable_keys_says_so_in_the_log(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    keys = KeyStore(entra_emulator.config(), clock=clock)
    entra_emulator.document_fault = "no-usable-keys"
    with pytest.raises(KeysUnavailable):
        await keys.get_key_set("2.0")
    jwks = entra_emulator.jwks_url(version="2.0")
    assert [m for _, m in discovery_records(caplog)] == [
        f"cannot fetch the 2.0 signing keys (_FetchError: {jwks} holds no usable RSA signing "
        "keys); retrying in 1 s"
    ]
    entra_emulator.document_fault = None
    clock.advance(1)
    keyset = await keys.get_key_set("2.0")
    assert keyset.version == "2.0"  # a key set says which tokens it is for
    await keys.aclose()


class _MetadataBody(httpx.AsyncHTTPTransport):
    """The emulator over real loopback HTTP, but the metadata document answers ``body``."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, content=self.body)
        return await super().handle_async_request(request)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"issuer": NaN}', "did not answer JSON"),  # not JSON (RFC 8259), though Python reads it
        (b'{"issuer": Infinity}', "did not answer JSON"),
        (b"{", "did not answer JSON"),
        (b"[1, 2]", "did not answer a JSON object"),
    ],
    ids=["NaN", "Infinity", "truncated", "an array"],
)
async def test_a_document_that_is_no_json_object_says_so_in_the_log(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
    body: bytes, said: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.ERROR, logger="entra_guard.discovery")
    async with httpx.AsyncClient(transport=_MetadataBody(body)) as http:
        keys = KeyStore(entra_emulator.config(), http_client=http, clock=clock)
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        url = keys.metadata_url("2.0")
        assert [m for _, m in discovery_records(caplog)] == [
            f"cannot fetch the 2.0 signing keys (_FetchError: GET {url} {said}); retrying in 1 s"
        ]
        await keys.aclose()


async def test_a_fetched_key_set_is_logged_at_info_with_its_size_and_url(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="entra_guard.discovery")
    keys = KeyStore(entra_emulator.config(audiences=[APP_ID_URI]), clock=clock)
    await keys.get_key_set("2.0")
    jwks = entra_emulator.jwks_url(version="2.0")
    assert discovery_records(caplog) == [
        (logging.INFO, f"fetched 1 signing keys for 2.0 tokens from {jwks}")
    ]
    await keys.aclose()


async def test_the_back_off_starts_again_from_1_s_after_keys_were_had(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = entra_emulator.config(refresh_interval=HOUR, last_known_good_lifetime=HOUR)
    keys = KeyStore(config, clock=clock)
    entra_emulator.fail_status = 500
    for _ in range(2):  # 1 s, then 2 s
        with pytest.raises(KeysUnavailable):
            await keys.get_key_set("2.0")
        clock.advance(2)
    entra_emulator.fail_status = None
    await keys.get_key_set("2.0")  # keys had: the count of failures starts over
    await keys.aclose()  # no refresh in flight when the set runs out
    clock.advance(HOUR)  # the set is dropped
    entra_emulator.fail_status = 500
    caplog.clear()
    with pytest.raises(KeysUnavailable):
        await keys.get_key_set("2.0")
    [(_, message)] = discovery_records(caplog)
    assert message.endswith("; retrying in 1 s")
    await keys.aclose()


async def test_a_refresh_is_due_after_the_interval_plus_up_to_5_percent_jitter(
    entra_emulator: EntraEmulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:  # the latest the jitter may put it
        drawn.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    keys = KeyStore(entra_emulator.config(refresh_interval=HOUR), clock=clock)
    await keys.get_key_set("2.0")
    assert drawn == [(0, 0.05 * HOUR)]
    clock.advance(1.05 * HOUR - 0.5)
    keys.current("2.0")
    assert not keys._refreshes_running()  # not due yet
    clock.advance(0.5)
    keys.current("2.0")
    assert keys._refreshes_running()
    await settle(keys)
    await keys.aclose()


async def test_a_version_served_again_is_no_longer_taken_for_one_not_served(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    config = entra_emulator.config(refresh_interval=HOUR, last_known_good_lifetime=HOUR)
    keys = KeyStore(config, clock=clock)
    entra_emulator.served_versions = ("2.0",)
    with pytest.raises(InvalidToken):  # version_not_served
        await keys.get_key_set("1.0")
    entra_emulator.served_versions = ("1.0", "2.0")
    clock.advance(300)
    await keys.get_key_set("1.0")
    await keys.aclose()
    clock.advance(HOUR)  # the set is dropped; the authority now fails for real
    entra_emulator.fail_status = 500
    with pytest.raises(KeysUnavailable):  # an outage (503), not a version it does not serve
        await keys.get_key_set("1.0")
    await keys.aclose()


async def test_a_version_served_and_then_no_longer_is_warned_about_again(
    entra_emulator: EntraEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="entra_guard.discovery")
    config = entra_emulator.config(refresh_interval=HOUR, last_known_good_lifetime=HOUR)
    keys = KeyStore(config, clock=clock)
    for served in (("2.0",), ("1.0", "2.0"), ("2.0",)):
        entra_emulator.served_versions = served
        if "1.0" in served:
            await keys.get_key_set("1.0")
            clock.advance(HOUR)  # the set is dropped, and the next look fetches anew
        else:
            with pytest.raises(InvalidToken):  # version_not_served
                await keys.get_key_set("1.0")
            clock.advance(300)  # one new look per min_refresh_interval
    warned = [m for _, m in discovery_records(caplog) if "publishes no 1.0 metadata" in m]
    assert len(warned) == 2  # a successful fetch ended the first spell; the second is news
    await keys.aclose()
