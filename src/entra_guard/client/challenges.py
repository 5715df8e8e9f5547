"""Reading a downstream API's claims challenge, and the claims an on-behalf-of request sends.

A CAE-enabled API (Microsoft Graph, or one of ours) refuses a token whose session was revoked,
or that lacks an authentication context, with 401 and ``WWW-Authenticate: Bearer ...,
error="insufficient_claims", claims="<base64 of a JSON claims request>"`` (Microsoft identity
platform, "Claims challenges, claims requests and client capabilities"). The claims are checked
to be a JSON object and returned minified, ready for the next challenge.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable

from entra_guard.client.errors import MAX_CLAIMS_LENGTH

__all__ = ["CAE_CAPABILITY", "capability_claims", "claims_from_challenge", "minified_claims"]

#: The only client capability Microsoft defines: "this client can handle claims challenges".
CAE_CAPABILITY = "cp1"
# auth-param = token "=" ( token / quoted-string ), RFC 9110 11.2
_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)')


def minified_claims(text: str) -> str | None:
    """``text`` as minified JSON if it is a JSON object within the size cap, else ``None``."""
    if len(text) > MAX_CLAIMS_LENGTH:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return json.dumps(parsed, separators=(",", ":")) if isinstance(parsed, dict) else None


def claims_from_challenge(headers: Iterable[str]) -> str | None:
    """The claims request of an ``insufficient_claims`` challenge among ``headers``, or ``None``.

    ``headers`` are the response's ``WWW-Authenticate`` values. The claims are base64 (with or
    without padding; the URL-safe alphabet is accepted too) of a JSON object; anything else is
    not a claims challenge and gives ``None``.
    """
    for header in headers:
        params = {
            name.lower(): value[1:-1].replace('\\"', '"') if value.startswith('"') else value
            for name, value in _PARAM.findall(header)
        }
        if params.get("error") != "insufficient_claims" or "claims" not in params:
            continue
        encoded = params["claims"].strip()
        if len(encoded) > MAX_CLAIMS_LENGTH * 2:
            return None
        try:
            raw = base64.b64decode(
                encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4),
                validate=True,
            )
            return minified_claims(raw.decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def capability_claims(capabilities: Iterable[str]) -> str | None:
    """The claims request declaring client ``capabilities`` (``xms_cc``), or ``None`` if none.

    Shape from Microsoft's "client capabilities": ``{"access_token":{"xms_cc":{"values":[...]}}}``.
    """
    values = sorted({c for c in capabilities if c})
    if not values:
        return None
    return json.dumps({"access_token": {"xms_cc": {"values": values}}}, separators=(",", ":"))
