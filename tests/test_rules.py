"""Stated security rules, each with a test that fails when the rule is broken.

Every rule here is in README.md or SECURITY.md, and each test was seen to fail against a copy of
the code with that rule broken (issue 13). Documents the emulator cannot serve as they are (it
rewrites ``jwks_uri``, and its key sets carry no ``alg``) come from a ``DocumentServer``, a small
uvicorn server on loopback that mirrors the emulator's tenant and records every request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from entra_guard import (
    AuthOutcome,
    EntraAuthMiddleware,
    EntraGuardError,
    InsufficientPermissions,
    KeyStore,
    KeysUnavailable,
    TokenValidator,
)
from entra_guard.testing import EmulatorKey, EntraEmulator
from entra_guard.validation import _MAX_HEADERS
from tests.asgi import get_with_token
from tests.conftest import FakeClock
from tests.docserver import mirror
from tests.support import assemble, segments, settle, validator_for

HOUR = 3600.0
OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"
CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


async def refusal(validator: TokenValidator, token: str) -> EntraGuardError:
    with pytest.raises(EntraGuardError) as info:
        await validator.validate(token)
    return info.value


def discovery_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "entra_guard.discovery")


# -- keys: where they come from, and what a key may sign -------------------------------------


async def test_a_jwk_alg_pins_its_key_to_that_algorithm(entra_emulator: EntraEmulator) -> None:
    """A JWK's own ``alg`` allows that algorithm only, even among the configured ones."""
    pss = entra_emulator.issue_token(roles=["r"], algorithm="PS256")
    rsa = entra_emulator.issue_token(roles=["r"])
    with mirror(entra_emulator) as idp:
        settings = idp.config(algorithms=("RS256", "PS256"))
        async with TokenValidator(settings) as unpinned:  # the same token, key not pinned
            assert (await unpinned.validate(pss)).roles == {"r"}
        pinned = {"keys": [{**jwk, "alg": "RS256"} for jwk in idp.jwks["keys"]]}
        idp.server.serve(idp.jwks_path, pinned)
        async with TokenValidator(settings) as validator:
            assert (await validator.validate(rsa)).roles == {"r"}
            assert (await refusal(validator, pss)).reason == "invalid_signature"


