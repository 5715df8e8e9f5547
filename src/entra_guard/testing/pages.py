"""The HTML the authorize endpoint shows: the sign-in page, Entra's error page, form_post.

Everything echoed into a page is escaped. The sign-in page needs no JavaScript: a browser
test fills ``input[name=login]`` and ``input[name=passwd]`` (Entra's own field names) and
clicks ``#idSIButton9`` (Entra's button id). The ``form_post`` page submits itself on load,
as Entra's does, and offers a button when scripts are off.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from starlette.responses import HTMLResponse

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.token_errors import TokenError

__all__ = ["NO_STORE", "error_page", "form_post_page", "sign_in_page"]

NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}

_STYLE = (
    "body{font-family:'Segoe UI',sans-serif;background:#f2f2f2}"
    "main{background:#fff;max-width:440px;margin:10vh auto;padding:44px;"
    "box-shadow:0 2px 6px rgba(0,0,0,.2)}"
    "input{display:block;width:100%;margin:12px 0;padding:6px;box-sizing:border-box}"
    "#idSIButton9{background:#0067b8;color:#fff;border:0;padding:8px}"
    ".error{color:#e81123}"
)


def sign_in_page(client: ClientRegistration, *, login: str, message: str | None) -> HTMLResponse:
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Sign in to your account</title>"
        f"<style>{_STYLE}</style></head><body><main>"
        "<h1>Sign in</h1>"
        f"<p>to continue to {html.escape(client.name)} (Entra ID emulator)</p>{error}"
        '<form method="post">'
        '<label for="i0116">Email, phone, or Skype</label>'
        f'<input id="i0116" name="login" type="email" value="{html.escape(login)}" '
        'autocomplete="username" required>'
        '<label for="i0118">Password</label>'
        '<input id="i0118" name="passwd" type="password" autocomplete="current-password" '
        "required>"
        '<input type="submit" id="idSIButton9" value="Sign in">'
        "</form></main></body></html>"
    )
    return HTMLResponse(body, headers=NO_STORE)


def error_page(error: TokenError) -> HTMLResponse:
    text = f"AADSTS{error.code}: {error.message}" if error.code else error.message
    body = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Sign in to your account</title><style>{_STYLE}</style></head><body><main>"
        "<h1>Sorry, but we\u2019re having trouble signing you in.</h1>"
        f'<p class="error" id="error-code">{html.escape(text)}</p>'
        f"<p>Error: {html.escape(error.error)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=400, headers=NO_STORE)


def form_post_page(redirect_uri: str, fields: Mapping[str, str]) -> HTMLResponse:
    """``response_mode=form_post``: a form posting ``fields`` to the redirect URI."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    body = (
        "<!DOCTYPE html><html><head><title>Working...</title></head>"
        '<body onload="document.forms[0].submit()">'
        f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">'
        f"{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p>"
        '<input type="submit" value="Submit"></noscript></form></body></html>'
    )
    return HTMLResponse(body, headers=NO_STORE)
