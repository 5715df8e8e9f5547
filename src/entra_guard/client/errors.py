"""``TokenRequestError``: the one exception a token request ends in, whatever went wrong.

One class rather than a tree, because callers branch on data, not on types: ``transient`` says
whether trying later may help (429, 5xx, no connection), ``aadsts`` and ``error`` say what Entra
objected to, and ``trace_id``/``correlation_id`` are what Microsoft support asks for.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

__all__ = [
    "MAX_CLAIMS_LENGTH",
    "TRANSIENT_STATUSES",
    "TokenRequestError",
    "error_from_exception",
    "error_from_response",
]

#: Statuses worth retrying: throttling and the server's own passing troubles.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_DESCRIPTION = 2000
#: The longest claims challenge kept; a real one is a few hundred bytes.
MAX_CLAIMS_LENGTH = 8192
_Redact = Callable[[str], str]


class TokenRequestError(Exception):
    """The identity provider did not issue a token.

    ``status_code`` is ``None`` when no HTTP answer came (connection refused, timeout).
    ``description`` is Entra's ``error_description`` (several lines, with trace ids);
    ``str()`` is a one-line summary. Neither ever contains the secret or the assertion.
    """

    def __init__(
        self,
        *,
        error: str,
        description: str,
        status_code: int | None = None,
        codes: Sequence[int] = (),
        trace_id: str | None = None,
        correlation_id: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        suberror: str | None = None,
        claims: str | None = None,
    ) -> None:
        self.error = error
        self.description = description
        self.status_code = status_code
        self.codes = list(codes)
        self.trace_id = trace_id
        self.correlation_id = correlation_id
        self.transient = transient
        #: Seconds the server asked us to wait (``Retry-After``), if it did.
        self.retry_after = retry_after
        #: Entra's ``suberror`` (``consent_required``, ``bad_token``, ...), if it sent one.
        self.suberror = suberror
        #: A claims challenge (a JSON claims request, as Entra sent it) that conditional access
        #: or CAE attached to an ``interaction_required``/``invalid_grant`` answer, if any.
        self.claims = claims
        super().__init__(self._summary())

    @property
    def aadsts(self) -> str | None:
        """The first Entra error code as Entra prints it, e.g. ``"AADSTS7000215"``."""
        return f"AADSTS{self.codes[0]}" if self.codes else None

    def _summary(self) -> str:
        status = f"HTTP {self.status_code}" if self.status_code is not None else "no response"
        first_line = self.description.splitlines()[0] if self.description else ""
        ids = [f"{name}={value}" for name, value in self._ids() if value]
        suffix = f" ({', '.join(ids)})" if ids else ""
        return f"token request failed ({status}, {self.error}): {first_line}{suffix}"

    def _ids(self) -> tuple[tuple[str, str | None], ...]:
        return (("trace_id", self.trace_id), ("correlation_id", self.correlation_id))

    def __repr__(self) -> str:
        return (
            f"TokenRequestError(error={self.error!r}, status_code={self.status_code!r}, "
            f"aadsts={self.aadsts!r}, transient={self.transient!r})"
        )


def error_from_response(response: httpx.Response, redact: _Redact) -> TokenRequestError:
    """The error an HTTP answer other than a good 200 stands for."""
    status = response.status_code
    body = _json_object(response)
    codes = body.get("error_codes")
    error = body.get("error")
    description = body.get("error_description")
    return TokenRequestError(
        error=error if isinstance(error, str) and error else "http_error",
        description=redact(
            description[:_MAX_DESCRIPTION]
            if isinstance(description, str)
            else f"The token endpoint answered HTTP {status} without an OAuth error body."
        ),
        status_code=status,
        codes=[c for c in codes if isinstance(c, int)] if isinstance(codes, list) else [],
        trace_id=_string(body.get("trace_id")),
        correlation_id=_string(body.get("correlation_id")),
        transient=status in TRANSIENT_STATUSES,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        suberror=_string(body.get("suberror")),
        claims=_claims(body.get("claims")),
    )


def malformed_response(response: httpx.Response, why: str) -> TokenRequestError:
    """A 200 that holds no usable token: a proxy's page, or a broken body."""
    return TokenRequestError(
        error="invalid_response",
        description=f"The token endpoint answered HTTP {response.status_code} but {why}.",
        status_code=response.status_code,
    )


def error_from_exception(exc: httpx.HTTPError) -> TokenRequestError:
    """No answer at all; network trouble and timeouts are worth another try."""
    transient = isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.ProtocolError))
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
    error = TokenRequestError(
        error=kind,
        description=f"No answer from the token endpoint: {type(exc).__name__}: {exc}",
        transient=transient,
    )
    error.__cause__ = exc
    return error


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP date; ``None`` if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _claims(value: object) -> str | None:
    """Entra's ``claims`` member: a JSON object written as a string; anything else is dropped."""
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIMS_LENGTH:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return value if isinstance(parsed, dict) else None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
