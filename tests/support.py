"""Helpers the tests share: taking tokens apart and putting forged ones together."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from entra_guard import KeyStore, TokenValidator
from entra_guard.testing import EntraEmulator

if TYPE_CHECKING:
    import ssl

    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.users import EmulatorUser


def b64(data: bytes) -> str:
    """base64url without padding, as in a JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A token's decoded header and payload, and its signature segment as it is."""
    header, payload, signature = token.split(".")
    return _json(header), _json(payload), signature


def _json(segment: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


def assemble(header: object, payload: object, signature: bytes | str) -> str:
    """A token from parts; a bytes signature is encoded, a str one used as it is."""
    sig = b64(signature) if isinstance(signature, bytes) else signature
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{sig}"


async def settle(keys: KeyStore) -> None:
    """Wait (boundedly) for a background key refresh to finish."""
    for _ in range(300):
        if not keys._refreshes_running():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background refresh did not finish")


class CountingVerifies(TokenValidator):
    """A validator that counts the signatures it verifies: a token-cache hit verifies none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verified = 0

    def verify_signature(self, *args: Any) -> None:  # type: ignore[override]
        self.verified += 1
        TokenValidator.verify_signature(*args)


def validator_for(
    idp: EntraEmulator, clock: Callable[[], float] | None = None, **config: Any
) -> TokenValidator:
    """A validator trusting ``idp``; its key store runs on ``clock`` (monotonic) when given."""
    settings = idp.config(**config)
    keys = KeyStore(settings) if clock is None else KeyStore(settings, clock=clock)
    return TokenValidator(settings, key_store=keys)


def user_token(
    idp: EntraEmulator,
    client: ClientRegistration,
    user: EmulatorUser,
    scope: str,
    *,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """A user's access token from the emulator's real sign-in: the page, the form, the code
    (with PKCE), the redemption. ``client`` is a public client with a redirect URI."""
    verifier = secrets.token_urlsafe(48)
    challenge = b64(hashlib.sha256(verifier.encode("ascii")).digest())
    redirect_uri = client.redirect_uris[0]
    query = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = f"{idp.authorize_endpoint()}?{urlencode(query)}"
    with httpx.Client(verify=verify) as browser:
        assert browser.get(url).status_code == 200
        answer = browser.post(url, data={"login": user.upn, "passwd": user.password})
        assert answer.status_code == 302, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "client_id": client.client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "scope": scope,
        }
        redeemed = browser.post(idp.token_endpoint(), data=form)
    assert redeemed.status_code == 200, redeemed.text
    token: str = redeemed.json()["access_token"]
    return token
