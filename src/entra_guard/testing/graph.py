"""A small Microsoft Graph stand-in on the emulator's origin, under ``/v1.0``.

It serves the emulator's users and their groups in Graph's JSON shapes (``@odata.context``,
``value``, ``@odata.nextLink``; users with ``id``, ``displayName``, ``userPrincipalName``,
``mail``; groups as ``#microsoft.graph.group`` objects) to tokens the emulator issued for
Graph (``aud`` ``https://graph.microsoft.com`` or ``00000003-0000-0000-c000-000000000000``):

- ``GET /me``, ``GET /users`` (paged, ``$top`` 1-999, default 100), ``GET /users/{id|upn}``;
- ``GET /me/transitiveMemberOf`` and ``/users/{id}/transitiveMemberOf`` (paged the same way);
- ``POST /me/checkMemberGroups`` and ``/users/{id}/checkMemberGroups`` (``{"groupIds": [...]}``,
  at most 20);
- ``POST /me/getMemberGroups`` and ``/users/{id}/getMemberGroups``
  (``{"securityEnabledOnly": bool}``).

Membership is every group of the user, however many (a user past 200 groups gets the overage
form in tokens, and Graph is where an API reads them). Users hold group ids only, so a group's
``displayName`` is made from its id. Permissions follow Graph's reference pages
(``users-and-downstream.md`` section 8): ``/me`` needs a delegated permission such as
``User.Read`` (an app-only token is answered 400, as Graph does); other users need
``User.ReadBasic.All``/``User.Read.All``/``Directory.Read.All`` (listing, reading) or
``User.Read.All``/``GroupMember.Read.All``/``Directory.Read.All`` (their membership), delegated
or as application roles. Refusals: 401 ``InvalidAuthenticationToken``, 403
``Authorization_RequestDenied``, 404 ``Request_ResourceNotFound``, 400 for bad input.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from entra_guard.testing.issued_tokens import IssuedTokenError, verify_issued_token
from entra_guard.testing.registrations import MICROSOFT_GRAPH

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from starlette.requests import Request

    from entra_guard.testing.state import EmulatorState
    from entra_guard.testing.users import EmulatorUser

__all__ = ["GRAPH_AUDIENCES", "GRAPH_PATH", "graph_mount"]

GRAPH_PATH: Final = "/v1.0"
#: The ``aud`` values a Graph token carries (Microsoft's OBO example; a real token).
GRAPH_AUDIENCES: Final = frozenset(
    {"https://graph.microsoft.com", "https://graph.microsoft.com/", MICROSOFT_GRAPH.client_id}
)
#: Delegated permissions that let a user read their own profile and membership.
_SELF = frozenset(
    {
        "User.Read",
        "User.ReadWrite",
        "User.ReadBasic.All",
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
_SELF_MEMBERSHIP = _SELF | {"GroupMember.Read.All"}
_READ_USERS = frozenset(
    {"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All"}
)
_READ_USERS_APP = _READ_USERS - {"User.ReadBasic.All"}
_READ_MEMBERSHIP = frozenset({"User.Read.All", "GroupMember.Read.All", "Directory.Read.All"})
_DEFAULT_PAGE, _MAX_PAGE = 100, 999
_MAX_CHECKED_GROUPS = 20
_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who presented the token: a user (delegated ``scp``) or an application (``roles``)."""

    delegated: bool
    permissions: frozenset[str]
    object_id: str


class _GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def graph_mount(state: EmulatorState) -> Mount:
    """Every Graph endpoint, mounted at :data:`GRAPH_PATH`."""

    def route(path: str, method: str, target: str, action: Any, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                caller = _authenticate(state, request)
                user = _subject(state, request, caller, target, action)
                result: Response = await action(state, request, user)
            except _GraphError as error:
                return _error(state, error)
            return result

        return Route(path, endpoint, methods=[method], name=name)

    routes = [Route("/users", _list_users_endpoint(state), methods=["GET"], name="graph-users")]
    for target in ("me", "user"):
        base = "/me" if target == "me" else "/users/{user_id}"
        routes += [
            route(base, "GET", target, _get_user, f"graph-{target}"),
            route(base + "/transitiveMemberOf", "GET", target, _member_of, f"graph-{target}-tmo"),
            route(
                base + "/checkMemberGroups", "POST", target, _check_groups, f"graph-{target}-cmg"
            ),
            route(base + "/getMemberGroups", "POST", target, _get_groups, f"graph-{target}-gmg"),
        ]
    return Mount(GRAPH_PATH, routes=routes)


def _list_users_endpoint(state: EmulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            caller = _authenticate(state, request)
            _require(caller, _READ_USERS if caller.delegated else _READ_USERS_APP)
            users = [_user_json(user) for user in state.users.all]
            return _page(state, request, users, "users")
        except _GraphError as error:
            return _error(state, error)

    return endpoint


# -- who is asking, about whom ---------------------------------------------------------------


def _authenticate(state: EmulatorState, request: Request) -> _Caller:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = verify_issued_token(state, token.strip(), now=time.time())
    except IssuedTokenError as error:
        raise _GraphError(
            401, "InvalidAuthenticationToken", f"Access token validation failure. {error.message}"
        ) from None
    if claims.get("aud") not in GRAPH_AUDIENCES:
        raise _GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        )
    scp, roles = claims.get("scp"), claims.get("roles")
    delegated = isinstance(scp, str)
    if delegated:
        permissions = frozenset(str(scp).split())
    else:
        listed = roles if isinstance(roles, list) else []
        permissions = frozenset(role for role in listed if isinstance(role, str))
    return _Caller(delegated=delegated, permissions=permissions, object_id=str(claims.get("oid")))


def _require(caller: _Caller, allowed: frozenset[str]) -> None:
    if not caller.permissions & allowed:
        raise _GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )


