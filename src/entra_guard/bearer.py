"""RFC 6750 on the wire: reading the bearer token from a request, and answering a failure.

Kept apart from the middleware so that the exact contract (which header shapes are refused, what
a challenge looks like) is one small, testable piece.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qsl

from starlette.types import Scope

from entra_guard.errors import (
    ClaimsChallenge,
    EntraGuardError,
    InsufficientPermissions,
    InvalidRequest,
    MissingToken,
    ServiceUnavailable,
)

__all__ = ["INCOMING_TOKEN", "IncomingToken", "bearer_token", "error_response"]

#: The ASGI scope key under which the middleware leaves the caller's validated token, for the
#: on-behalf-of helpers only: the principal never holds it.
INCOMING_TOKEN = "entra_guard.incoming_token"  # noqa: S105  # a key's name, not a secret


class IncomingToken:
    """The caller's validated bearer token; its repr hides it, so a dumped scope leaks nothing.

    A plain slotted class rather than a frozen dataclass: one is built for every request, and
    nothing but the on-behalf-of helpers reads it.
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "IncomingToken([redacted])"


Headers = list[tuple[bytes, bytes]]

# RFC 6750 3: error_description and scope values exclude '"' and '\' and non-ASCII.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_QUERY_PARAMETER = b"access_token"
# How nearly every client writes the header; any other spelling takes the general path.
_COMMON_PREFIX = b"Bearer "


def bearer_token(scope: Scope, *, accept_query_token: bool = False) -> str | None:
    """The token of ``Authorization: Bearer <token>``; ``None`` when there are no credentials.

    The scheme is case-insensitive, one or more spaces separate it from the token, and
    surrounding whitespace is ignored. Two ``Authorization`` headers, a tab after ``Bearer``, or
    an empty token raise ``InvalidRequest``; another scheme (or an empty header) raises
    ``MissingToken``: RFC 6750 §3.1 treats a request that uses an unsupported authentication
    method as one that lacks authentication, answered with a bare challenge (401, no error
    code). A token in the query string (``access_token=``) is refused unless
    ``accept_query_token`` is set, never accepted beside a header, and refused when the
    parameter is repeated (RFC 6749 §3.1: no parameter more than once).
    """
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                raise InvalidRequest(
                    "multiple_authorization_headers", "Send exactly one Authorization header"
                )
            found = value
    query: bytes = scope.get("query_string", b"")
    values: list[str] | tuple[()] = ()
    query_token: str | None = None
    # The cheap test first: nearly every request has no access_token in its query string.
    if _QUERY_PARAMETER in query:
        values = _query_values(query)
        query_token = next((value for value in values if value), None)  # a blank one is none
    if found is None:
        if query_token is None:
            return None
        if not accept_query_token:
            raise InvalidRequest(
                "token_in_query",
                "Tokens are not accepted in the URL: send 'Authorization: Bearer <token>'",
            )
        if len(values) > 1:
            raise InvalidRequest("multiple_query_tokens", "Send exactly one access_token parameter")
        return query_token
    if query_token is not None:
        raise InvalidRequest("multiple_token_methods", "Send the token in one place only")
    # Work on the bytes, and copy the token once: this runs on every request. strip() and
    # lstrip() hand back the same object when there is nothing to strip.
    if found[:7] == _COMMON_PREFIX:
        token = found[7:].lstrip(b" ").rstrip(b" \t")
    else:
        header = found.strip(b" \t")
        if header[:6].lower() != b"bearer" or header[6:7] not in (b" ", b"", b"\t"):
            raise MissingToken(
                "unsupported_scheme",
                "Authentication required: send 'Authorization: Bearer <token>' "
                "(no other scheme is accepted)",
            )
        if header[6:7] == b"\t":
            raise InvalidRequest(
                "malformed_authorization", "Separate 'Bearer' from the token with a space"
            )
        token = header[7:].lstrip(b" ")
    if not token:
        raise InvalidRequest("empty_token", "The Authorization header carries no token")
    return token.decode("latin-1")


def _query_values(query: bytes) -> list[str]:
    """Every ``access_token`` parameter's value, stripped, in order."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return [value.strip() for name, value in pairs if name == "access_token"]


def error_response(
    exc: EntraGuardError, *, resource_metadata: str | None = None
) -> tuple[int, Headers, bytes]:
    """Status, headers and JSON body for a failure; the body repeats the challenge's words.

    ``resource_metadata`` is the absolute URL of the API's RFC 9728 document, named in the
    challenge of a 401 (see :func:`challenge`).
    """
    body = json.dumps(
        {
            "error": exc.error_code or _body_error(exc),
            "error_description": exc.description,
        }
    ).encode()
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if isinstance(exc, ServiceUnavailable):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    else:
        value = challenge(exc, resource_metadata=resource_metadata)
        headers.append((b"www-authenticate", value.encode("ascii")))
    return exc.status_code, headers, body


def challenge(exc: EntraGuardError, *, resource_metadata: str | None = None) -> str:
    """The ``WWW-Authenticate`` value: bare ``Bearer`` when credentials were simply missing.

    With ``resource_metadata`` (a URL of RFC 3986 characters, which need no escaping in a
    quoted-string), a 401 also names the API's protected-resource metadata, where a client
    learns how to get a token (RFC 9728 5.1). A 403 keeps only ``scope``: the caller already
    knows where tokens come from and needs more of them, not directions.
    """
    if isinstance(exc, ClaimsChallenge):
        return _claims_challenge(exc, resource_metadata)
    parts = []
    if exc.error_code is not None:
        parts += [f'error="{exc.error_code}"', f'error_description="{_quoted(exc.description)}"']
        if isinstance(exc, InsufficientPermissions) and exc.required:
            parts.append(f'scope="{_quoted(exc.required)}"')
    if resource_metadata is not None and exc.status_code == 401:
        parts.append(f'resource_metadata="{_quoted(resource_metadata)}"')
    return "Bearer " + ", ".join(parts) if parts else "Bearer"


def _claims_challenge(exc: ClaimsChallenge, resource_metadata: str | None) -> str:
    """Microsoft's form: ``realm``, ``authorization_uri``, ``client_id``, ``error``, ``claims``.

    The claims request travels as base64 of its minified JSON, whose alphabet needs no escaping
    in a quoted-string. Source: Microsoft identity platform, "Claims challenges, claims requests
    and client capabilities" (all parameters in one ``WWW-Authenticate`` header).
    """
    parts = []
    if exc.realm is not None:
        parts.append(f'realm="{_quoted(exc.realm)}"')
    if exc.authorization_uri is not None:
        parts.append(f'authorization_uri="{_quoted(exc.authorization_uri)}"')
    if exc.client_id is not None:
        parts.append(f'client_id="{_quoted(exc.client_id)}"')
    encoded = base64.b64encode(exc.claims.encode("utf-8")).decode("ascii")
    parts += [f'error="{exc.error_code}"', f'claims="{encoded}"']
    if resource_metadata is not None:
        parts.append(f'resource_metadata="{_quoted(resource_metadata)}"')
    return "Bearer " + ", ".join(parts)


def _body_error(exc: EntraGuardError) -> str:
    return "temporarily_unavailable" if isinstance(exc, ServiceUnavailable) else exc.reason


def _quoted(text: str) -> str:
    return _UNSAFE.sub("'", text)
