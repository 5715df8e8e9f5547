"""Decorators for plain Starlette endpoints that demand roles, scopes or groups.

Starlette's own ``@requires`` works too (the middleware fills ``request.auth`` with the roles and
scopes), but answers a plain 403; this one raises ``InsufficientPermissions``, which the
middleware answers with RFC 6750's 403 ``insufficient_scope``, like every other failure.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from entra_guard.authorization import GroupRequirement, GroupResolver, Requirement
from entra_guard.errors import MissingToken
from entra_guard.middleware import STATE_KEY
from entra_guard.principal import EntraPrincipal

__all__ = [
    "optional_principal_of",
    "principal_of",
    "require_groups",
    "require_roles",
    "require_scope_or_role",
    "require_scopes",
]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def principal_of(connection: HTTPConnection) -> EntraPrincipal:
    """The validated caller of a request or WebSocket; ``MissingToken`` (401) if there is none."""
    principal: EntraPrincipal | None = (connection.scope.get("state") or {}).get(STATE_KEY)
    if principal is None:
        raise MissingToken
    return principal


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
            connection = next(
                (a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)), None
            )
            if connection is None:
                raise TypeError(f"{endpoint.__name__} takes no Request or WebSocket to check")
            if isinstance(requirement, GroupRequirement):
                await requirement.check(principal_of(connection))
            else:
                requirement.check(principal_of(connection))
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