async def test_discovery_itself_refuses_a_jwks_uri_that_is_not_https(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain http only on loopback: ``127.1`` reaches this machine, but it is not a loopback
    address by its spelling, so the key set behind it is never fetched."""
    token = entra_emulator.issue_token(roles=["r"])
    with mirror(entra_emulator) as idp:
        loopback = idp.metadata["jwks_uri"]
        async with TokenValidator(idp.config()) as validator:
            assert (await validator.validate(token)).roles == {"r"}  # the control

        idp.serve_metadata({**idp.metadata, "jwks_uri": loopback.replace("127.0.0.1", "127.1")})
        idp.server.hits.clear()
        async with TokenValidator(idp.config()) as validator:
            error = await refusal(validator, token)
        assert (error.status_code, error.reason) == (503, "keys_unavailable")
        assert idp.server.hits == [idp.metadata_path]  # the key set was not asked for
        assert "'jwks_uri' is missing or not an https URL" in discovery_log(caplog)


def padded(jwks: dict[str, Any], size: int) -> bytes:
    """``jwks`` as JSON, padded with trailing whitespace to exactly ``size`` bytes: still the
    same valid key set."""
    body = json.dumps(jwks).encode()
    assert len(body) < size
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("chunked", [True, False], ids=["streamed", "content-length"])
async def test_max_document_bytes_refuses_a_valid_key_set_one_byte_too_large(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture, chunked: bool
) -> None:
    """Streamed without ``Content-Length``, the body is cut off at the limit; with it, the size
    is refused from the header alone, before any of the body is read (the server holds the
    body back until the client hangs up, so a client that waited would time out instead)."""
    token = entra_emulator.issue_token(roles=["r"])
    with mirror(entra_emulator) as idp:
        body = padded(idp.jwks, 8192)
        idp.server.serve(idp.jwks_path, body, chunked=chunked)
        async with TokenValidator(idp.config(max_document_bytes=8192)) as validator:
            assert (await validator.validate(token)).roles == {"r"}  # valid, and within limit

        idp.server.serve(idp.jwks_path, body, chunked=chunked, hold_body=not chunked)
        settings = idp.config(max_document_bytes=8191, fetch_timeout=5.0)
        async with TokenValidator(settings) as validator:
            error = await refusal(validator, token)
        assert (error.status_code, error.reason) == (503, "keys_unavailable")
        assert f"{idp.jwks_path} is larger than 8191 bytes" in discovery_log(caplog)


async def test_a_kid_republished_with_other_key_material_stops_its_cached_tokens(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    check = validator_for(entra_emulator, clock, refresh_interval=HOUR)
    token = entra_emulator.issue_token(roles=["r"])
    await check.validate(token)  # verified, and now in the cache
    signer = entra_emulator.current_key
    other = EntraEmulator.generate_key()
    entra_emulator.rotate_keys(keep_previous=False)
    impostor = EmulatorKey(signer.kid, other.private_key, other.certificate)
    entra_emulator.publish_key(impostor)  # the same kid, a different key
    clock.advance(1.06 * HOUR)
    await check.validate(token)  # stale keys: this hit starts the background refresh
    await settle(check.key_store)
    assert entra_emulator.fetch_count("jwks") == 2
    assert (await refusal(check, token)).reason == "invalid_signature"
    await check.aclose()


@pytest.mark.parametrize(
    ("audience", "app_fetches"),
    [("api://orders", 0), ("9b2a1f0e-4c3d-4e5f-8a7b-6c5d4e3f2a1b", 1)],
    ids=["app-id-uri", "client-id-guid"],
)
async def test_an_unknown_kid_while_the_idp_is_down_and_keys_are_warm_is_401(
    entra_emulator: EntraEmulator, clock: FakeClock, audience: str, app_fetches: int
) -> None:
    """The forced refresh fails, but keys are in hand: the token is invalid, not the service.

    With a client id GUID among the audiences the API's app-specific key set is asked too
    (``?appid=``); never fetched and unreachable, it must not turn the unknown key into a 503.
    """
    settings = entra_emulator.config(
        audiences=[audience], refresh_interval=HOUR, token_versions=("2.0",)
    )
    validator = TokenValidator(settings, key_store=KeyStore(settings, clock=clock))
    outcomes: list[AuthOutcome] = []
    app = EntraAuthMiddleware(ok, validator=validator, on_outcome=outcomes.append)
    good = entra_emulator.issue_token(roles=["r"], audience=audience)
    assert (await get_with_token(app, good))[0] == 200
    entra_emulator.fail_status = 503
    clock.advance(settings.min_refresh_interval)
    stranger = entra_emulator.issue_token(
        roles=["r"], audience=audience, key=EntraEmulator.generate_key()
    )
    status, headers, _ = await get_with_token(app, stranger)
    assert (status, outcomes[-1].reason) == (401, "key_not_found")
    assert b"retry-after" not in headers
    assert entra_emulator.fetch_count("metadata") == 2  # the unknown kid did force a refresh
    # and, for a client id audience, asked the app-specific set once (it failed too)
    assert entra_emulator.fetch_count("metadata", app_id=audience) == app_fetches
    assert (await get_with_token(app, good))[0] == 200  # and the known keys still serve
    await validator.aclose()


async def test_with_no_keys_the_back_off_doubles_from_1_s_to_its_30_s_cap(
    entra_emulator: EntraEmulator, clock: FakeClock
) -> None:
    entra_emulator.fail_status = 500
    keys = KeyStore(entra_emulator.config(), clock=clock)
    waits = []
    for attempt in range(1, 9):
        with pytest.raises(KeysUnavailable) as info:
            await keys.get_key_set("2.0")
        assert entra_emulator.fetch_count("metadata") == attempt
        waits.append(info.value.retry_after)
        clock.advance(waits[-1] - 0.5)
        with pytest.raises(KeysUnavailable):  # within the back-off: no new attempt
            await keys.get_key_set("2.0")
        assert entra_emulator.fetch_count("metadata") == attempt
        clock.advance(0.5)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    await keys.aclose()


# -- the validator's own state ----------------------------------------------------------------


async def test_the_checked_header_cache_is_bounded(entra_emulator: EntraEmulator) -> None:
    """Distinct headers (here each with its own ``x-n`` member) never grow it past its bound."""
    header, payload, signature = segments(entra_emulator.issue_token(roles=["r"]))
    async with TokenValidator(entra_emulator.config()) as validator:
        for n in range(_MAX_HEADERS + 50):
            token = assemble({**header, "x-n": n}, payload, signature)
            assert (await refusal(validator, token)).reason == "invalid_signature"
            assert len(validator._headers) <= _MAX_HEADERS
        assert len(validator._headers) > 0  # it does remember


async def test_a_configured_non_default_algorithm_is_accepted(
    entra_emulator: EntraEmulator,
) -> None:
    pss = entra_emulator.issue_token(roles=["r"], algorithm="PS256")
    rsa = entra_emulator.issue_token(roles=["r"])
    async with TokenValidator(entra_emulator.config()) as default:
        assert (await refusal(default, pss)).reason == "algorithm_not_allowed"
    async with TokenValidator(entra_emulator.config(algorithms=("PS256",))) as validator:
        assert (await validator.validate(pss)).roles == {"r"}
        assert (await refusal(validator, rsa)).reason == "algorithm_not_allowed"


# -- identifiers compare as GUIDs --------------------------------------------------------------


async def test_the_client_allow_list_compares_guids_in_any_case(
    entra_emulator: EntraEmulator,
) -> None:
    for listed, sent in [(CLIENT.upper(), CLIENT), (CLIENT, CLIENT.upper())]:
        token = entra_emulator.issue_token(roles=["r"], client_id=sent)
        stranger = entra_emulator.issue_token(roles=["r"], client_id=OTHER_TENANT)
        async with TokenValidator(entra_emulator.config(allowed_client_ids=[listed])) as check:
            assert (await check.validate(token)).client_id == sent
            error = await refusal(check, stranger)
            assert isinstance(error, InsufficientPermissions)
            assert error.reason == "client_not_allowed"


async def test_tenants_compare_as_guids_in_any_case() -> None:
    async with EntraEmulator(any_tenant=True) as idp:
        home = idp.issue_token(roles=["r"])
        async with TokenValidator(idp.config(tenant_id=idp.tenant_id.upper())) as check:
            assert (await check.validate(home)).tenant_id == idp.tenant_id
        other = idp.issue_token(roles=["r"], tenant_id=OTHER_TENANT)
        multi = idp.config(tenant_id="organizations", allowed_tenants=[OTHER_TENANT.upper()])
        async with TokenValidator(multi) as check:
            assert (await check.validate(other)).tenant_id == OTHER_TENANT
            assert (await refusal(check, home)).reason == "tenant_not_allowed"


# -- what goes back to the caller ---------------------------------------------------------------

MARK = "EchoMark7"


def marked_tokens(idp: EntraEmulator) -> dict[str, str]:
    """Refused tokens, each carrying ``MARK`` in the very member it is refused for."""
    header, payload, signature = segments(idp.issue_token(roles=["r"]))

    def claims(**changes: Any) -> str:
        return idp.issue_token(roles=["r"], claims=changes)

    return {
        "algorithm_not_allowed": assemble({**header, "alg": MARK}, payload, signature),
        "unsupported_header": idp.issue_token(roles=["r"], headers={"crit": [MARK]}),
        "key_not_found": idp.issue_token(
            roles=["r"], key=EntraEmulator.generate_key(), headers={"kid": MARK}
        ),
        "invalid_signature": assemble(header, {**payload, "roles": [MARK]}, signature),
        "version_not_accepted": claims(ver=MARK),
        "invalid_audience": claims(aud=f"api://{MARK}"),
        "invalid_issuer": claims(iss=f"https://{MARK}.example/"),
        "invalid_claim": claims(exp=f"{MARK}9"),
        "not_an_access_token": claims(azp="", name=MARK),
        "malformed_token": f"{MARK}.{MARK}",
        "no_permissions": idp.issue_token(roles=[], claims={"name": MARK}),
        "token_expired": idp.issue_token(roles=[MARK], now=1_000_000),
    }


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


async def test_error_descriptions_never_echo_token_content(
    entra_emulator: EntraEmulator,
) -> None:
    outcomes: list[AuthOutcome] = []
    app = EntraAuthMiddleware(ok, config=entra_emulator.config(), on_outcome=outcomes.append)
    for reason, token in marked_tokens(entra_emulator).items():
        status, headers, body = await get_with_token(app, token)
        assert (status >= 400, outcomes[-1].reason) == (True, reason)
        assert json.loads(body)["error_description"]
        answer = body + b"".join(headers.values())
        assert MARK.encode() not in answer, reason
        for segment in token.split("."):
            assert segment[:12].encode() not in answer, reason
    await app.validator.aclose()


async def test_the_validation_error_reason_and_its_traceback(
    entra_emulator: EntraEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug of ours raising inside validation: 401 ``validation_error``, and the traceback
    is logged (never the token)."""

    class Broken(TokenValidator):
        async def validate(self, token: str | bytes, *, now: float | None = None) -> Any:
            raise RuntimeError("a bug of ours")

    outcomes: list[AuthOutcome] = []
    app = EntraAuthMiddleware(
        ok, validator=Broken(entra_emulator.config()), on_outcome=outcomes.append
    )
    token = entra_emulator.issue_token(roles=["r"])
    with caplog.at_level(logging.INFO, logger="entra_guard"):
        status, headers, body = await get_with_token(app, token)
    assert (status, outcomes[-1].reason) == (401, "validation_error")
    assert json.loads(body)["error"] == "invalid_token"
    assert json.loads(body)["error_description"] == "The token could not be validated"
    assert headers[b"www-authenticate"].startswith(b'Bearer error="invalid_token"')
    [failure] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failure.getMessage() == "token validation failed unexpectedly; refusing the request"
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], RuntimeError)
    assert str(failure.exc_info[1]) == "a bug of ours"
    assert all(token not in r.getMessage() for r in caplog.records)
    await app.validator.aclose()
