"""The middleware as deployed: a real ``uvicorn`` process, behind a path prefix, under CORS.

Each server is ``python -m uvicorn tests.deployment_app:create_app`` on a socket bound here (so
the port is known and requests wait in the backlog until it serves), trusting an emulator on
loopback. A small reverse proxy on loopback stands in for an ingress. uvicorn prepends
``--root-path`` to every path it receives, so ``--root-path`` is the deployment behind a proxy that
strips the prefix; behind a proxy that keeps it, the app declares the prefix itself
(``FastAPI(root_path=...)``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from entra_guard.testing import DEFAULT_AUDIENCE, DEFAULT_CLIENT_ID, EntraEmulator
from entra_guard.testing.server import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
SPA_ORIGIN = "http://127.0.0.1:5173"  # the browser app's origin; nothing needs to listen there
_EXIT_TIMEOUT = 30.0


class Served(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def uvicorn_process(
    idp: EntraEmulator, log: Path, *options: str, **deployment: str
) -> Iterator[Served]:
    """``uvicorn`` serving tests/deployment_app.py; ``deployment`` sets ``DEPLOYMENT_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTRA_", "DEPLOYMENT_"))}
    env.update(
        ENTRA_TENANT_ID=idp.tenant_id, ENTRA_AUDIENCES=DEFAULT_AUDIENCE,
        ENTRA_INSTANCE=idp.instance, ENTRA_FETCH_TIMEOUT_SECONDS="2",
    )  # fmt: skip
    env.update({f"DEPLOYMENT_{name.upper()}": value for name, value in deployment.items()})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    with sock, log.open("wb") as out:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        command = [
            sys.executable, "-m", "uvicorn", "tests.deployment_app:create_app", "--factory",
            "--fd", str(sock.fileno()), "--log-level", "warning", "--no-access-log", *options,
        ]  # fmt: skip
        process = subprocess.Popen(  # noqa: S603
            command, cwd=REPO, env=env, pass_fds=[sock.fileno()], stdout=out, stderr=out
        )
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield Served(url, process, log)
    finally:
        process.terminate()
        process.wait(_EXIT_TIMEOUT)


