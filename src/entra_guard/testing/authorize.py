"""``/{tenant}/oauth2/v2.0/authorize``: the sign-in page, and the code it hands back.

GET shows a plain HTML page (no JavaScript) with Entra's own field names, ``login`` and
``passwd``, and its button id, ``idSIButton9``; the form posts back to the same URL, query
string kept. A good password answers 302 to the redirect URI with ``code`` and ``state`` (or
a fragment, or an auto-posting form, per ``response_mode``).

Errors go where Entra sends them (RFC 6749 4.1.2.1): an unknown tenant or client and a
redirect URI that is missing or not registered are shown as a page and never redirected, since
the redirect URI cannot be trusted; every later refusal (the response type, the scopes,
consent, PKCE parameters, ``prompt=none``) goes to the redirect URI as ``error`` and
``error_description``. A wrong password shows the page again with AADSTS50126.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from entra_guard.testing.client_auth import parse_form
from entra_guard.testing.delegated import CODE_LIFETIME, SignIn, parse_scopes
from entra_guard.testing.keys import b64url
from entra_guard.testing.pages import NO_STORE, error_page, form_post_page, sign_in_page
from entra_guard.testing.tenants import resolve_tenant
from entra_guard.testing.token_errors import TokenError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from entra_guard.testing.registrations import ClientRegistration
    from entra_guard.testing.state import EmulatorState
    from entra_guard.testing.users import EmulatorUser

__all__ = ["VERIFIER", "authorize_path", "authorize_response", "client_info", "s256"]

_RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
_PROMPTS = frozenset({"login", "none", "consent", "select_account", "create"})
_CHALLENGE_METHODS = frozenset({"S256", "plain"})
# RFC 7636 4.1: a verifier (and so a plain challenge) is 43-128 unreserved characters; an
# S256 challenge is the base64url of 32 bytes, 43 characters.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def authorize_path(segment: str) -> str:
    return f"/{segment}/oauth2/v2.0/authorize"


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class _Page(Exception):  # a control-flow signal, not an error of the caller
    """An error Entra shows on its own page: the redirect URI is not to be trusted."""

    def __init__(self, error: TokenError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True, slots=True)
class _Where:
    """Where answers go once the client and redirect URI check out."""

    client: ClientRegistration
    redirect_uri: str
    response_mode: str
    state: str | None


async def authorize_response(state: EmulatorState, request: Request) -> Response:
    params = dict(request.query_params.items())
    try:
        where = _where(state, str(request.path_params["tenant"]), params)
    except _Page as page:
        return error_page(page.error)
    try:
        scope = _check(state, where.client, params)
    except TokenError as error:
        return _send(where, _error_fields(error, where.state))
    if request.method != "POST":
        return sign_in_page(where.client, login=params.get("login_hint", ""), message=None)
    form = parse_form(await request.body())
    login = form.get("login", "").strip()
    user = state.users.find(login) if login else None
    if user is None or not user.password_matches(form.get("passwd", "")):
        return sign_in_page(where.client, login=login, message=_refusal(state, login, user))
    challenge = params.get("code_challenge") or None
    method = (params.get("code_challenge_method") or "plain") if challenge else None
    now = time.time()
    code = state.grants.issue_code(
        SignIn(
            client_id=where.client.client_id,
            redirect_uri=where.redirect_uri,
            user=user,
            scope=scope,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            code_challenge_method=method,
            expires_at=now + CODE_LIFETIME,
        ),
        now,
    )
    fields = {"code": code}
    if where.state is not None:
        fields["state"] = where.state
    if params.get("client_info") == "1":
        fields["client_info"] = client_info(user, state.tenant_id)
    fields["session_state"] = str(uuid.uuid4())
    return _send(where, fields)


def client_info(user: EmulatorUser, tenant_id: str) -> str:
    """MSAL's ``client_info``: base64url JSON naming the user and their home tenant."""
    info = json.dumps({"uid": user.object_id, "utid": tenant_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(info.encode()).rstrip(b"=").decode("ascii")


def _where(state: EmulatorState, segment: str, params: Mapping[str, str]) -> _Where:
    """The client and redirect URI, or a page: nothing may be redirected before they check out."""
    tenant = resolve_tenant(segment)
    if tenant is None or not state.knows(tenant):
        raise _Page(TokenError.unknown_tenant(segment))
    client_id = params.get("client_id", "").strip()
    if not client_id:
        raise _Page(TokenError.missing_parameter("client_id"))
    # Registrations live in the emulator's own tenant (and are found by the multi-tenant
    # keywords); another tenant has none of them.
    home = tenant.tid in (None, state.tenant_id)
    client = state.registry.client(client_id) if home else None
    if client is None:
        raise _Page(TokenError.unknown_client(client_id, tenant.tid or tenant.segment))
    redirect_uri = params.get("redirect_uri", "")
    if not client.redirect_uris:
        raise _Page(
            _error("invalid_request", 500113, "No reply address is registered for the application.")
        )
    if not redirect_uri:
        raise _Page(_error("invalid_request", 900971, "No reply address provided."))
    if not client.accepts_redirect(redirect_uri):
        raise _Page(
            _error(
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client.client_id}'. Make "
                "sure the redirect URI sent in the request matches one added to your "
                "application in the Azure portal.",
            )
        )
    mode = params.get("response_mode") or "query"
    return _Where(
        client=client,
        redirect_uri=redirect_uri,
        response_mode=mode if mode in _RESPONSE_MODES else "query",
        state=params.get("state"),
    )


def _check(state: EmulatorState, client: ClientRegistration, params: Mapping[str, str]) -> str:
    """The ``scope`` once every redirectable check passed; ``TokenError`` otherwise."""
    response_type = params.get("response_type", "")
    kinds = set(response_type.split())
    if not kinds:
        raise TokenError.missing_parameter("response_type")
    if kinds != {"code"}:
        word = "id_token" if "id_token" in kinds else "token" if "token" in kinds else None
        if word is None:
            raise _error(
                "unsupported_response_type", 0, f"Invalid response_type '{response_type}'."
            )
        raise _error(
            "unsupported_response_type",
            700054 if word == "id_token" else 700051,
            f"response_type '{word}' is not enabled for the application.",
        )
    if params.get("response_mode", "query") not in _RESPONSE_MODES:
        raise _error(
            "invalid_request", 0, "The response_mode must be query, fragment or form_post."
        )
    scope = params.get("scope", "").strip()
    if not scope:
        raise TokenError.missing_parameter("scope")
    asked = parse_scopes(state.registry, client, scope, state.tenant_id)
    resource = params.get("resource")  # RFC 8707, sent by MCP clients
    if resource is not None and resource != asked.api.app_id_uri:
        # Entra takes it only when it is the App ID URI of the API the scopes name.
        raise _error(
            "invalid_target",
            9010010,
            "The resource parameter provided in the request doesn't match with the requested "
            "scopes.",
        )
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if method is not None and method not in _CHALLENGE_METHODS:
        raise _error("invalid_request", 0, "The code_challenge_method must be 'S256' or 'plain'.")
    if challenge is not None and not VERIFIER.fullmatch(challenge):
        raise _error("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
    if challenge is not None and (method or "plain") == "S256" and len(challenge) != 43:
        raise _error("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
    prompt = params.get("prompt")
    if prompt is not None and prompt not in _PROMPTS:
        raise _error("invalid_request", 90023, f"Invalid prompt value '{prompt}'.")
    if prompt == "none":  # the emulator keeps no session: a silent sign-in always needs a user
        raise _error(
            "login_required", 50058, "A silent sign-in request was sent but no user is signed in."
        )
    return scope


def _error(error: str, code: int, message: str) -> TokenError:
    return TokenError(error, code, message)


def _refusal(state: EmulatorState, login: str, user: EmulatorUser | None) -> str:
    if user is None:
        return (
            f"AADSTS50034: The user account {login or '(none)'} does not exist in the "
            f"{state.tenant_id} directory. To sign into this application, the account must be "
            "added to the directory."
        )
    return "AADSTS50126: Error validating credentials due to invalid username or password."


def _error_fields(error: TokenError, state: str | None) -> dict[str, str]:
    prefix = f"AADSTS{error.code}: " if error.code else ""
    timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    fields = {
        "error": error.error,
        "error_description": f"{prefix}{error.message}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: {timestamp}",
    }
    if state is not None:
        fields["state"] = state
    return fields


def _send(where: _Where, fields: Mapping[str, str]) -> Response:
    """The answer to the redirect URI, in the response mode asked for."""
    encoded = urlencode(fields)
    if where.response_mode == "form_post":
        return form_post_page(where.redirect_uri, fields)
    if where.response_mode == "fragment":
        location = f"{where.redirect_uri}#{encoded}"
    else:
        joiner = "&" if "?" in where.redirect_uri else "?"
        location = f"{where.redirect_uri}{joiner}{encoded}"
    return RedirectResponse(location, status_code=302, headers=NO_STORE)
