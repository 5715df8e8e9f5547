"""FastAPI dependencies: the validated caller, and roles or scopes a route demands.

``EntraAuthMiddleware`` authenticates; these dependencies only read its result and authorize,
so a route never validates a token twice. A failed requirement raises
``InsufficientPermissions``, which the middleware answers with 403 ``insufficient_scope`` in the
same shape as every other failure (in an app mounted below the middleware, an ``HTTPException``
with the same status and challenge: :func:`entra_guard.starlette.answerable`).

Each dependency is one callable that is at once the OpenAPI security scheme, the reader of the
caller and the check of the route's requirement: FastAPI charges for every level of a
dependency tree, and this one has a single level. In the OpenAPI document it is a bearer scheme
(Swagger UI's lock takes a pasted token), or, after ``swagger_login(app, ...)``, OAuth2
authorization code with PKCE, so that Swagger UI signs a user in at Entra ID.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from entra_guard.authorization import GroupRequirement, GroupResolver, Requirement
from entra_guard.bearer import INCOMING_TOKEN, IncomingToken
from entra_guard.client.on_behalf_of import OnBehalfOfAuth, OnBehalfOfClient
from entra_guard.config import EntraConfig
from entra_guard.errors import EntraGuardError, MissingToken
from entra_guard.middleware import STATE_KEY
from entra_guard.principal import EntraPrincipal
from entra_guard.starlette import answerable, on_behalf_of_auth

__all__ = [
    "SCHEME_NAME",
    "EntraSecurity",
    "OnBehalfOf",
    "OptionalPrincipal",
    "Principal",
    "bearer_scheme",
    "get_optional_principal",
    "get_principal",
    "require_groups",
    "require_roles",
    "require_scope_or_role",
    "require_scopes",
    "swagger_login",
]

#: The name of the security scheme in the OpenAPI document (``components.securitySchemes``).
SCHEME_NAME = "EntraID"


class _EntraBearer(HTTPBearer):
    """The OpenAPI security scheme. The middleware has already read and checked the token."""

    async def __call__(self, request: HTTPConnection) -> None:
        return None


bearer_scheme = _EntraBearer(
    bearerFormat="JWT",
    scheme_name=SCHEME_NAME,
    description="A Microsoft Entra ID access token for this API",
    auto_error=False,
)


class EntraSecurity(SecurityBase):
    """The caller the middleware validated, checked against ``requirement`` when there is one.

    A FastAPI dependency of one level (it depends on nothing but the connection) and the
    OpenAPI security scheme of the routes that use it. Await it with an ``HTTPConnection``
    (HTTP and WebSocket routes alike) to get the ``EntraPrincipal``.

    Raises ``MissingToken`` (401) in optional mode when the request carried no token,
    ``InsufficientPermissions`` (403) when the requirement is not met, ``ServiceUnavailable``
    (503) when an overage user's groups could not be looked up (each as an ``HTTPException``
    of that status where the middleware is not in the route's app), and ``RuntimeError`` when
    no ``EntraAuthMiddleware`` ran for the request (missing, or the path is excluded).
    """

    def __init__(
        self, requirement: Requirement | None = None, *, groups: GroupRequirement | None = None
    ) -> None:
        self.requirement = requirement
        self.groups = groups
        self.model = bearer_scheme.model
        self.scheme_name = SCHEME_NAME

    async def __call__(self, request: HTTPConnection) -> EntraPrincipal:
        state = request.scope.get("state")
        if state is None or STATE_KEY not in state:
            raise RuntimeError(
                "no Entra principal on this request: add EntraAuthMiddleware to the app, and do "
                "not list this route in its exclude_paths"
            )
        principal: EntraPrincipal | None = state[STATE_KEY]
        try:
            if principal is None:  # optional mode, and the request carried no token
                raise MissingToken
            if self.requirement is not None:
                self.requirement.check(principal)
            if self.groups is not None:
                incoming = request.scope.get(INCOMING_TOKEN)
                await self.groups.check(
                    principal, incoming if isinstance(incoming, IncomingToken) else None
                )
        except EntraGuardError as exc:
            raise answerable(request, exc) from None
        return principal

    def __repr__(self) -> str:
        return f"EntraSecurity({self.requirement or self.groups!r})"


class _OptionalEntraSecurity(SecurityBase):
    """The caller, or ``None`` when the request came without a token to a path the middleware
    lets through anonymously (``optional_paths=`` or ``optional=True``)."""

    def __init__(self) -> None:
        self.model = bearer_scheme.model
        self.scheme_name = SCHEME_NAME

    async def __call__(self, request: HTTPConnection) -> EntraPrincipal | None:
        state = request.scope.get("state")
        if state is None or STATE_KEY not in state:
            # An excluded path: the middleware never looked at the token, so "no principal"
            # would be a guess. Serving both kinds of caller is what optional_paths is for.
            raise RuntimeError(
                "no Entra principal on this request: add EntraAuthMiddleware to the app and "
                "list this route in its optional_paths, not in exclude_paths"
            )
        principal: EntraPrincipal | None = state[STATE_KEY]
        return principal


#: The dependency behind ``Principal``: the validated caller, with no requirement.
get_principal = EntraSecurity()

#: ``async def handler(principal: Principal)``: the validated caller of the request.
Principal = Annotated[EntraPrincipal, Depends(get_principal)]

#: The dependency behind ``OptionalPrincipal``.
get_optional_principal = _OptionalEntraSecurity()

#: ``async def handler(principal: OptionalPrincipal)``: the validated caller, or ``None`` for a
#: request without a token on a path of the middleware's ``optional_paths``. A token that is
#: present must still be valid: the middleware refuses it otherwise.
OptionalPrincipal = Annotated[EntraPrincipal | None, Depends(get_optional_principal)]


def require_groups(
    *groups: str,
    any_of: bool = False,
    resolver: GroupResolver | Callable[[EntraPrincipal], Awaitable[frozenset[str]]] | None = None,
) -> EntraSecurity:
    """Demand group membership (object ids from the ``groups`` claim): all, or one with ``any_of``.

    A user in too many groups for the token (overage) is looked up with ``resolver`` (a
    ``GroupResolver``, or an async function of the principal returning group ids, which is then
    wrapped in one); without it such a user is refused with 403 ``groups_overage``.
    """
    return EntraSecurity(groups=GroupRequirement.of(groups, any_of=any_of, resolver=resolver))


def require_roles(*roles: str, any_of: bool = False) -> EntraSecurity:
    """Demand app roles (client-credentials callers): all of them, or one with ``any_of``."""
    return EntraSecurity(Requirement.of(roles=roles, any_of=any_of))


def require_scopes(*scopes: str, any_of: bool = False) -> EntraSecurity:
    """Demand delegated scopes (``scp``, users' apps): all of them, or one with ``any_of``."""
    return EntraSecurity(Requirement.of(scopes=scopes, any_of=any_of))


def require_scope_or_role(
    *, scopes: tuple[str, ...] | list[str] = (), roles: tuple[str, ...] | list[str] = (),
    any_of: bool = False,
) -> EntraSecurity:  # fmt: skip
    """Microsoft's "scope or app permission": a user's app shows the scopes, a daemon the roles."""
    return EntraSecurity(Requirement.of(scopes=scopes, roles=roles, any_of=any_of))


class OnBehalfOf:
    """A dependency yielding an ``httpx.Auth`` that calls a downstream API as the caller.

    ``auth: Annotated[httpx.Auth, Depends(OnBehalfOf("https://graph.microsoft.com/User.Read"))]``;
    then ``httpx.AsyncClient(auth=auth).get(...)`` sends an on-behalf-of token for ``scopes``,
    cached per caller's token and scope. ``client`` defaults to ``app.state.entra_on_behalf_of``
    (an ``OnBehalfOfClient`` set at start-up). Errors as
    :func:`entra_guard.starlette.on_behalf_of_auth`.
    """

    def __init__(self, *scopes: str, client: OnBehalfOfClient | None = None) -> None:
        if not scopes:
            raise ValueError(
                "OnBehalfOf needs the downstream scopes, such as 'api://orders/.default'"
            )
        self.scopes = scopes
        self.client = client

    async def __call__(self, request: HTTPConnection) -> OnBehalfOfAuth:
        try:
            return on_behalf_of_auth(request, self.scopes, client=self.client)
        except EntraGuardError as exc:
            raise answerable(request, exc) from None

    def __repr__(self) -> str:
        return f"OnBehalfOf{self.scopes!r}"


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_SCOPE_NAME = re.compile(r"^[^\s/\"\\]+$")


def swagger_login(
    app: FastAPI,
    config: EntraConfig,
    *,
    client_id: str,
    scopes: Mapping[str, str] | Sequence[str],
    app_id_uri: str | None = None,
) -> None:
    """Let Swagger UI (``/docs``) sign a user in at Entra ID and call the API with their token.

    Afterwards the app's OpenAPI security scheme ``EntraID`` is OAuth2 authorization code
    (with PKCE, which Entra requires of single-page apps), its URLs
    ``{config.instance}/{config.tenant_id}/oauth2/v2.0/authorize`` and ``.../token`` (so
    sovereign clouds and the emulator work, and a multi-tenant ``organizations`` or ``common``
    config signs users in at that authority), and each route's security requirement lists the
    delegated scopes its ``require_scopes`` or ``require_scope_or_role`` demands (all of them,
    or one of several alternatives with ``any_of=True``). Without this call the scheme stays a
    bearer token to paste.

    - ``client_id``: the Application (client) ID of a registration of platform
      *Single-page application* whose redirect URI is the docs' ``/docs/oauth2-redirect``
      (Entra refuses a browser's code redemption for any other platform, AADSTS9002326).
    - ``scopes``: the delegated scopes the API exposes, by short name (``"Orders.Read"``, as
      they appear in ``scp``), optionally with a description each (a mapping). Swagger UI offers
      them, all preselected, by their full names ``{app_id_uri}/{name}``.
    - ``app_id_uri``: the API's Application ID URI; by default the first entry of
      ``config.audiences`` that is not a GUID.

    The middleware stays the only gate: exclude ``/docs``, ``/docs/oauth2-redirect`` and
    ``/openapi.json`` from it for Swagger UI to load. Raises ``ValueError`` for a bad argument.
    """
    if not isinstance(client_id, str) or not _GUID.match(client_id.strip()):
        raise ValueError(f"client_id must be the SPA's Application (client) ID, got {client_id!r}")
    described = _described_scopes(scopes)
    prefix = _app_id_uri(config, app_id_uri)
    authority = f"{config.instance}/{config.tenant_id}/oauth2/v2.0"
    flow_scopes = {f"{prefix}/{name}": text for name, text in described.items()}
    app.swagger_ui_init_oauth = {
        **(app.swagger_ui_init_oauth or {}),
        "clientId": client_id.strip(),
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": " ".join(flow_scopes),
    }
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        _sign_in_with_oauth2(document, app.routes, authority, prefix, flow_scopes)
        return document

    app.openapi_schema = None  # a document generated before this call is stale
    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


def _described_scopes(scopes: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(scopes, str):
        scopes = [scopes]
    described = dict(scopes) if isinstance(scopes, Mapping) else {name: name for name in scopes}
    if not described:
        raise ValueError("scopes: name at least one delegated scope the API exposes")
    for name in described:
        if not isinstance(name, str) or not _SCOPE_NAME.match(name):
            raise ValueError(
                f"scopes: {name!r} is not a scope's short name (such as 'Orders.Read'; the "
                "App ID URI is added)"
            )
    return described


def _app_id_uri(config: EntraConfig, app_id_uri: str | None) -> str:
    if app_id_uri is None:
        named = [aud for aud in config.audiences if not _GUID.match(aud)]
        if not named:
            raise ValueError(
                "app_id_uri: config.audiences holds no Application ID URI (only client ids); "
                "pass the API's, such as 'api://<client id>'"
            )
        app_id_uri = named[0]
    if (
        not isinstance(app_id_uri, str)
        or "://" not in app_id_uri
        or any(c.isspace() for c in app_id_uri)
    ):
        raise ValueError(f"app_id_uri: {app_id_uri!r} is not an Application ID URI")
    return app_id_uri.rstrip("/")


def _sign_in_with_oauth2(
    document: dict[str, Any],
    routes: Iterable[Any],
    authority: str,
    prefix: str,
    flow_scopes: dict[str, str],
) -> None:
    """Turn the document's bearer scheme into the OAuth2 one, with each route's scopes."""
    requirements: dict[tuple[str, str], list[list[str]]] = {}
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        needed = _scope_alternatives(_requirements_of(route), prefix)
        for scope in itertools.chain.from_iterable(needed):
            flow_scopes.setdefault(scope, scope)  # a route's need the caller forgot to list
        for method in route.methods or ():
            requirements[route.path_format, method.lower()] = needed
    flow = OAuthFlowAuthorizationCode(
        authorizationUrl=f"{authority}/authorize", tokenUrl=f"{authority}/token", scopes=flow_scopes
    )
    scheme = OAuth2Model(
        flows=OAuthFlows(authorizationCode=flow),
        description="Sign in with Microsoft Entra ID (authorization code with PKCE)",
    )
    schemes = document.get("components", {}).get("securitySchemes", {})
    if SCHEME_NAME not in schemes:
        return  # no route uses these dependencies
    schemes[SCHEME_NAME] = scheme.model_dump(mode="json", by_alias=True, exclude_none=True)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            security = operation.get("security") if isinstance(operation, dict) else None
            if not security or (path, method) not in requirements:
                continue
            ours = [{SCHEME_NAME: scopes} for scopes in requirements[path, method]]
            others = [entry for entry in security if SCHEME_NAME not in entry]
            if len(others) < len(security):
                operation["security"] = ours + others


def _requirements_of(route: APIRoute) -> list[Requirement]:
    found, pending = [], list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, EntraSecurity) and dependant.call.requirement is not None:
            found.append(dependant.call.requirement)
        pending.extend(dependant.dependencies)
    return found


def _scope_alternatives(requirements: Iterable[Requirement], prefix: str) -> list[list[str]]:
    """OpenAPI security requirements (alternatives, each a list of scopes all needed).

    All-of scopes are one alternative; ``any_of`` scopes one alternative each; several
    requirements on one route must all hold, so their alternatives combine. Roles are not OAuth
    scopes and add nothing.
    """
    combined: list[frozenset[str]] = [frozenset()]
    for requirement in requirements:
        if not requirement.scopes:
            continue
        names = sorted(requirement.scopes)
        options = [frozenset([n]) for n in names] if requirement.any_of else [frozenset(names)]
        combined = [have | option for have in combined for option in options]
    unique = dict.fromkeys(combined)
    return [[f"{prefix}/{name}" for name in sorted(option)] for option in unique]