def prefix_proxy(
    upstream: str, prefix: str, *, strip: bool, also: tuple[str, ...] = ()
) -> BackgroundServer:
    """A reverse proxy serving ``upstream`` under ``prefix``, forwarding it or stripping it;
    the exact paths ``also`` (outside the prefix) are forwarded as they are."""
    passed = {path.encode() for path in also}

    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        raw_path: bytes = scope["raw_path"]
        if raw_path in passed:
            target = raw_path
        elif not raw_path.startswith(prefix.encode() + b"/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        else:
            target = raw_path[len(prefix) :] if strip else raw_path
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                scope["method"], upstream + target.decode("ascii"), headers=headers, content=body
            )
        await send(
            {"type": "http.response.start", "status": answer.status_code,
             "headers": answer.headers.raw}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": answer.content})

    return BackgroundServer(proxy, host="127.0.0.1", port=0, tls=None)


@contextmanager
def behind(upstream: str, prefix: str, *, strip: bool, also: tuple[str, ...] = ()) -> Iterator[str]:
    server = prefix_proxy(upstream, prefix, strip=strip, also=also)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def idp() -> Iterator[EntraEmulator]:
    with EntraEmulator() as emulator:
        yield emulator


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def check_prefixed_api(idp: EntraEmulator, url: str) -> None:
    with httpx.Client(base_url=url) as api:
        health = api.get("/api/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert api.get("/api/public/terms").json() == {"public": "terms"}  # a prefix
        assert api.get("/api/openapi.json").status_code == 200
        assert api.get("/api/healthz").status_code == 401
        assert api.get("/api/me").status_code == 401
        me = api.get("/api/me", headers=bearer(idp.issue_token(roles=["Orders.Read"])))
        assert (me.status_code, me.json()) == (200, {"client_id": DEFAULT_CLIENT_ID})


def test_behind_a_proxy_that_strips_the_prefix(idp: EntraEmulator, tmp_path: Path) -> None:
    with (
        uvicorn_process(idp, tmp_path / "uvicorn.log", "--root-path", "/api") as api,
        behind(api.url, "/api", strip=True) as proxy,
    ):
        check_prefixed_api(idp, proxy)


def test_behind_a_proxy_that_keeps_the_prefix(idp: EntraEmulator, tmp_path: Path) -> None:
    with (
        uvicorn_process(idp, tmp_path / "uvicorn.log", root_path="/api") as api,
        behind(api.url, "/api", strip=False) as proxy,
    ):
        check_prefixed_api(idp, proxy)


@pytest.mark.parametrize("strip", [True, False], ids=["strips", "keeps"])
def test_protected_resource_metadata_behind_a_proxy(
    idp: EntraEmulator, tmp_path: Path, strip: bool
) -> None:
    """The proxy forwards the origin's well-known URL as it is, beside the prefix it serves;
    uvicorn prepends ``--root-path`` to it, and the middleware still finds it. The challenge
    names the public URL from the configuration, whatever host the request came to."""
    public = "https://contoso.test/api"
    document_path = "/.well-known/oauth-protected-resource/api"
    server = {"root_path": "/api"} if not strip else {}
    options = ("--root-path", "/api") if strip else ()
    with (
        uvicorn_process(idp, tmp_path / "uvicorn.log", *options, resource=public, **server) as api,
        behind(api.url, "/api", strip=strip, also=(document_path,)) as proxy,
        httpx.Client(base_url=proxy) as client,
    ):
        refused = client.get("/api/me")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            f'Bearer resource_metadata="https://contoso.test{document_path}"'
        )
        document = client.get(document_path)
        assert document.status_code == 200
        assert document.json()["resource"] == public
        assert client.get("/api/health").status_code == 200


@pytest.fixture(scope="module", params=["outer", "inner"])
def cors_api(
    request: pytest.FixtureRequest, idp: EntraEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, httpx.Client]]:
    """The API with CORSMiddleware outside EntraAuthMiddleware (``outer``) or inside it."""
    order: str = request.param
    log = tmp_path_factory.mktemp(f"cors-{order}") / "uvicorn.log"
    with (
        uvicorn_process(idp, log, cors=order, allow_origin=SPA_ORIGIN) as api,
        httpx.Client(base_url=api.url) as client,
    ):
        yield order, client


def preflight_headers(origin: str = SPA_ORIGIN) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }


