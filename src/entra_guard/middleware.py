"""``EntraAuthMiddleware``: a pure ASGI middleware that authenticates every HTTP and WebSocket
request with an Entra ID access token.

It does one thing: read the bearer token, have the validator check it, and either put the
principal into the request scope or answer the failure (RFC 6750 for HTTP; a refusal before
accept for WebSockets). Route-level permission checks raise ``InsufficientPermissions`` inside
the app; the middleware answers those too, so every failure has the same shape.

Three things it deliberately lets through without a token: excluded paths, matched against the
path the app routes on (``path`` without ``root_path``, as Starlette's router does, so an app
served under a prefix keeps its health checks public); CORS preflights, which browsers send
without credentials (Fetch standard, "CORS-preflight request"), but only to a Starlette
``CORSMiddleware`` inside this one, which answers every preflight itself (a preflight-shaped
``OPTIONS`` must never reach a route, a mount or an ``options`` method without a token; with
``CORSMiddleware`` outermost, as the README advises, preflights never get here); and, with
``optional=True`` or on the ``optional_paths``, requests without credentials. With
``resource_metadata=``, it answers the RFC 9728 document itself (HTTP only, before any exclusion,
no token looked at) and names it in its 401 challenges. It refuses to run inside another
``EntraAuthMiddleware``: the token would be validated twice and the inner one's options would
silently do nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entra_guard.bearer import INCOMING_TOKEN, IncomingToken, bearer_token, error_response
from entra_guard.config import EntraConfig
from entra_guard.errors import EntraGuardError, InvalidToken, KeysUnavailable, MissingToken
from entra_guard.principal import EntraPrincipal
from entra_guard.resource_metadata import MetadataEndpoint, ProtectedResource
from entra_guard.validation import TokenValidator

__all__ = ["ANSWERED_BY", "REFUSED_IN_APP", "STATE_KEY", "AuthOutcome", "EntraAuthMiddleware"]

#: ``request.state.entra_principal`` holds the validated caller.
STATE_KEY = "entra_principal"
#: The ASGI scope key of ``(app, resource_metadata_url)`` for every request the middleware lets
#: in: the app in whose middleware stack it runs (``scope["app"]`` as it found it, ``None`` when
#: it wraps an app itself) and its RFC 9728 document's URL. A route's refusal reaches the
#: middleware only from that app (see ``entra_guard.starlette.answerable``).
ANSWERED_BY = "entra_guard.answered_by"
#: The scope key of a refusal that app answered itself, for the log and ``on_outcome``.
REFUSED_IN_APP = "entra_guard.refused_in_app"
_WS_POLICY_VIOLATION = 1008
_DENIAL_EXTENSION = "websocket.http.response"
# Set on the lifespan scope by the outermost EntraAuthMiddleware, so that a second one can tell.
_LIFESPAN_MARK = "entra_guard.auth_middleware"
_NESTED = (
    "EntraAuthMiddleware runs inside another EntraAuthMiddleware (added twice, or on a mounted app "
    "whose parent has it too): every token would be validated twice and the inner one's options "
    "would have no effect. Add it once, and give that one all the exclude_paths, "
    "exclude_prefixes and optional= settings the app needs."
)

logger = logging.getLogger("entra_guard.middleware")


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """What happened to one request, for metrics and audit hooks. Never holds the token."""

    status: int  # 200 when the request was let through to the app
    # "authenticated", "anonymous" (no credentials, let through: optional=True or a CORS
    # preflight), or the failure's reason code
    reason: str
    method: str
    # The full request path, root_path included: what the server's access log and the caller see.
    path: str
    principal: EntraPrincipal | None = None


OutcomeHook = Callable[[AuthOutcome], "Awaitable[None] | None"]


class EntraAuthMiddleware:
    """Authenticate requests with Entra ID access tokens.

    ``app.add_middleware(EntraAuthMiddleware, config=EntraConfig(...))``. Give ``validator``
    instead of ``config`` to share one validator (and its key cache) with other code.
    ``exclude_paths`` are exact paths and ``exclude_prefixes`` path prefixes that need no token
    (health checks, documentation); both are the paths the app routes on, without the
    ``root_path`` a server or mount adds (``uvicorn --root-path /api``: exclude ``/health``, and
    ``/api/health`` is public). With ``optional=True``, requests without credentials pass with no
    principal and routes decide; a token that is present must still be valid.
    ``optional_paths`` (exact paths, as ``exclude_paths``) does the same for those paths only,
    while the rest of the app keeps requiring a token: a route that serves anonymous and
    signed-in callers alike (read the caller with ``OptionalPrincipal`` or
    ``optional_principal_of``).

    A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, which
    browsers send without credentials) passes without a principal.

    ``resource_metadata=ProtectedResource(resource="https://api.contoso.com", scopes_supported=
    ["api://orders/Orders.Read"])`` publishes RFC 9728 protected-resource metadata at
    ``/.well-known/oauth-protected-resource`` (and the path-suffixed form for a ``resource``
    with a path), and 401 challenges then carry ``resource_metadata="<its absolute URL>"``; off
    by default. Installed inside another
    ``EntraAuthMiddleware``, it fails the app's start-up (lifespan) or raises ``RuntimeError`` on
    the first request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: EntraConfig | None = None,
        validator: TokenValidator | None = None,
        exclude_paths: Collection[str] = (),
        exclude_prefixes: Collection[str] = (),
        optional: bool = False,
        optional_paths: Collection[str] = (),
        accept_query_token: bool = False,
        prefetch_keys: bool = True,
        on_outcome: OutcomeHook | None = None,
        resource_metadata: ProtectedResource | None = None,
    ) -> None:
        if (config is None) == (validator is None):
            raise ValueError("give exactly one of config= or validator=")
        self._owns_validator = validator is None
        if validator is None:
            assert config is not None  # checked just above; for the type checker
            validator = TokenValidator(config)
        for path in (*exclude_paths, *exclude_prefixes, *optional_paths):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"excluded paths must start with '/', got {path!r}")
        self.app = app
        self.validator = validator
        self._exclude_paths = frozenset(exclude_paths)
        self._exclude_prefixes = tuple(exclude_prefixes)
        self._optional = optional
        self._optional_paths = frozenset(optional_paths)
        self._accept_query_token = accept_query_token
        self._prefetch_keys = prefetch_keys
        self._on_outcome = on_outcome
        self._cors_inside = _answers_preflights(app)
        methods = ("header", "query") if accept_query_token else ("header",)
        self._metadata = None if resource_metadata is None else MetadataEndpoint(
            resource_metadata, validator.config, bearer_methods=methods
        )  # fmt: skip
        self._metadata_paths = self._metadata.paths if self._metadata else frozenset[str]()
        self._metadata_url = self._metadata.url if self._metadata else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await (self._lifespan if scope_type == "lifespan" else self.app)(scope, receive, send)
            return
        state = scope.get("state")
        if state is not None and STATE_KEY in state:  # an outer EntraAuthMiddleware was here
            raise RuntimeError(_NESTED)
        path: str = scope["path"]
        root_path = scope.get("root_path")
        if root_path and path.startswith(root_path):
            path = _route_path(path, root_path)
        # Before the exclusions: an excluded "/.well-known/" prefix must not hand the document
        # to the app, which has no route for it. Off, this is one lookup in an empty set.
        if path in self._metadata_paths and scope_type == "http" and self._metadata is not None:
            await self._metadata(scope, receive, send)
            return
        if path in self._exclude_paths or path.startswith(self._exclude_prefixes):
            await self.app(scope, receive, send)
            return

        try:
            token = bearer_token(scope, accept_query_token=self._accept_query_token)
            if token is None:
                if not (
                    self._optional
                    or path in self._optional_paths
                    or (self._cors_inside and _is_cors_preflight(scope))
                ):
                    raise MissingToken
                principal = None
            else:
                principal = await self.validator.validate(token)
        except EntraGuardError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        except Exception:
            # A bug of ours must not become a 500 or an open door: refuse, and say so in the log.
            logger.exception("token validation failed unexpectedly; refusing the request")
            failure = InvalidToken("validation_error", "The token could not be validated")
            await self._refuse(scope, receive, send, failure)
            return

        _admit(scope, principal, token, self._metadata_url)
        if self._on_outcome is not None:
            reason = "anonymous" if principal is None else "authenticated"
            await _report(self._on_outcome, scope, 200, reason, principal)
        if scope_type == "websocket":
            await self._call_websocket_app(scope, receive, send)
            return

        # Run the app (inline: a coroutine less per request); a permission check failing inside
        # it is answered here, if still possible. Any message the app sends starts its answer:
        # after http.response.start, ours can no longer be sent.
        started = False

        async def watch_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watch_send)
        except EntraGuardError as exc:
            if started:
                raise
            await self._refuse(scope, receive, send, exc)
            return
        refused: EntraGuardError | None = scope.get(REFUSED_IN_APP)
        if refused is not None:  # answered by a mounted app: still our decision, logged as one
            await self._refused(scope, refused)

    async def _call_websocket_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As for HTTP, also noting whether the app consumed ``websocket.connect``. Any message
        the app sends (websocket.accept, websocket.close, a denial response) starts its answer."""
        started = connected = False

        async def watch_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        async def watch_receive() -> Message:
            nonlocal connected
            message = await receive()
            connected = connected or message["type"] == "websocket.connect"
            return message

        try:
            await self.app(scope, watch_receive, watch_send)
        except EntraGuardError as exc:
            if started:
                raise
            await self._refuse(scope, receive, send, exc, received_connect=connected)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exc: EntraGuardError,
        *,
        received_connect: bool = False,
    ) -> None:
        await self._refused(scope, exc)
        status, headers, body = error_response(exc, resource_metadata=self._metadata_url)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if not received_connect:
            message = await receive()  # websocket.connect: refuse only after it, as ASGI asks
            if message["type"] != "websocket.connect":
                return
        if _DENIAL_EXTENSION in scope.get("extensions", {}):
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": _WS_POLICY_VIOLATION,
                        "reason": exc.description[:120]})  # fmt: skip

    async def _refused(self, scope: Scope, exc: EntraGuardError) -> None:
        # One line per refusal at INFO; the cause of a 503 is logged by discovery, once per attempt.
        logger.info("refused %s %s: %s (%d)", scope.get("method", "WS"), scope["path"],
                   exc.reason, exc.status_code)  # fmt: skip
        if self._on_outcome is not None:
            await _report(self._on_outcome, scope, exc.status_code, exc.reason, None)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _LIFESPAN_MARK in scope:
            # Fail before the app starts and before anything fetches keys. Raising after the
            # message makes TestClient raise it too; uvicorn logs the message and exits.
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.failed", "message": _NESTED})
            raise RuntimeError(_NESTED)
        scope[_LIFESPAN_MARK] = True
        await self.app(scope, receive, self._lifespan_send(send))

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self._prefetch_keys:
                try:
                    await self.validator.prefetch()
                except KeysUnavailable:
                    logger.warning("signing keys could not be prefetched; requests will retry")
            elif message["type"] == "lifespan.shutdown.complete" and self._owns_validator:
                await self.validator.aclose()
            await send(message)

        return lifespan_send


def _admit(
    scope: Scope, principal: EntraPrincipal | None, token: str | None, metadata_url: str | None
) -> None:
    """Put the caller where the app reads it: ``request.user``, ``request.auth`` (Starlette's
    ``@requires`` checks its names, roles and scopes alike), ``request.state.entra_principal``,
    and the validated token for on-behalf-of calls only; and who answers a refusal
    (:data:`ANSWERED_BY`)."""
    scope[ANSWERED_BY] = (scope.get("app"), metadata_url)
    if principal is None:
        scope["auth"], scope["user"] = AuthCredentials(), UnauthenticatedUser()
    else:
        scope["auth"] = AuthCredentials(principal.permissions)
        scope["user"] = principal
        scope[INCOMING_TOKEN] = IncomingToken(token or "")
    scope.setdefault("state", {})[STATE_KEY] = principal


def _route_path(path: str, root_path: str) -> str:
    """``path`` without ``root_path`` where it is a whole-segment prefix, as Starlette routes.

    ASGI's ``path`` includes ``root_path`` (uvicorn prepends ``--root-path``; ``Mount`` keeps the
    full path and extends ``root_path``), so ``/api/health`` under ``/api`` routes as ``/health``
    while ``/apix/health`` stays as it is.
    """
    rest = path[len(root_path) :]
    return rest if not rest or rest[0] == "/" else path


def _answers_preflights(app: ASGIApp) -> bool:
    """Whether a Starlette ``CORSMiddleware`` lies between this middleware and the app.

    It answers every preflight (``OPTIONS`` with ``Access-Control-Request-Method``) itself and
    never calls the app with one, so letting a preflight through to it runs no route. Starlette
    builds its middleware stack from the inside out, so the ones inside us exist already and are
    reachable through their ``app`` attribute.
    """
    for _ in range(64):  # middleware stacks are short; a cycle must not hang start-up
        if isinstance(app, CORSMiddleware):
            return True
        inner = getattr(app, "app", None)
        if inner is None or inner is app:
            return False
        app = inner
    return False


def _is_cors_preflight(scope: Scope) -> bool:
    """``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method`` (Fetch standard)."""
    if scope.get("method") != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


async def _report(
    hook: OutcomeHook, scope: Scope, status: int, reason: str, principal: EntraPrincipal | None
) -> None:
    outcome = AuthOutcome(
        status, reason, scope.get("method", "WEBSOCKET"), scope["path"], principal
    )
    try:
        result = hook(outcome)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("the on_outcome hook failed; the request goes on")
