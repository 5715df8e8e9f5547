"""``entra_guard.client`` against the emulator's token endpoint, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import entra_guard.client
from entra_guard import InvalidToken, TokenValidator
from entra_guard.client import (
    AccessToken,
    ClientCertificate,
    ClientSecret,
    ConfidentialClient,
    EntraClientAuth,
    TokenRequestError,
)
from entra_guard.client.confidential import RENEW_RETRY_INTERVAL
from entra_guard.client.errors import parse_retry_after
from entra_guard.client.tokens import read_token_response
from entra_guard.testing import EntraEmulator
from entra_guard.testing.registrations import generate_certificate
from entra_guard.testing.server import BackgroundServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from starlette.requests import Request

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from tests.conftest import FakeClock

SCOPE = "api://orders/.default"
# Plain-http clients need no CA store; loading certifi's for each client costs ~50 ms.
NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
UNKNOWN_GUID = "00000000-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class Env:
    idp: EntraEmulator
    api: ApiRegistration
    app: ClientRegistration  # a secret and a certificate, Orders.Read on the API

    @property
    def secret(self) -> str:
        assert self.app.secret is not None
        return self.app.secret

    def certificate(self, algorithm: Any = "PS256") -> ClientCertificate:
        assert self.app.private_key_pem is not None
        assert self.app.certificate_pem is not None
        return ClientCertificate(
            self.app.private_key_pem, self.app.certificate_pem, algorithm=algorithm
        )

    def client(self, **overrides: Any) -> ConfidentialClient:
        options: dict[str, Any] = {
            "tenant_id": self.idp.tenant_id,
            "client_id": self.app.client_id,
            "credential": ClientSecret(self.secret),
            "instance": self.idp.instance,
            "retry_delay": 0.01,
            "verify": NO_TLS,
        }
        return ConfidentialClient(**{**options, **overrides})


@pytest.fixture(scope="module")
def shared() -> Iterator[Env]:
    with EntraEmulator() as idp:
        api = idp.register_api(app_id_uri="api://orders", roles=["Orders.Read", "Orders.Write"])
        app = idp.register_client(
            name="daemon", roles={"api://orders": ["Orders.Read"]}, certificate=True
        )
        yield Env(idp, api, app)


def calm(idp: EntraEmulator) -> None:
    idp.fail_token_requests(count=0)
    idp.delay = 0
    idp.token_lifetime = 3599
    idp.reset_counts()


@pytest.fixture
def env(shared: Env) -> Iterator[Env]:
    """The shared emulator, with no faults and zeroed counts before and after each test."""
    calm(shared.idp)
    yield shared
    calm(shared.idp)


async def roles_of(env: Env, token: AccessToken) -> set[str]:
    config = env.idp.config(audiences=[env.api.client_id])
    async with (
        httpx.AsyncClient(verify=NO_TLS) as http,
        TokenValidator(config, http_client=http) as validator,
    ):
        principal = await validator.validate(token.token)
    assert principal.client_id == env.app.client_id
    return set(principal.roles)


# -- acquiring and caching ----------------------------------------------------------------------


async def test_secret_token_is_cached_and_shared_by_sync_and_async(env: Env) -> None:
    with env.client() as client:
        token = client.acquire_token_sync(SCOPE)
        assert client.acquire_token_sync(SCOPE) is token
        assert env.idp.token_request_count() == 1
        assert await client.acquire_token(f" {SCOPE} ") is token
        assert env.idp.token_request_count() == 1
        await client.aclose()
    assert (token.scope, token.token_type) == (SCOPE, "Bearer")
    assert token.expires_at == pytest.approx(time.time() + 3599, abs=5)
    assert jwt.decode(token.token, options={"verify_signature": False})["azpacr"] == "1"
    assert await roles_of(env, token) == {"Orders.Read"}


@pytest.mark.parametrize("algorithm", ["PS256", "RS256"])
async def test_certificate_token(env: Env, algorithm: str) -> None:
    async with env.client(credential=env.certificate(algorithm)) as client:
        token = await client.acquire_token(SCOPE)
        assert await client.acquire_token(SCOPE, force_refresh=True) is not token
    assert jwt.decode(token.token, options={"verify_signature": False})["azpacr"] == "2"
    assert await roles_of(env, token) == {"Orders.Read"}
    assert env.idp.token_request_count() == 2


def test_certificate_from_files(env: Env, tmp_path: Path) -> None:
    assert env.app.private_key_pem is not None
    assert env.app.certificate_pem is not None
    key = serialization.load_pem_private_key(env.app.private_key_pem, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )
    combined = tmp_path / "combined.pem"
    combined.write_bytes(env.app.certificate_pem + encrypted)
    (tmp_path / "cert.pem").write_bytes(env.app.certificate_pem)
    (tmp_path / "key.pem").write_bytes(env.app.private_key_pem)

    one_file = ClientCertificate.from_files(combined, password=b"pass phrase", algorithm="RS256")
    two_files = ClientCertificate.from_files(tmp_path / "key.pem", tmp_path / "cert.pem")
    assert one_file.thumbprint == two_files.thumbprint == env.app.certificate_thumbprint
    for credential in (one_file, two_files):
        with env.client(credential=credential) as client:
            assert client.acquire_token_sync(SCOPE).token


def test_certificate_mistakes(env: Env) -> None:
    assert env.app.private_key_pem is not None
    assert env.app.certificate_pem is not None
    other_cert, other_key = generate_certificate("other")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases: list[tuple[bytes, bytes, bytes | None, str]] = [
        (env.app.private_key_pem, other_cert, None, "belongs to the private key"),
        (other_key, b"not a pem", None, "no PEM certificate"),
        (b"garbage", env.app.certificate_pem, None, "not a PEM private key"),
        (env.app.private_key_pem, env.app.certificate_pem, b"pw", "password does not fit"),
        (ec_key, env.app.certificate_pem, None, "RSA key"),
    ]
    for key_pem, cert_pem, password, message in cases:
        with pytest.raises(ValueError, match=message):
            ClientCertificate(key_pem, cert_pem, password=password)
    with pytest.raises(ValueError, match="algorithm"):
        ClientCertificate(env.app.private_key_pem, env.app.certificate_pem, algorithm="ES256")  # type: ignore[arg-type]


def test_renewal_before_expiry(env: Env, clock: FakeClock) -> None:
    with env.client(clock=clock) as client:
        first = client.acquire_token_sync(SCOPE)
        assert first.expires_at == clock.now + 3599
        clock.advance(3599 - 300 - 1)
        assert client.acquire_token_sync(SCOPE) is first
        clock.advance(2)  # now inside renew_before
        second = client.acquire_token_sync(SCOPE)
    assert second.token != first.token
    assert env.idp.token_request_count() == 2


async def test_short_lived_tokens_renew_at_half_life(env: Env, clock: FakeClock) -> None:
    env.idp.token_lifetime = 200  # shorter than renew_before (300 s)
    async with env.client(clock=clock) as client:
        first = await client.acquire_token(SCOPE)
        clock.advance(99)
        for _ in range(5):
            assert await client.acquire_token(SCOPE) is first
        assert env.idp.token_request_count() == 1
        clock.advance(2)
        assert await client.acquire_token(SCOPE) is not first
    assert env.idp.token_request_count() == 2


async def test_fifty_coroutines_share_one_request(env: Env) -> None:
    env.idp.delay = 0.1
    async with env.client() as client:
        tokens = await asyncio.gather(*(client.acquire_token(SCOPE) for _ in range(50)))
    assert len({id(token) for token in tokens}) == 1
    assert env.idp.token_request_count() == 1


def test_threads_share_one_request(env: Env) -> None:
    env.idp.delay = 0.1
    barrier = threading.Barrier(20)

    def acquire(client: ConfidentialClient) -> AccessToken:
        barrier.wait()
        return client.acquire_token_sync(SCOPE)

    with env.client() as client, ThreadPoolExecutor(max_workers=20) as pool:
        tokens = list(pool.map(acquire, [client] * 20))
    assert len({id(token) for token in tokens}) == 1
    assert env.idp.token_request_count() == 1


async def test_renewal_does_not_hold_up_other_callers(env: Env, clock: FakeClock) -> None:
    async with env.client(clock=clock) as client:
        first = await client.acquire_token(SCOPE)
        clock.advance(3400)  # renewal due, token still valid
        env.idp.delay = 1.0
        renewing = asyncio.create_task(client.acquire_token(SCOPE))
        for _ in range(500):  # bounded: until the renewal's request has reached the endpoint
            if env.idp.token_request_count() == 2:
                break
            await asyncio.sleep(0.01)
        assert await client.acquire_token(SCOPE) is first
        assert not renewing.done()  # answered while the renewal still waits on the endpoint
        assert (await renewing).token != first.token
    assert env.idp.token_request_count() == 2


async def test_stale_but_valid_token_serves_when_renewal_fails(
    env: Env, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idp = env.idp
    async with env.client(clock=clock, max_retries=1) as client:
        first = await client.acquire_token(SCOPE)
        clock.advance(3599 - 200)
        idp.fail_token_requests(status=500, count=None)
        with caplog.at_level(logging.WARNING, logger="entra_guard.client"):
            assert await client.acquire_token(SCOPE) is first
        assert "stays in use" in caplog.text
        assert first.fingerprint in caplog.text
        assert idp.token_request_count() == 3  # the first, then one attempt and one retry
        assert await client.acquire_token(SCOPE) is first
        assert idp.token_request_count() == 3, "no new attempt during the pause after a failure"

        clock.advance(RENEW_RETRY_INTERVAL + 1)
        assert client.acquire_token_sync(SCOPE) is first  # the sync path falls back too
        assert idp.token_request_count() == 5

        clock.advance(RENEW_RETRY_INTERVAL + 1)
        idp.fail_token_requests(count=0)
        renewed = await client.acquire_token(SCOPE)
        assert renewed.token != first.token

        clock.advance(3599)  # renewed has expired too
        idp.fail_token_requests(status=500, count=None)
        with pytest.raises(TokenRequestError) as caught:
            await client.acquire_token(SCOPE)
    assert caught.value.status_code == 500


# -- retries and errors -------------------------------------------------------------------------


async def test_429_retry_after_wins_over_backoff(env: Env) -> None:
    env.idp.fail_token_requests(status=429, count=2, retry_after=0)
    async with env.client(retry_delay=30.0) as client:
        started = time.perf_counter()
        assert await client.acquire_token(SCOPE)
    assert time.perf_counter() - started < 2
    assert env.idp.token_request_count() == 3


def test_retry_after_is_waited_for(env: Env) -> None:
    env.idp.fail_token_requests(status=429, count=1, retry_after=1)
    with env.client() as client:
        started = time.perf_counter()
        assert client.acquire_token_sync(SCOPE)
    assert time.perf_counter() - started >= 0.95  # Retry-After: 1 was waited for
    assert env.idp.token_request_count() == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(env: Env, status: int) -> None:
    env.idp.fail_token_requests(status=status, count=2)
    async with env.client() as client:
        assert await client.acquire_token(SCOPE)
    assert env.idp.token_request_count() == 3


async def test_bounded_retries_then_the_error_with_its_ids(env: Env) -> None:
    env.idp.fail_token_requests(status=503, count=None)
    async with env.client(max_retries=2) as client:
        with pytest.raises(TokenRequestError) as caught:
            await client.acquire_token(SCOPE)
    error = caught.value
    assert env.idp.token_request_count() == 3
    assert (error.status_code, error.error, error.aadsts) == (
        503,
        "temporarily_unavailable",
        "AADSTS90033",
    )
    assert error.codes == [90033]
    assert error.transient
    assert error.trace_id
    assert error.correlation_id
    assert "\n" not in str(error)
    assert error.trace_id in str(error)
    assert error.correlation_id in str(error)
    assert "Trace ID" in error.description


def test_connection_refused_is_retried_until_the_idp_is_back() -> None:
    with EntraEmulator() as idp:
        idp.register_api(app_id_uri="api://orders")
        app = idp.register_client(name="daemon")
        assert app.secret is not None
        client = ConfidentialClient(
            tenant_id=idp.tenant_id,
            client_id=app.client_id,
            credential=ClientSecret(app.secret),
            instance=idp.instance,
            max_retries=1,
            retry_delay=0.01,
            verify=NO_TLS,
        )
        with client:
            idp.stop()
            with pytest.raises(TokenRequestError) as caught:
                client.acquire_token_sync(SCOPE)
            error = caught.value
            assert (error.status_code, error.error, error.transient) == (
                None,
                "connection_error",
                True,
            )
            assert isinstance(error.__cause__, httpx.ConnectError)

            coming_back = threading.Timer(0.2, idp.start)
            coming_back.start()
            patient = ConfidentialClient(
                tenant_id=idp.tenant_id,
                client_id=app.client_id,
                credential=ClientSecret(app.secret),
                instance=idp.instance,
                max_retries=8,
                retry_delay=0.05,
                verify=NO_TLS,
            )
            with patient:
                assert patient.acquire_token_sync(SCOPE)
            coming_back.join()
            assert idp.token_request_count() == 1


def error_cases(env: Env) -> list[tuple[str, dict[str, Any], str, int]]:
    other_cert, other_key = generate_certificate("unregistered")
    unregistered = ClientCertificate(other_key, other_cert)
    return [
        ("wrong secret", {"credential": ClientSecret("wrong")}, "AADSTS7000215", 401),
        ("unknown app", {"client_id": UNKNOWN_GUID}, "AADSTS700016", 400),
        ("unknown tenant", {"tenant_id": UNKNOWN_GUID}, "AADSTS90002", 400),
        ("tenant by domain", {"tenant_id": "contoso.onmicrosoft.com"}, "AADSTS90002", 400),
        ("unregistered certificate", {"credential": unregistered}, "AADSTS700027", 401),
    ]


async def test_each_refusal_is_a_token_request_error_at_once(env: Env) -> None:
    for name, overrides, aadsts, status in error_cases(env):
        env.idp.reset_counts()
        async with env.client(**overrides) as client:
            with pytest.raises(TokenRequestError) as caught:
                await client.acquire_token(SCOPE)
        error = caught.value
        assert (error.aadsts, error.status_code, error.transient) == (aadsts, status, False), name
        assert env.idp.token_request_count() == 1, f"{name}: a refusal is not retried"
    async with env.client() as client:
        with pytest.raises(TokenRequestError) as unknown_api:
            await client.acquire_token("api://nobody/.default")
    assert unknown_api.value.aadsts == "AADSTS500011"
    assert unknown_api.value.error == "invalid_resource"


@pytest.mark.parametrize(
    "body",
    [
        "<html>Sign in to the proxy</html>",
        '{"token_type": "Bearer", "expires_in": 3599}',
        '{"access_token": "x", "token_type": "pop"}',
        '{"access_token": "x", "expires_in": "soon"}',
        "[1, 2]",
    ],
)
def test_a_broken_200_is_an_error(env: Env, body: str) -> None:
    env.idp.fail_token_requests(status=200, body=body)
    with env.client() as client, pytest.raises(TokenRequestError) as caught:
        client.acquire_token_sync(SCOPE)
    assert (caught.value.error, caught.value.status_code) == ("invalid_response", 200)
    assert not caught.value.transient
    assert env.idp.token_request_count() == 1


def response(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(body).encode())


def test_lifetimes_as_numbers_strings_or_missing() -> None:
    def entry(**body: Any) -> Any:
        return read_token_response(
            response({"access_token": "t", **body}), scope=SCOPE, now=1000.0, renew_before=300.0
        )

    assert entry(expires_in=3599).token.expires_at == 4599
    assert entry(expires_in="3599", token_type="Bearer").token.expires_at == 4599  # v1
    assert entry().token.expires_at == 1600, "MSAL's default: 600 s"
    assert entry().renew_at == 1300, "half-life when shorter than renew_before"
    assert entry(expires_in=3599, refresh_in=1800).renew_at == 2800
    assert entry(expires_in=3599).renew_at == 4299
    for bad in (0, -5, True, None, "x"):
        assert isinstance(entry(expires_in=bad), TokenRequestError)


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0


# -- nothing secret leaks -----------------------------------------------------------------------


async def test_secrets_keys_and_tokens_never_show(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    assert env.app.private_key_pem is not None
    secret_client = env.client()
    cert_client = env.client(credential=env.certificate())
    objects: list[object] = [secret_client, cert_client, secret_client.credential]
    objects.append(cert_client.credential)
    with caplog.at_level(logging.DEBUG):
        token = await secret_client.acquire_token(SCOPE)
        cert_token = await cert_client.acquire_token(SCOPE)
        # A server that echoes what it got must not make the error repeat the secret.
        env.idp.fail_token_requests(
            status=400,
            body=json.dumps({"error": "invalid_client", "error_description": f"got {env.secret}"}),
        )
        with pytest.raises(TokenRequestError) as caught:
            await secret_client.acquire_token(SCOPE, force_refresh=True)
        env.idp.fail_token_requests(status=500, count=None)
        async with env.client(max_retries=1) as retrying:
            with pytest.raises(TokenRequestError) as retried:
                await retrying.acquire_token(SCOPE)
    objects += [token, cert_token, caught.value, retried.value, secret_client.auth(SCOPE)]
    await secret_client.aclose()
    await cert_client.aclose()
    shown = caplog.text + "".join(repr(o) + str(o) for o in objects)
    shown += caught.value.description
    key_body = env.app.private_key_pem.decode().splitlines()[1]
    for hidden in (env.secret, token.token, cert_token.token, key_body, "PRIVATE KEY"):
        assert hidden not in shown
    assert token.fingerprint in repr(token)
    assert "[redacted]" in caught.value.description


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    ["api://orders", "api://orders/Orders.Read", "api://a/.default api://b/.default", "/.default"],
)
def test_scope_must_be_one_default_scope(env: Env, scope: str) -> None:
    with env.client() as client, pytest.raises(ValueError, match=r"/\.default") as caught:
        client.acquire_token_sync(scope)
    assert "roles" in str(caught.value)
    assert env.idp.token_request_count() == 0


def test_constructor_checks(env: Env) -> None:
    for tenant in ("common", "Organizations", "consumers"):
        with pytest.raises(ValueError, match="AADSTS9001023"):
            env.client(tenant_id=tenant)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"tenant_id": "not a tenant"}, "tenant_id"),
        ({"client_id": "daemon"}, "client_id"),
        ({"instance": "http://login.example.com"}, "loopback"),
        ({"instance": "ftp://127.0.0.1"}, "https"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"renew_before": float("nan")}, "renew_before"),
        ({"verify": "/nonexistent/ca.pem"}, "CA bundle"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=message):
            env.client(**overrides)
    with pytest.raises(ValueError, match="secret"):
        ClientSecret("")
    domain = env.client(tenant_id="Contoso.OnMicrosoft.com", instance="https://login.example.com/")
    assert domain.token_endpoint == (
        "https://login.example.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )


async def test_close_and_clients_passed_in(env: Env) -> None:
    async with httpx.AsyncClient(verify=NO_TLS) as mine:
        client = env.client(http_client=mine)
        await client.acquire_token(SCOPE)
        await client.aclose()
        assert not mine.is_closed, "a client passed in belongs to the caller"
        with pytest.raises(RuntimeError, match="closed"):
            await client.acquire_token(SCOPE, force_refresh=True)
    with env.client() as owned:
        owned.acquire_token_sync(SCOPE)
    with pytest.raises(RuntimeError, match="closed"):
        owned.acquire_token_sync(SCOPE, force_refresh=True)


async def test_https_with_a_ca_bundle(entra_emulator_https: EntraEmulator) -> None:
    idp = entra_emulator_https
    idp.register_api(app_id_uri="api://orders")
    app = idp.register_client(name="daemon")
    assert app.secret is not None
    options: dict[str, Any] = {
        "tenant_id": idp.tenant_id,
        "client_id": app.client_id,
        "credential": ClientSecret(app.secret),
        "instance": idp.instance,
        "max_retries": 0,
    }
    async with ConfidentialClient(**options, verify=idp.ca_bundle or "") as client:
        assert await client.acquire_token(SCOPE)
    with ConfidentialClient(**options, verify=idp.ssl_context()) as client:
        assert client.acquire_token_sync(SCOPE)
    async with ConfidentialClient(**options) as untrusting:
        with pytest.raises(TokenRequestError) as caught:
            await untrusting.acquire_token(SCOPE)
    assert caught.value.error == "connection_error"


# -- httpx.Auth ---------------------------------------------------------------------------------


@dataclass
class ProtectedApi:
    url: str
    revoked: set[str]
    seen: list[str]


@pytest.fixture
def protected_api(env: Env) -> Iterator[ProtectedApi]:
    """A tiny API that validates bearer tokens and refuses revoked ones (all, if "*") with 401."""
    revoked: set[str] = set()
    seen: list[str] = []
    config = env.idp.config(audiences=[env.api.client_id])

    async def orders(request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(token)
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if token in revoked or "*" in revoked:
            return JSONResponse({"error": "revoked"}, status_code=401, headers=challenge)
        async with (
            httpx.AsyncClient(verify=NO_TLS) as http,
            TokenValidator(config, http_client=http) as validator,
        ):
            try:
                principal = await validator.validate(token)
            except InvalidToken as exc:
                return JSONResponse({"error": exc.reason}, status_code=401, headers=challenge)
        return JSONResponse({"client_id": principal.client_id, "roles": sorted(principal.roles)})

    app = Starlette(routes=[Route("/orders", orders, methods=["GET", "POST"])])
    server = BackgroundServer(app, host="127.0.0.1", port=0, tls=None)
    server.start()
    try:
        yield ProtectedApi(f"http://127.0.0.1:{server.port}/orders", revoked, seen)
    finally:
        server.stop()


def test_auth_sync_renews_once_on_401(env: Env, protected_api: ProtectedApi) -> None:
    with env.client() as client, httpx.Client(auth=client.auth(SCOPE), verify=NO_TLS) as http:
        ok = http.get(protected_api.url)
        assert ok.status_code == 200
        assert ok.json() == {"client_id": env.app.client_id, "roles": ["Orders.Read"]}
        first = protected_api.seen[-1]
        protected_api.revoked.add(first)
        renewed = http.post(protected_api.url, json={"order": 1})
        assert renewed.status_code == 200
        assert protected_api.seen[-2:] == [first, protected_api.seen[-1]]
        assert protected_api.seen[-1] != first
        assert env.idp.token_request_count() == 2

        protected_api.revoked.add("*")
        env.idp.reset_counts()
        hits = len(protected_api.seen)
        refused = http.get(protected_api.url)
        assert refused.status_code == 401, "after one renewal the API's answer is final"
        assert len(protected_api.seen) == hits + 2
        assert env.idp.token_request_count() == 1


async def test_auth_async_renews_once_on_401(env: Env, protected_api: ProtectedApi) -> None:
    async with env.client() as client:
        auth = client.auth(SCOPE)
        assert isinstance(auth, EntraClientAuth)
        assert not auth.requires_request_body
        async with httpx.AsyncClient(auth=auth, verify=NO_TLS) as http:
            assert (await http.get(protected_api.url)).status_code == 200
            protected_api.revoked.add(protected_api.seen[-1])
            responses = await asyncio.gather(*(http.get(protected_api.url) for _ in range(5)))
        assert [r.status_code for r in responses] == [200] * 5
        assert env.idp.token_request_count() == 2, "five 401s, one renewal"
        with pytest.raises(ValueError, match=r"/\.default"):
            client.auth("api://orders")


def test_public_api_is_exactly_all() -> None:
    assert entra_guard.client.__all__ == [
        "AccessToken",
        "ClientCertificate",
        "ClientSecret",
        "ConfidentialClient",
        "EntraClientAuth",
        "OnBehalfOfAuth",
        "OnBehalfOfClient",
        "TokenRequestError",
    ]
    public = {
        name
        for name, value in vars(entra_guard.client).items()
        if not name.startswith("_") and not isinstance(value, type(entra_guard.client))
    }
    assert public == set(entra_guard.client.__all__)
