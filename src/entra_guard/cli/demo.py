"""``entra-guard demo``: the whole story on one machine, each step checked.

A local Entra ID (the emulator) with an API, two daemons, a single-page app and a user
registered; the example API served by uvicorn on loopback and trusting that Entra ID; tokens
acquired with the client-credentials grant (a secret, then a certificate) and by a user's
sign-in (authorization code with PKCE, as Swagger UI does it); the API calling the emulator's
Graph stand-in on behalf of that user (on-behalf-of); and calls whose answers must be exactly
the expected ones.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import httpx

from entra_guard.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail
from entra_guard.cli.emulator import DEMO_API, register_demo, register_demo_sign_in
from entra_guard.cli.user_sign_in import SignInError, sign_in
from entra_guard.client import ClientCertificate, ClientSecret, ConfidentialClient
from entra_guard.testing import EntraEmulator
from entra_guard.testing.server import BackgroundServer

__all__ = ["EXAMPLE_MODULE", "load_example", "run_demo"]

#: The example API the demo serves; it ships in the wheel (``src/entra_guard/examples/``).
EXAMPLE_MODULE = "entra_guard.examples.orders_api"
_SCOPE = f"{DEMO_API}/.default"
#: The delegated scope the signed-in user's app asks for (register_demo_sign_in consents to it).
_USER_SCOPE = f"{DEMO_API}/Orders.Read"


def run_demo(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError as exc:
        return fail(f"the demo needs {exc.name}: pip install 'entra-guard[demo]'", EXIT_USAGE)
    report = Report()
    asyncio.run(_demo(report))
    print(report.summary())
    return EXIT_OK if report.all_expected else EXIT_FAILED


class Report:
    """Prints each step as it happens and remembers whether each went as expected."""

    def __init__(self) -> None:
        self.outcomes: list[bool] = []
        print("entra-guard demo: everything runs on 127.0.0.1; nothing leaves this machine")

    def step(self, ok: bool, what: str, detail: str) -> None:
        self.outcomes.append(ok)
        print(f"  [{'ok' if ok else 'FAIL'}] {what:<46} {detail}", flush=True)

    def expect(self, what: str, response: httpx.Response, expected: int) -> None:
        detail = f"-> {response.status_code} (expected {expected})"
        if response.status_code >= 400:
            detail += f" {_error_of(response)}"
        self.step(response.status_code == expected, what, detail)

    @property
    def all_expected(self) -> bool:
        return bool(self.outcomes) and all(self.outcomes)

    def summary(self) -> str:
        failed = self.outcomes.count(False)
        if failed == 0 and self.outcomes:
            return f"All {len(self.outcomes)} outcomes were the expected ones."
        return f"{failed} of {len(self.outcomes)} outcomes were not the expected ones."


async def _demo(report: Report) -> None:
    with EntraEmulator() as idp:
        api, reader = register_demo(idp, granted=("Orders.Read",))
        writer = idp.register_client(
            name="orders-writer", roles={DEMO_API: ["Orders.Read", "Orders.Write"]},
            secret=False, certificate=True,
        )  # fmt: skip
        # The API calls Graph as the signed-in user: it authenticates as itself, consented to
        # Graph's User.Read, and the emulator's Graph stand-in answers.
        itself = idp.register_client(
            name="orders-api", client_id=api.client_id, secret=True,
            scopes={"https://graph.microsoft.com": ["User.Read"]},
        )  # fmt: skip
        report.step(True, "local Entra ID (emulator)", f"{idp.instance}, tenant {idp.tenant_id}")
        environment = {
            "ENTRA_TENANT_ID": idp.tenant_id,
            "ENTRA_AUDIENCES": f"{api.client_id},{DEMO_API}",
            "ENTRA_INSTANCE": idp.instance,
            "ENTRA_CLIENT_ID": api.client_id,
            "ENTRA_CLIENT_SECRET": itself.secret or "",
            "ENTRA_GRAPH_URL": idp.graph_url,
        }
        with _environment(environment):
            module = load_example()
        server = BackgroundServer(module.app, host="127.0.0.1", port=0, tls=None, lifespan="on")
        server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            report.step(True, "example API (uvicorn)", f"{base}, trusting the emulator")
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                await _calls(idp, http, reader.client_id, ClientSecret(reader.secret or ""), report)
                key, cert = writer.private_key_pem or b"", writer.certificate_pem or b""
                certificate = ClientCertificate(key, cert)
                await _writer_calls(idp, http, writer.client_id, certificate, report)
                await _user_calls(idp, http, base, report)
        finally:
            server.stop()


async def _calls(
    idp: EntraEmulator,
    http: httpx.AsyncClient,
    client_id: str,
    secret: ClientSecret,
    report: Report,
) -> None:
    async with ConfidentialClient(
        tenant_id=idp.tenant_id, client_id=client_id, credential=secret, instance=idp.instance
    ) as client:
        token = (await client.acquire_token(_SCOPE)).token
        claims = _claims(token)
        roles = ", ".join(claims.get("roles", []))
        report.step(True, "token: client credentials with a secret", f"v{claims['ver']}, {roles}")
        bearer = {"Authorization": f"Bearer {token}"}
        report.expect("GET /health, no token (public)", await http.get("/health"), 200)
        report.expect(
            "GET /orders, role Orders.Read", await http.get("/orders", headers=bearer), 200
        )
        me = await http.get("/me", headers=bearer)
        report.expect("GET /me", me, 200)
        order = {"item": "tea", "quantity": 1}
        report.expect("POST /orders, lacking role Orders.Write",
                      await http.post("/orders", headers=bearer, json=order), 403)  # fmt: skip
        tampered = {"Authorization": f"Bearer {_escalate(token)}"}
        report.expect("GET /orders, tampered token (roles added)",
                      await http.get("/orders", headers=tampered), 401)  # fmt: skip
        report.expect("GET /orders, no token", await http.get("/orders"), 401)


async def _writer_calls(
    idp: EntraEmulator,
    http: httpx.AsyncClient,
    client_id: str,
    cert: ClientCertificate,
    report: Report,
) -> None:
    async with ConfidentialClient(
        tenant_id=idp.tenant_id, client_id=client_id, credential=cert, instance=idp.instance
    ) as client:
        token = (await client.acquire_token(_SCOPE)).token
        report.step(True, "token: client credentials with a certificate",
                    f"roles {', '.join(_claims(token).get('roles', []))}")  # fmt: skip
        created = await http.post("/orders", headers={"Authorization": f"Bearer {token}"},
                                  json={"item": "coffee", "quantity": 2})  # fmt: skip
        report.expect("POST /orders, role Orders.Write", created, 201)


async def _user_calls(
    idp: EntraEmulator, http: httpx.AsyncClient, base: str, report: Report
) -> None:
    """A user signs in through Swagger UI's single-page app: the scope, not the app role."""
    redirect_uri = f"{base}/docs/oauth2-redirect"
    spa, _, user = register_demo_sign_in(idp, spa_redirect_uris=[redirect_uri])
    try:
        async with httpx.AsyncClient(timeout=10) as browser:  # the demo's emulator is http
            token = await sign_in(
                browser, authority=f"{idp.instance}/{idp.tenant_id}", client_id=spa.client_id,
                redirect_uri=redirect_uri, scopes=[_USER_SCOPE],
                upn=user.upn, password=user.password,
            )  # fmt: skip
    except (SignInError, httpx.HTTPError) as exc:
        report.step(False, "token: a user signs in (code + PKCE)", str(exc))
        return
    claims = _claims(token)
    report.step(True, "token: a user signs in (code + PKCE)",
                f"{claims.get('preferred_username')}, scp {claims.get('scp')}")  # fmt: skip
    bearer = {"Authorization": f"Bearer {token}"}
    report.expect("GET /orders, user with scope Orders.Read",
                  await http.get("/orders", headers=bearer), 200)  # fmt: skip
    report.expect("POST /orders, user lacking role Orders.Write",
                  await http.post("/orders", headers=bearer,
                                  json={"item": "cake", "quantity": 1}), 403)  # fmt: skip
    profile = await http.get("/me/profile", headers=bearer)
    upn = profile.json().get("userPrincipalName") if profile.status_code == 200 else None
    detail = f"-> {profile.status_code} (expected 200)"
    detail += f", {upn} from Graph" if upn else f" {_error_of(profile) or profile.text[:200]}"
    report.step(upn == user.upn, "GET /me/profile, Graph on behalf of the user", detail)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _escalate(token: str) -> str:
    """The same token with ``Orders.Write`` added to its roles and the old signature kept."""
    header, _, signature = token.split(".")
    claims = _claims(token)
    claims["roles"] = [*claims.get("roles", []), "Orders.Write"]
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return f"{body.get('error')}: {body.get('error_description')}" if isinstance(body, dict) else ""


def load_example() -> ModuleType:
    """A fresh instance of the example API module, configured by ``ENTRA_*`` as they are now.

    Found by its module name, the same way in a checkout, an editable install and a wheel; not
    put in ``sys.modules``, so each run gets its own app and settings.
    """
    spec = importlib.util.find_spec(EXAMPLE_MODULE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{EXAMPLE_MODULE} is not installed")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in (*values, "ENTRA_ALLOWED_TENANTS",
                 "ENTRA_ALLOWED_CLIENT_IDS", "ENTRA_SWAGGER_CLIENT_ID")}  # fmt: skip
    for name in saved:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(argparse.Namespace()))
