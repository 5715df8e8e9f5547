"""Reading token requests: the form, HTTP Basic credentials, and client authentication.

Shared by every grant of the token endpoint, so a client proves itself the same way whatever
it asks for.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus

from entra_guard.testing.assertions import verify_assertion
from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entra_guard.testing.registrations import ClientRegistration

__all__ = [
    "ASSERTION_TYPE",
    "BY_CERTIFICATE",
    "BY_SECRET",
    "PUBLIC",
    "authenticate",
    "basic_credentials",
    "parse_form",
    "required",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Client authentication reference values for azpacr / appidacr.
PUBLIC, BY_SECRET, BY_CERTIFICATE = "0", "1", "2"


def authenticate(
    client: ClientRegistration,
    form: Mapping[str, str],
    basic: tuple[str, str] | None,
    endpoint: str,
) -> str:
    """The client-authentication reference value, once the credential checks out."""
    secret = form.get("client_secret") or (basic[1] if basic else None)
    assertion = form.get("client_assertion")
    if basic is not None and basic[0].lower() != client.client_id:
        raise TokenError.invalid_secret(client.client_id)
    if secret and assertion:
        raise TokenError.two_credentials()
    if assertion:
        assertion_type = required(form, "client_assertion_type")
        if assertion_type != ASSERTION_TYPE:
            raise TokenError.malformed_assertion(
                f"The client_assertion_type must be '{ASSERTION_TYPE}'."
            )
        verify_assertion(assertion, client=client, endpoint=endpoint, now=time.time())
        return BY_CERTIFICATE
    if secret:
        if not client.has_secret(secret):
            raise TokenError.invalid_secret(client.client_id)
        return BY_SECRET
    raise TokenError.no_credential()


def parse_form(body: bytes) -> dict[str, str]:
    """The form's parameters; the first of repeated ones wins, anything unreadable is absent."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise TokenError.missing_parameter(name)
    return value


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``client_secret_basic``: both halves are form-encoded before base64 (RFC 6749 2.3.1)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote_plus(client_id), unquote_plus(secret)
