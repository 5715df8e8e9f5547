"""The exceptions entra-guard raises while validating a token.

Each class maps to exactly one HTTP answer, so the middleware never has to guess::

    EntraGuardError
    ├── InvalidRequest             400  WWW-Authenticate: Bearer error="invalid_request"
    ├── MissingToken               401  WWW-Authenticate: Bearer        (RFC 6750 3.1: no error)
    ├── InvalidToken               401  WWW-Authenticate: Bearer error="invalid_token"
    ├── ClaimsChallenge            401  WWW-Authenticate: Bearer ... error="insufficient_claims",
    │                                   claims="<base64>" (Microsoft's claims challenge)
    ├── InsufficientPermissions    403  WWW-Authenticate: Bearer error="insufficient_scope"
    └── ServiceUnavailable         503  Retry-After (something the check needs could not be had)
        └── KeysUnavailable        503  (the signing keys)

Every error carries a stable machine-readable ``reason`` (for logs, metrics and tests) and a
short ``description`` that is safe to show the caller: it never contains the token, a key or a
secret. Configuration mistakes are ``ValueError`` at construction time and are not part of this
tree.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ClaimsChallenge",
    "EntraGuardError",
    "InsufficientPermissions",
    "InvalidRequest",
    "InvalidToken",
    "KeysUnavailable",
    "MissingToken",
    "ServiceUnavailable",
]


class EntraGuardError(Exception):
    """Base class: a request could not be authenticated or authorized."""

    status_code: ClassVar[int] = 500
    #: The RFC 6750 ``error`` word for ``WWW-Authenticate``, or ``None`` where the answer has none.
    error_code: ClassVar[str | None] = None

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, description={self.description!r})"


class InvalidRequest(EntraGuardError):
    """The request carries its credentials wrongly: two headers, another scheme, no token."""

    status_code = 400
    error_code = "invalid_request"


class MissingToken(EntraGuardError):
    """No credentials at all; the answer only says which scheme to use."""

    status_code = 401
    error_code = None

    def __init__(
        self,
        reason: str = "missing_token",
        description: str = "Authentication required: send 'Authorization: Bearer <token>'",
    ) -> None:
        super().__init__(reason, description)


class InvalidToken(EntraGuardError):
    """The token is not one this API accepts: malformed, forged, expired, or not for us."""

    status_code = 401
    error_code = "invalid_token"


class ClaimsChallenge(EntraGuardError):
    """The caller must sign in again and satisfy ``claims``: a claims challenge to pass on.

    Raised when Entra answers an on-behalf-of request with ``interaction_required`` (or
    ``invalid_grant``) carrying ``claims`` (conditional access, MFA step-up), or when a
    downstream API answers 401 ``insufficient_claims`` (Continuous Access Evaluation). The
    middle tier cannot show the user anything, so it hands the challenge to its own caller,
    whose app re-authenticates with ``claims=`` (Microsoft identity platform, "Claims
    challenges, claims requests and client capabilities"; "On-behalf-of flow").

    ``claims`` is the claims request as minified JSON text; ``authorization_uri`` (the
    tenant's ``/authorize``), ``realm`` (its tenant id) and ``client_id`` (this API's) are the
    other parameters of Microsoft's challenge, each left out when ``None``.
    """

    status_code = 401
    error_code = "insufficient_claims"

    def __init__(
        self,
        reason: str,
        description: str,
        *,
        claims: str,
        authorization_uri: str | None = None,
        realm: str | None = None,
        client_id: str | None = None,
    ) -> None:
        super().__init__(reason, description)
        self.claims = claims
        self.authorization_uri = authorization_uri
        self.realm = realm
        self.client_id = client_id


class InsufficientPermissions(EntraGuardError):
    """The token is genuine, but it does not grant what the request needs."""

    status_code = 403
    error_code = "insufficient_scope"

    def __init__(self, reason: str, description: str, *, required: str | None = None) -> None:
        super().__init__(reason, description)
        #: What would have been enough, for the challenge's ``scope`` attribute (space-separated).
        self.required = required


class ServiceUnavailable(EntraGuardError):
    """Something the check needs could not be had: signing keys, a tenant decision, the groups
    of an overage token.

    This is the server's problem, not the caller's, so it is never answered with 401 or 403.
    """

    status_code = 503
    error_code = None  # not a challenge: the caller did nothing wrong

    def __init__(self, reason: str, description: str, *, retry_after: int = 5) -> None:
        super().__init__(reason, description)
        self.retry_after = retry_after


class KeysUnavailable(ServiceUnavailable):
    """No usable signing keys could be obtained from the identity provider."""
