"""``AccessToken``, reading a token response, and when a cached token should be renewed.

The renewal rule follows MSAL: renew ``renew_before`` seconds (5 minutes) ahead of expiry, or
earlier if the response names a ``refresh_in``. A token that lives less than twice
``renew_before`` is renewed at half its life instead, so a short-lived token never turns every
call into a request.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from entra_guard.client.errors import TokenRequestError, malformed_response

if TYPE_CHECKING:
    import httpx

__all__ = ["AccessToken", "CacheEntry", "fingerprint", "read_token_response"]

#: MSAL's assumption when a response names no lifetime.
DEFAULT_EXPIRES_IN = 600.0


def fingerprint(secret: str) -> str:
    """The first 8 hex digits of the SHA-256: enough to tell tokens apart in logs, no more."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token for one scope. The repr shows a fingerprint, never the token."""

    token: str = field(repr=False)
    #: Unix time (by the client's clock) at which the token stops being valid.
    expires_at: float
    token_type: str = "Bearer"  # noqa: S105  # a scheme name, not a secret
    scope: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)

    def __repr__(self) -> str:
        return (
            f"AccessToken(fingerprint={self.fingerprint!r}, expires_at={self.expires_at!r}, "
            f"token_type={self.token_type!r}, scope={self.scope!r})"
        )


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached token and when to act on it."""

    token: AccessToken
    #: From this time on, the next caller renews.
    renew_at: float
    #: After a failed renewal, the token serves unrenewed until this time.
    retry_at: float = 0.0


def read_token_response(
    response: httpx.Response, *, scope: str, now: float, renew_before: float
) -> CacheEntry | TokenRequestError:
    """The cache entry a 200 answer gives, or the error it stands for if it is unusable."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return malformed_response(response, "its body is not JSON")
    if not isinstance(body, dict):
        return malformed_response(response, "its body is not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token or not token.isascii():
        return malformed_response(response, "it holds no access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return malformed_response(response, f"its token_type is {token_type!r}, not Bearer")
    expires_in = _seconds(body.get("expires_in", DEFAULT_EXPIRES_IN))
    refresh_in = _seconds(body["refresh_in"]) if "refresh_in" in body else None
    if expires_in is None or expires_in <= 0 or ("refresh_in" in body and refresh_in is None):
        return malformed_response(response, "its expires_in or refresh_in is not a lifetime")
    expires_at = now + expires_in
    renew_at = expires_at - min(renew_before, expires_in / 2)
    if refresh_in is not None:
        renew_at = min(renew_at, now + refresh_in)
    access_token = AccessToken(token=token, expires_at=expires_at, scope=scope)
    return CacheEntry(token=access_token, renew_at=renew_at)


def _seconds(value: object) -> float | None:
    """A lifetime as Entra writes it: a number (v2) or a string of digits (v1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None
