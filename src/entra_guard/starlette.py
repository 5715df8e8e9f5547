"""Starlette endpoint decorators demanding roles, scopes or groups; on-behalf-of calls.

Starlette's own ``@requires`` works too (the middleware fills ``request.auth`` with the roles and
scopes), but answers a plain 403; this one raises ``InsufficientPermissions``, which the
middleware answers with RFC 6750's 403 ``insufficient_scope``, like every other failure. In an
app the middleware does not sit in (mounted below it, or wrapped by it directly) the refusal is
raised as an ``HTTPException`` with the same status and challenge instead (:func:`answerable`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from entra_guard.authorization import GroupRequirement, GroupResolver, Requirement
from entra_guard.bearer import INCOMING_TOKEN, IncomingToken, error_response
from entra_guard.client.challenges import CAE_CAPABILITY
from entra_guard.client.on_behalf_of import OnBehalfOfAuth, OnBehalfOfClient
from entra_guard.errors import EntraGuardError, MissingToken
from entra_guard.middleware import ANSWERED_BY, REFUSED_IN_APP, STATE_KEY
from entra_guard.principal import EntraPrincipal

__all__ = [
    "ON_BEHALF_OF_CLIENT",
    "answerable",
    "on_behalf_of_auth",
    "optional_principal_of",
    "principal_of",
    "require_groups",
    "require_roles",
    "require_scope_or_role",
    "require_scopes",
]

#: ``app.state.entra_on_behalf_of``: the app's ``OnBehalfOfClient``, set once at start-up.
ON_BEHALF_OF_CLIENT = "entra_on_behalf_of"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

# What an HTTPException carries of the middleware's answer (its body is the app's own).
_ANSWER_HEADERS = frozenset({b"www-authenticate", b"retry-after", b"cache-control"})


def answerable(connection: HTTPConnection, exc: EntraGuardError) -> Exception:
    """``exc`` where ``EntraAuthMiddleware`` will answer it, else an ``HTTPException`` with the
    status, ``WWW-Authenticate``, ``Retry-After`` and description the middleware would send.

    A route's exception reaches the middleware only through the app whose middleware stack
    holds it. In an app mounted below it, or one it wraps itself, that app's own
    ``ServerErrorMiddleware`` would answer 500 first; its ``ExceptionMiddleware`` answers an
    ``HTTPException`` (the body is then the app's: ``{"detail": ...}`` in FastAPI, the text in
    Starlette). WebSocket refusals always reach the middleware, and so does ``exc`` when no
    middleware ran (the caller raises ``RuntimeError`` for that first).
    """
    scope = connection.scope
    answered_by: tuple[object, str | None] | None = scope.get(ANSWERED_BY)
    if scope["type"] != "http" or answered_by is None or answered_by[0] is scope.get("app"):
        return exc
    status, headers, _ = error_response(exc, resource_metadata=answered_by[1])
    scope[REFUSED_IN_APP] = exc  # the middleware logs it and tells on_outcome
    kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _ANSWER_HEADERS}
    return HTTPException(status, exc.description, kept)


def principal_of(connection: HTTPConnection) -> EntraPrincipal:
    """The validated caller of a request or WebSocket; ``MissingToken`` (401) if there is none."""
    principal: EntraPrincipal | None = (connection.scope.get("state") or {}).get(STATE_KEY)
    if principal is None:
        raise MissingToken
    return principal


def on_behalf_of_auth(
    connection: HTTPConnection,
    scopes: str | Iterable[str],
    *,
    client: OnBehalfOfClient | None = None,
) -> OnBehalfOfAuth:
    """An ``httpx.Auth`` calling a downstream API for ``scopes`` as the request's caller.

    The caller's token is the one ``EntraAuthMiddleware`` validated for this request (kept in
    the ASGI scope, never in the principal). ``client`` defaults to
    ``app.state.entra_on_behalf_of`` (:data:`ON_BEHALF_OF_CLIENT`). When the caller's token
    says its app handles claims challenges (``xms_cc`` holds ``cp1``), the request declares
    that capability too, so the downstream token is CAE-enabled and a challenge the downstream
    API raises reaches the caller's app (Microsoft: resources send claims challenges only to
    clients that declared ``cp1``).

    Raises ``MissingToken`` (401) when the request carried no token (optional mode),
    ``RuntimeError`` when no middleware ran or no client is configured. Nothing is requested
    until the auth is first used; then ``ClaimsChallenge`` (401 ``insufficient_claims``, answered
    by the middleware) or ``TokenRequestError`` may follow.
    """
    principal = principal_of(connection)
    incoming = connection.scope.get(INCOMING_TOKEN)
    if not isinstance(incoming, IncomingToken):
        raise RuntimeError("no validated token on this request: add EntraAuthMiddleware")
    if client is None:
        client = getattr(connection.app.state, ON_BEHALF_OF_CLIENT, None)
        if not isinstance(client, OnBehalfOfClient):
            raise RuntimeError(
                f"no on-behalf-of client: set app.state.{ON_BEHALF_OF_CLIENT} = "
                "OnBehalfOfClient(ConfidentialClient(...)) at start-up, or pass client="
            )
    names = scopes if isinstance(scopes, str) else list(scopes)
    return client.auth(
        incoming.value, names, capabilities=(CAE_CAPABILITY,) if principal.is_cae_capable else ()
    )


def optional_principal_of(connection: HTTPConnection) -> EntraPrincipal | None:
    """The validated caller, or ``None`` for a request without a token on a path of the
    middleware's ``optional_paths``; ``RuntimeError`` where no middleware looked at the request
    (an excluded path), since "no principal" would then be a guess."""
    state = connection.scope.get("state") or {}
    if STATE_KEY not in state:
        raise RuntimeError(
            "no Entra principal on this request: add EntraAuthMiddleware to the app and list "
            "this route in its optional_paths, not in exclude_paths"
        )
    principal: EntraPrincipal | None = state[STATE_KEY]
    return principal


def require_groups(
    *groups: str,
    any_of: bool = False,
    resolver: GroupResolver | Callable[[EntraPrincipal], Awaitable[frozenset[str]]] | None = None,
) -> Callable[[Endpoint], Endpoint]:
    """Demand group membership (object ids): all of them, or one with ``any_of``; an overage
    user is looked up with ``resolver`` or refused with 403 ``groups_overage``."""
    return _decorator(GroupRequirement.of(groups, any_of=any_of, resolver=resolver))


def require_roles(*roles: str, any_of: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Demand app roles: all of them, or one with ``any_of``."""
    return _decorator(Requirement.of(roles=roles, any_of=any_of))


