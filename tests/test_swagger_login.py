"""A person signs in through Swagger UI: a real browser on the example API's /docs.

The example API runs under uvicorn as a user starts it (no ``ENTRA_*``: its own emulator, an SPA
registered for its port, a test user it prints). Debian's Chromium, driven by Playwright, opens
``/docs``, clicks Authorize, keeps the API's scope ticked, signs in on the emulator's page and
comes back; "Try it out" on ``GET /orders`` then shows 200. Swagger UI's files come from the app
itself (``fastapi-offline``), so nothing leaves the machine. The same walk runs against an https
identity provider, with the example configured as for a real tenant (``ENTRA_*`` variables and
``ENTRA_SWAGGER_CLIENT_ID``); the browser trusts exactly that server's key and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entra_guard.cli.emulator import DEMO_API, register_demo, register_demo_sign_in
from entra_guard.testing import EntraEmulator
from tests.processes import CLEAN_ENV, Output, example_api, stop, wait_until_serving

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; never a downloaded browser build
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
SCOPE = "api://entra-guard-demo/Orders.Read"
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM}: apt-get install chromium"),
]


@dataclass(frozen=True)
class DevApi:
    url: str
    upn: str
    password: str
    printed: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def dev_mode_api() -> Iterator[DevApi]:
    """``uvicorn entra_guard.examples.orders_api:app --port N`` with no ENTRA_* set."""
    port = free_port()
    with subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", *example_api(), "--port", str(port)],
        env=CLEAN_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        output = Output(process.stdout)
        try:
            printed = output.until("password:", timeout=60)
            user = re.search(r"user: +(\S+)\n +password: +(\S+)\n", output.until("Uvicorn running"))
            assert user is not None, printed
            url = f"http://127.0.0.1:{port}"
            assert f"open {url}/docs, click Authorize" in printed
            wait_until_serving(f"{url}/health", process)
            yield DevApi(url=url, upn=user.group(1), password=user.group(2), printed=printed)
        finally:
            stop(process)
            output.rest()


@contextmanager
def api_trusting(idp: EntraEmulator) -> Iterator[DevApi]:
    """The example API configured as for a real tenant, that tenant being ``idp`` (https)."""
    port = free_port()
    api, _ = register_demo(idp)
    spa, _, user = register_demo_sign_in(
        idp, spa_redirect_uris=[f"http://127.0.0.1:{port}/docs/oauth2-redirect"]
    )
    environment = {
        **CLEAN_ENV,
        "ENTRA_TENANT_ID": idp.tenant_id,
        "ENTRA_AUDIENCES": f"{api.client_id},{DEMO_API}",
        "ENTRA_INSTANCE": idp.instance,
        "ENTRA_CA_BUNDLE": str(idp.ca_bundle),
        "ENTRA_SWAGGER_CLIENT_ID": spa.client_id,
    }
    with subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", *example_api(), "--port", str(port)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        output = Output(process.stdout)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_serving(f"{url}/health", process)
            yield DevApi(url=url, upn=user.upn, password=user.password, printed="")
        finally:
            stop(process)
            output.rest()


def spki_pin(instance: str) -> str:
    """Chromium's pin of the server key at ``instance``: base64 SHA-256 of its SPKI."""
    parts = urlsplit(instance)
    pem = ssl.get_server_certificate((parts.hostname or "", parts.port or 443))
    spki = (
        x509.load_pem_x509_certificate(pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_a_user_signs_in_through_swagger_ui_and_calls_the_api(tmp_path: Path) -> None:
    with dev_mode_api() as api:
        status, offsite = await walk_in_chromium(api, tmp_path, extra_args=[])
    assert status == "200"
    assert offsite == []  # Swagger UI and the sign-in stayed on this machine


async def test_swagger_ui_signs_in_at_an_https_identity_provider(tmp_path: Path) -> None:
    with EntraEmulator(https=True) as idp, api_trusting(idp) as api:
        trust = f"--ignore-certificate-errors-spki-list={spki_pin(idp.instance)}"
        status, offsite = await walk_in_chromium(api, tmp_path, extra_args=[trust])
    assert status == "200"
    assert offsite == []


async def walk_in_chromium(
    api: DevApi, tmp_path: Path, *, extra_args: list[str]
) -> tuple[str, list[str]]:
    """Chromium signs in through Swagger UI; the status shown and every non-loopback URL asked."""
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        page = await browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        offsite: list[str] = []
        page.context.on(
            "request",
            lambda request: (
                None
                if urlsplit(request.url).hostname == "127.0.0.1"
                else offsite.append(request.url)
            ),
        )
        try:
            status = await sign_in_and_try_orders(page, api)
        except Exception:
            await page.screenshot(path=str(tmp_path / "swagger.png"))  # for the failure report
            raise
        finally:
            await browser.close()
    return status, offsite


async def sign_in_and_try_orders(page: Any, api: DevApi) -> str:
    """What a person does in Swagger UI; the status the page shows for ``GET /orders``."""
    await page.goto(f"{api.url}/docs")
    await page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    await modal.get_by_text(SCOPE).wait_for()
    scope_box = modal.locator(f'input[type=checkbox][data-value="{SCOPE}"]')
    if await scope_box.count() and not await scope_box.is_checked():
        await modal.get_by_text(SCOPE).click()
    async with page.context.expect_page() as popup_opened:
        await modal.locator("button.modal-btn.authorize").click()
    popup = await popup_opened.value
    await popup.wait_for_load_state()
    authorize = popup.url
    assert "/oauth2/v2.0/authorize?" in authorize
    assert "code_challenge_method=S256" in authorize
    await popup.locator("input[name=login]").fill(api.upn)
    await popup.locator("input[name=passwd]").fill(api.password)
    await popup.locator("#idSIButton9").click()
    # The redirect page hands the code to Swagger UI and closes; Swagger UI redeems it.
    await modal.locator("button", has_text="Logout").wait_for()
    await modal.locator("button.btn-done").click()
    operation = page.locator("#operations-default-list_orders_orders_get")
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    await status.wait_for()
    return str(await status.inner_text()).strip()