def _subject(
    state: EmulatorState, request: Request, caller: _Caller, target: str, action: Any
) -> EmulatorUser:
    """The user the request is about, once the caller may ask about them."""
    membership = action is not _get_user
    if target == "me":
        if not caller.delegated:
            raise _GraphError(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        _require(caller, _SELF_MEMBERSHIP if membership else _SELF)
        user = state.users.by_object_id(caller.object_id)
        wanted = caller.object_id
    else:
        wanted = str(request.path_params["user_id"])
        if membership:
            _require(caller, _READ_MEMBERSHIP)
        else:
            _require(caller, _READ_USERS if caller.delegated else _READ_USERS_APP)
        user = state.users.by_object_id(wanted.lower()) or state.users.find(wanted)
    if user is None:
        raise _GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{wanted}' does not exist or one of its queried reference-property "
            "objects are not present.",
        )
    return user


# -- the answers ----------------------------------------------------------------------------


async def _get_user(state: EmulatorState, request: Request, user: EmulatorUser) -> Response:
    body = {"@odata.context": _context(state, "users/$entity"), **_user_json(user)}
    return JSONResponse(body)


async def _member_of(state: EmulatorState, request: Request, user: EmulatorUser) -> Response:
    return _page(state, request, [_group_json(group) for group in user.groups], "directoryObjects")


async def _check_groups(state: EmulatorState, request: Request, user: EmulatorUser) -> Response:
    body = await _json_body(request)
    asked = body.get("groupIds")
    if not isinstance(asked, list) or not all(isinstance(g, str) for g in asked):
        raise _GraphError(400, "Request_BadRequest", "groupIds must be a list of group ids.")
    if len(asked) > _MAX_CHECKED_GROUPS:
        raise _GraphError(
            400,
            "Request_BadRequest",
            f"The number of group ids must not exceed {_MAX_CHECKED_GROUPS}.",
        )
    held = set(user.groups)
    found = [group for group in asked if group.lower() in held]
    return _strings(state, found)


async def _get_groups(state: EmulatorState, request: Request, user: EmulatorUser) -> Response:
    body = await _json_body(request)
    if not isinstance(body.get("securityEnabledOnly"), bool):
        raise _GraphError(
            400, "Request_BadRequest", "securityEnabledOnly must be given, true or false."
        )
    return _strings(state, list(user.groups))  # every emulated group is a security group


def _page(
    state: EmulatorState, request: Request, items: Sequence[dict[str, Any]], kind: str
) -> Response:
    """One page of ``items``: ``$top`` of them from ``$skiptoken``, and the next page's link."""
    top = _whole(request.query_params.get("$top"), _DEFAULT_PAGE)
    if not 1 <= top <= _MAX_PAGE:
        raise _GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{top}'. Must be between 1 and {_MAX_PAGE} inclusive.",
        )
    start = _whole(request.query_params.get("$skiptoken"), 0)
    body: dict[str, Any] = {"@odata.context": _context(state, kind)}
    end = start + top
    if end < len(items):
        link = str(request.url.replace(query=f"$top={top}&$skiptoken={end}"))
        body["@odata.nextLink"] = link
    body["value"] = list(items[start:end])
    return JSONResponse(body)


def _whole(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise _GraphError(400, "Request_BadRequest", f"Invalid query parameter value {value!r}.")
    return int(value)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if len(raw) <= _MAX_BODY else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _GraphError(400, "BadRequest", "Unable to read JSON request payload.")
    return body


def _strings(state: EmulatorState, values: list[str]) -> Response:
    return JSONResponse(
        {"@odata.context": _context(state, "Collection(Edm.String)"), "value": values}
    )


def _context(state: EmulatorState, what: str) -> str:
    return f"{state.instance}{GRAPH_PATH}/$metadata#{what}"


def _user_json(user: EmulatorUser) -> dict[str, Any]:
    return {
        "businessPhones": [],
        "displayName": user.name,
        "givenName": user.given_name or None,
        "jobTitle": None,
        "mail": user.upn,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": user.family_name or None,
        "userPrincipalName": user.upn,
        "id": user.object_id,
    }


def _group_json(group_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": group_id,
        "displayName": f"Group {group_id[:8]}",
        "groupTypes": [],
        "mailEnabled": False,
        "securityEnabled": True,
    }


def _error(state: EmulatorState, error: _GraphError) -> Response:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {"date": now, "request-id": request_id, "client-request-id": request_id},
        }
    }
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="", authorization_uri="{state.instance}/common/oauth2/authorize", '
            f'client_id="{MICROSOFT_GRAPH.client_id}"'
        )
    return JSONResponse(body, status_code=error.status, headers=headers)