def require_scopes(*scopes: str, any_of: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Demand delegated scopes: all of them, or one with ``any_of``."""
    return _decorator(Requirement.of(scopes=scopes, any_of=any_of))


def require_scope_or_role(
    *, scopes: Iterable[str] = (), roles: Iterable[str] = (), any_of: bool = False
) -> Callable[[Endpoint], Endpoint]:
    """Microsoft's "scope or app permission": either kind grants the same permission."""
    return _decorator(Requirement.of(scopes=scopes, roles=roles, any_of=any_of))


def _decorator(requirement: Requirement | GroupRequirement) -> Callable[[Endpoint], Endpoint]:
    def decorate(endpoint: Endpoint) -> Endpoint:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            # Starlette calls an endpoint with the request alone: looked at first, no generator.
            connection = args[0] if args else None
            if not isinstance(connection, HTTPConnection):
                connection = next(
                    (a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)), None
                )
            if connection is None:
                raise TypeError(f"{endpoint.__name__} takes no Request or WebSocket to check")
            try:
                if isinstance(requirement, GroupRequirement):
                    incoming = connection.scope.get(INCOMING_TOKEN)
                    await requirement.check(
                        principal_of(connection),
                        incoming if isinstance(incoming, IncomingToken) else None,
                    )
                else:
                    requirement.check(principal_of(connection))
            except EntraGuardError as exc:
                raise answerable(connection, exc) from None
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
