"""FastAPI dependencies: the validated caller, and roles or scopes a route demands.

``EntraAuthMiddleware`` authenticates; these dependencies only read its result and authorize,
so a route never validates a token twice. A failed requirement raises
``InsufficientPermissions``, which the middleware answers with 403 ``insufficient_scope`` in the
same shape as every other failure. The dependencies also register a bearer security scheme, so
the OpenAPI document (and Swagger UI's lock) knows that routes take a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from entra_guard.authorization import Requirement
from entra_guard.errors import MissingToken
from entra_guard.middleware import STATE_KEY
from entra_guard.principal import EntraPrincipal

__all__ = [
    "Principal",
    "bearer_scheme",
    "get_principal",
    "require_roles",
    "require_scope_or_role",
    "require_scopes",
]


class _EntraBearer(HTTPBearer):
    """The OpenAPI security scheme. The middleware has already read and checked the token."""

    async def __call__(self, request: HTTPConnection) -> None:
        return None


bearer_scheme = _EntraBearer(
    bearerFormat="JWT",
    scheme_name="EntraID",
    description="A Microsoft Entra ID access token for this API",
    auto_error=False,
)


async def get_principal(
    connection: HTTPConnection, _scheme: Annotated[None, Depends(bearer_scheme)]
) -> EntraPrincipal:
    """The caller the middleware validated (HTTP and WebSocket routes alike)."""
    state = connection.scope.get("state") or {}
    if STATE_KEY not in state:
        raise RuntimeError(
            "no Entra principal on this request: add EntraAuthMiddleware to the app, and do not "
            "list this route in its exclude_paths"
        )
    principal: EntraPrincipal | None = state[STATE_KEY]
    if principal is None:  # optional mode, and the request carried no token
        raise MissingToken
    return principal


#: ``async def handler(principal: Principal)``: the validated caller of the request.
Principal = Annotated[EntraPrincipal, Depends(get_principal)]


def require_roles(*roles: str, any_of: bool = False) -> Callable[..., Awaitable[EntraPrincipal]]:
    """Demand app roles (client-credentials callers): all of them, or one with ``any_of``."""
    return _dependency(Requirement.of(roles=roles, any_of=any_of))


def require_scopes(*scopes: str, any_of: bool = False) -> Callable[..., Awaitable[EntraPrincipal]]:
    """Demand delegated scopes (``scp``, users' apps): all of them, or one with ``any_of``."""
    return _dependency(Requirement.of(scopes=scopes, any_of=any_of))


def require_scope_or_role(
    *, scopes: tuple[str, ...] | list[str] = (), roles: tuple[str, ...] | list[str] = (),
    any_of: bool = False,
) -> Callable[..., Awaitable[EntraPrincipal]]:  # fmt: skip
    """Microsoft's "scope or app permission": a user's app shows the scopes, a daemon the roles."""
    return _dependency(Requirement.of(scopes=scopes, roles=roles, any_of=any_of))


def _dependency(requirement: Requirement) -> Callable[..., Awaitable[EntraPrincipal]]:
    async def check_permissions(principal: Principal) -> EntraPrincipal:
        return requirement.check(principal)

    return check_permissions