def test_a_preflight_gets_the_cors_answer_in_either_order(
    cors_api: tuple[str, httpx.Client],
) -> None:
    _, api = cors_api
    allowed = api.options("/me", headers=preflight_headers())
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "GET" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "www-authenticate" not in allowed.headers
    # CORS, not authentication, decides: an origin it does not allow is refused by CORS.
    other = api.options("/me", headers=preflight_headers("http://127.0.0.1:6666"))
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_requests_that_are_not_preflights_need_a_token(
    cors_api: tuple[str, httpx.Client],
) -> None:
    _, api = cors_api
    only_origin = {"Origin": SPA_ORIGIN}
    only_method = {"Access-Control-Request-Method": "GET"}
    for headers in ({}, only_origin, only_method):
        response = api.options("/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"


def test_cross_origin_answers_carry_cors_headers_when_cors_is_outermost(
    idp: EntraEmulator, cors_api: tuple[str, httpx.Client]
) -> None:
    order, api = cors_api
    token = idp.issue_token(roles=["Orders.Read"])
    granted = api.get("/me", headers={"Origin": SPA_ORIGIN, **bearer(token)})
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == SPA_ORIGIN
    refused = api.get("/me", headers={"Origin": SPA_ORIGIN})
    assert refused.status_code == 401
    if order == "outer":  # the README's order: the browser lets the SPA read the 401
        assert refused.headers["access-control-allow-origin"] == SPA_ORIGIN
        assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
    else:  # the 401 is answered outside CORS: the browser shows the SPA a network error
        assert "access-control-allow-origin" not in refused.headers


def test_added_twice_the_server_refuses_to_start(
    entra_emulator: EntraEmulator, tmp_path: Path
) -> None:
    with uvicorn_process(entra_emulator, tmp_path / "uvicorn.log", twice="1") as api:
        try:
            code = api.process.wait(_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("uvicorn started an app that has EntraAuthMiddleware twice")
    log = api.log.read_text()
    assert code != 0
    assert "EntraAuthMiddleware runs inside another EntraAuthMiddleware" in log
    assert "Add it once" in log
    assert entra_emulator.fetch_count("jwks") == 0  # neither middleware prefetched


def readme_fastapi_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Protect a FastAPI app", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readmes_fastapi_snippet_serves_its_docs(
    entra_emulator: EntraEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied as it is, the snippet's Swagger UI loads and shows the lock; routes need a token."""
    monkeypatch.setenv("ENTRA_TENANT_ID", entra_emulator.tenant_id)
    monkeypatch.setenv("ENTRA_AUDIENCES", DEFAULT_AUDIENCE)
    monkeypatch.setenv("ENTRA_INSTANCE", entra_emulator.instance)
    namespace: dict[str, object] = {"__name__": "readme_snippet"}
    exec(compile(readme_fastapi_snippet(), "README.md", "exec"), namespace)  # noqa: S102
    with TestClient(namespace["app"]) as client:  # type: ignore[arg-type]
        for path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
            assert client.get(path).status_code == 200, path
        schema = client.get("/openapi.json").json()
        assert "EntraID" in schema["components"]["securitySchemes"]  # the lock
        assert client.get("/health").status_code == 200
        assert client.get("/orders").status_code == 401
        token = entra_emulator.issue_token(roles=["Orders.Read"])
        assert client.get("/orders", headers=bearer(token)).status_code == 200


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never a downloaded browser build
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
# Runs in the page: one call with a token (a preflight first: Authorization is not a
# CORS-safelisted header) and one without; what the page's code gets to see of each.
CALL_THE_API = """async ([api, token]) => {
    const call = async (headers) => {
        try {
            const answer = await fetch(api + "/me", {headers});
            return {status: answer.status, body: await answer.text(),
                    challenge: answer.headers.get("WWW-Authenticate")};
        } catch (error) {
            return {error: error.name};
        }
    };
    return {granted: await call({Authorization: "Bearer " + token}), refused: await call({})};
}"""


async def page_origin(scope: Scope, receive: Receive, send: Send) -> None:
    """The single-page app's own origin: a blank page to run the calls from."""
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"<!doctype html><title>spa</title>"})


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install chromium")
@pytest.mark.parametrize("order", ["outer", "inner"])
async def test_a_browser_on_another_origin_calls_the_api(
    idp: EntraEmulator, tmp_path: Path, order: str
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    spa = BackgroundServer(page_origin, host="127.0.0.1", port=0, tls=None)
    spa.start()
    origin = f"http://127.0.0.1:{spa.port}"
    token = idp.issue_token(roles=["Orders.Read"])
    try:
        with uvicorn_process(
            idp, tmp_path / "uvicorn.log", "--log-level", "info", "--access-log",
            cors=order, allow_origin=origin,
        ) as api:  # fmt: skip
            async with playwright.async_playwright() as driver:
                browser = await driver.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page()
                    await page.goto(origin)
                    seen = await page.evaluate(CALL_THE_API, [api.url, token])
                finally:
                    await browser.close()
    finally:
        spa.stop()
    log = api.log.read_text()
    assert '"OPTIONS /me HTTP/1.1" 200' in log  # the browser's preflight, answered by CORS
    assert seen["granted"] == {
        "status": 200, "body": f'{{"client_id":"{DEFAULT_CLIENT_ID}"}}', "challenge": None
    }  # fmt: skip
    if order == "outer":  # the README's order: the app can read the 401 and its challenge
        assert (seen["refused"]["status"], seen["refused"]["challenge"]) == (401, "Bearer")
    else:  # the 401 carries no CORS headers: the browser hands the app a network error
        assert seen["refused"] == {"error": "TypeError"}
        assert '"GET /me HTTP/1.1" 401' in log  # the request did reach the API
