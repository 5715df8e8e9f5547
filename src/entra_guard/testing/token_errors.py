"""The refusals of the token and authorize endpoints, with Entra's codes, error words and texts.

Texts follow what Entra really answers (as seen in Microsoft's docs and public bug reports),
trimmed of links; clients must not branch on them, only on ``error`` and ``error_codes``.
``invalid_client`` is answered 401, every other refusal 400, as Entra does.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from entra_guard.testing.responses import entra_error

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.responses import JSONResponse

    from entra_guard.testing.registrations import ClientRegistration

__all__ = ["TokenError"]

_DOCS = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"


class TokenError(Exception):
    """One refusal; :meth:`response` renders Entra's error body."""

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status if status is not None else (401 if error == "invalid_client" else 400)
        self.headers = dict(headers or {})
        #: Members beside Entra's usual ones (``suberror``, ``claims``).
        self.extra = dict(extra or {})

    def response(self, instance: str) -> JSONResponse:
        response = entra_error(
            instance,
            self.status,
            error=self.error,
            code=self.code,
            message=self.message,
            extra=self.extra,
        )
        response.headers.update(self.headers)
        return response

    # -- the request ------------------------------------------------------------------------

    @classmethod
    def missing_parameter(cls, name: str) -> TokenError:
        return cls(
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
        )

    @classmethod
    def unknown_tenant(cls, segment: str) -> TokenError:
        return cls(
            "invalid_request",
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud.",
        )

    @classmethod
    def tenantless_endpoint(cls, segment: str) -> TokenError:
        hint = (
            "Please use the tenant-specific endpoint."
            if segment == "organizations"
            else "Please use the /organizations or tenant-specific endpoint."
        )
        return cls(
            "invalid_request",
            9001023,
            f"The grant type is not supported over the /common or /consumers endpoints. {hint}",
        )

    @classmethod
    def unsupported_grant(cls, grant_type: str) -> TokenError:
        return cls(
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    @classmethod
    def resource_parameter_on_v2(cls) -> TokenError:
        return cls("invalid_request", 901002, "The 'resource' request parameter is not supported.")

    # -- the scope and the resource -----------------------------------------------------------

    @classmethod
    def scope_without_default(cls, scope: str) -> TokenError:
        return cls(
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )

    @classmethod
    def several_resources(cls, scope: str) -> TokenError:
        return cls(
            "invalid_scope",
            700022,
            "The provided value for the input parameter scope is not valid because it contains "
            f"more than one resource. Scope {scope} is not valid.",
        )

    @classmethod
    def invalid_scope(cls, scope: str) -> TokenError:
        return cls(
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter. The provided value "
            f"for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
        )

    @classmethod
    def resource_not_found(cls, resource: str, tenant: str) -> TokenError:
        return cls(
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{tenant}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You might "
            "have sent your authentication request to the wrong tenant.",
        )

    @classmethod
    def unexposed_scope(cls, scope: str, *, note: str = "") -> TokenError:
        return cls(
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter. The provided value "
            f"for the input parameter 'scope' is not valid. The scope {scope} is not valid.{note}",
        )

    @classmethod
    def consent_required(cls, client: ClientRegistration) -> TokenError:
        return cls(
            "consent_required",
            65001,
            "The user or administrator has not consented to use the application with ID "
            f"'{client.client_id}' named '{client.name}'. Send an interactive authorization "
            "request for this user and resource.",
        )

    # -- the client -------------------------------------------------------------------------

    @classmethod
    def unknown_client(cls, client_id: str, tenant: str) -> TokenError:
        return cls(
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant}'. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.",
        )

    @classmethod
    def no_credential(cls) -> TokenError:
        return cls(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )

    @classmethod
    def two_credentials(cls) -> TokenError:
        return cls(
            "invalid_request",
            900144,
            "The request body must contain only one of the following parameters: "
            "'client_assertion' or 'client_secret'.",
        )

    @classmethod
    def invalid_secret(cls, client_id: str) -> TokenError:
        return cls(
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{client_id}'.",
        )

    @classmethod
    def public_client_credential(cls) -> TokenError:
        return cls(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be "
            "presented.",
        )

    @classmethod
    def cross_origin_not_spa(cls, origin: str) -> TokenError:
        return cls(
            "invalid_request",
            9002326,
            "Cross-origin token redemption is permitted only for the 'Single-Page Application' "
            f"client-type. Request origin: '{origin}'.",
        )

    @classmethod
    def spa_without_origin(cls) -> TokenError:
        return cls(
            "invalid_request",
            9002327,
            "Tokens issued for the 'Single-Page Application' client-type may only be redeemed "
            "via cross-origin requests.",
        )

    @classmethod
    def pkce_required(cls) -> TokenError:
        return cls(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for cross-origin authorization code "
            "redemption.",
        )

    # -- codes and refresh tokens -------------------------------------------------------------

    @classmethod
    def malformed_grant(cls) -> TokenError:
        return cls("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")

    @classmethod
    def code_redeemed(cls) -> TokenError:
        return cls(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid "
            "code or use an existing refresh token.",
        )

    @classmethod
    def grant_expired(cls) -> TokenError:
        return cls(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. "
            "Send a new interactive authorization request for this user and resource.",
        )

    @classmethod
    def spa_refresh_expired(cls) -> TokenError:
        return cls(
            "invalid_grant",
            700084,
            "The refresh token was issued to a single page app (SPA), and therefore has a "
            "fixed, limited lifetime of 1.00:00:00, which cannot be extended. It is now "
            "expired and a new sign in request must be sent by the SPA to the sign in page.",
        )

    @classmethod
    def grant_not_for_client(cls, what: str) -> TokenError:
        return cls(
            "invalid_grant",
            70000,
            f"The provided value for the '{what}' parameter is not valid. The grant was "
            "issued to another client or for another redirect URI.",
        )

    @classmethod
    def verifier_mismatch(cls) -> TokenError:
        return cls(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization "
            "request.",
        )

    # -- the client assertion ---------------------------------------------------------------

    @classmethod
    def malformed_assertion(cls, reason: str) -> TokenError:
        return cls("invalid_client", 50027, f"JWT token is invalid or malformed. {reason}")

    @classmethod
    def assertion_signature(cls, reason: str, thumbprint: str) -> TokenError:
        return cls(
            "invalid_client",
            700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint "
            f"of key used by client: '{thumbprint}']",
        )

    @classmethod
    def assertion_client_mismatch(cls) -> TokenError:
        return cls(
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. "
            f"Review the documentation at {_DOCS}.",
        )

    @classmethod
    def assertion_time(cls, now: float, nbf: float | None, exp: float, why: str) -> TokenError:
        return cls(
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range{why}. Current time: "
            f"{_iso(now)}, assertion valid from {_iso(nbf or 0)}, expiry time of assertion "
            f"{_iso(exp)}. Review the documentation at {_DOCS}.",
        )

    # -- on-behalf-of -------------------------------------------------------------------------

    @classmethod
    def obo_bad_assertion(cls, reason: str) -> TokenError:
        """AADSTS50013 (reference: signature invalid; used for every unverifiable assertion)."""
        return cls(
            "invalid_grant", 50013, f"Assertion failed signature validation. [Reason - {reason}]"
        )

    @classmethod
    def obo_malformed_assertion(cls, reason: str) -> TokenError:
        return cls("invalid_grant", 50027, f"JWT token is invalid or malformed. {reason}")

    @classmethod
    def obo_assertion_expired(cls) -> TokenError:
        return cls(
            "invalid_grant",
            500133,
            "Assertion is not within its valid time range. Ensure that the access token is not "
            "expired before using it for user assertion, or request a new token.",
        )

    @classmethod
    def obo_audience_mismatch(cls) -> TokenError:
        return cls(
            "invalid_grant",
            500131,
            "Assertion audience does not match the Client app presenting the assertion. The "
            "audience in the assertion was not the client app's client id or App ID URI.",
        )

    @classmethod
    def obo_app_only_assertion(cls) -> TokenError:
        # The reference leaves the code for this case unconfirmed; 50013 is the emulator's guess.
        return cls(
            "invalid_grant",
            50013,
            "Assertion failed signature validation. [Reason - The assertion is an "
            "application token; on-behalf-of needs a user's token. An application calls with "
            "its own identity through the client credentials grant.]",
        )

    @classmethod
    def obo_consent_required(cls, client: ClientRegistration) -> TokenError:
        return cls(
            "invalid_grant",
            65001,
            "The user or administrator has not consented to use the application with ID "
            f"'{client.client_id}' named '{client.name}'. Send an interactive authorization "
            "request for this user and resource.",
            extra={"suberror": "consent_required"},
        )

    @classmethod
    def obo_claims_challenge(cls, claims: str) -> TokenError:
        return cls(
            "interaction_required",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to "
            "a new location, you must use multi-factor authentication to access the resource.",
            extra={"suberror": "basic_action", "claims": claims},
        )


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
