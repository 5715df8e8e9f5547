"""A user's sign-in at Entra ID with no browser: the authorization-code flow with PKCE over httpx.

The code plays the browser's part the way a person would: it opens the authorize URL, fills the
sign-in form it is shown (user name and password, and whatever hidden fields the form carries),
follows nothing but reads the redirect to the app, and redeems the code at the token endpoint as
the single-page app Swagger UI is (with the ``Origin`` header a browser sends). Meant for the
local emulator (``entra-guard demo``, tests); a real tenant's sign-in pages need JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

__all__ = ["SignInError", "sign_in"]


class SignInError(Exception):
    """The sign-in did not end with an access token; the message says at which step and why."""


async def sign_in(
    http: httpx.AsyncClient,
    *,
    authority: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    upn: str,
    password: str,
) -> str:
    """A delegated access token for ``upn``, through ``{authority}/oauth2/v2.0/authorize``.

    ``authority`` is ``{instance}/{tenant}``; ``scopes`` are full names
    (``api://orders/Orders.Read``). Raises ``SignInError`` (or ``httpx.HTTPError`` when the
    identity provider cannot be reached).
    """
    verifier = secrets.token_urlsafe(48)  # 64 characters; RFC 7636 allows 43 to 128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    state = secrets.token_urlsafe(16)
    page = await http.get(
        f"{authority}/oauth2/v2.0/authorize",
        params={
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": upn,
        },
    )
    if page.status_code != 200:
        raise SignInError(f"the authorize endpoint answered {page.status_code}: {_gist(page)}")
    form = _SignInForm.read(page.text)
    answer = await http.post(
        urljoin(str(page.url), form.action) if form.action else str(page.url),
        data={**form.fields, "login": upn, "passwd": password},
    )
    location = answer.headers.get("location", "")
    if answer.status_code != 302 or not location.startswith(redirect_uri):
        raise SignInError(f"the sign-in answered {answer.status_code}: {_gist(answer)}")
    result = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    if "code" not in result:
        raise SignInError(f"no code: {result.get('error')}: {result.get('error_description')}")
    if result.get("state") != state:
        raise SignInError("the redirect carried another state than the request")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect_uri))
    tokens = await http.post(
        f"{authority}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": result["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "scope": " ".join(scopes),
        },
        headers={"Origin": origin},
    )
    if tokens.status_code != 200:
        raise SignInError(f"the token endpoint answered {tokens.status_code}: {_gist(tokens)}")
    token: str = tokens.json()["access_token"]
    return token


class _SignInForm(HTMLParser):
    """The first form of a page: its ``action`` and the named inputs with their values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._forms = 0

    @classmethod
    def read(cls, html: str) -> _SignInForm:
        form = cls()
        form.feed(html)
        form.close()
        if form._forms == 0:
            raise SignInError("the sign-in page has no form")
        return form

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self._forms += 1
            if self._forms == 1:
                self.action = attributes.get("action") or None
        elif tag == "input" and self._forms == 1 and attributes.get("name"):
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""


def _gist(response: httpx.Response) -> str:
    """What the answer says, briefly (Entra's error JSON, or the start of a page's text)."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300]
    if isinstance(body, dict) and "error" in body:
        return f"{body.get('error')}: {str(body.get('error_description', ''))[:300]}"
    return str(body)[:300]
