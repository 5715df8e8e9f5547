"""A decorator for plain Starlette endpoints that demand roles or scopes.

Starlette's own ``@requires`` works too (the middleware fills ``request.auth`` with the roles and
scopes), but answers a plain 403; this one raises ``InsufficientPermissions``, which the
middleware answers with RFC 6750's 403 ``insufficient_scope``, like every other failure.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from entra_guard.authorization import Requirement
from entra_guard.errors import MissingToken
from entra_guard.middleware import STATE_KEY
from entra_guard.principal import EntraPrincipal

__all__ = ["principal_of", "require_roles", "require_scope_or_role", "require_scopes"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def principal_of(connection: HTTPConnection) -> EntraPrincipal:
    """The validated caller of a request or WebSocket; ``MissingToken`` (401) if there is none."""
    principal: EntraPrincipal | None = (connection.scope.get("state") or {}).get(STATE_KEY)
    if principal is None:
        raise MissingToken
    return principal


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


def _decorator(requirement: Requirement) -> Callable[[Endpoint], Endpoint]:
    def decorate(endpoint: Endpoint) -> Endpoint:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            connection = next(
                (a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)), None
            )
            if connection is None:
                raise TypeError(f"{endpoint.__name__} takes no Request or WebSocket to check")
            requirement.check(principal_of(connection))
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
