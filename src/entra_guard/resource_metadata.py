"""RFC 9728 protected-resource metadata: the document an API publishes so that an OAuth client
can find out by itself where to get a token for it (the MCP authorization spec requires it).

``ProtectedResource`` is what the operator configures; ``MetadataEndpoint`` is what
``EntraAuthMiddleware`` serves, computed once: the JSON body and headers, the paths it answers
on, and the absolute URL its 401 challenges name (``resource_metadata="..."``, RFC 9728 5.1).

Where the document lives (RFC 9728 3.1): ``/.well-known/oauth-protected-resource`` goes between
the host and the path of the resource identifier, so ``https://api.contoso.com`` has it at
``https://api.contoso.com/.well-known/oauth-protected-resource`` and ``https://contoso.com/orders``
at ``https://contoso.com/.well-known/oauth-protected-resource/orders``. The URL is built from the
configured ``resource`` alone, never from the request's ``Host`` header: a header the caller
controls must not choose where clients are sent to sign in, nor end up in a shared cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.types import Receive, Scope, Send

from entra_guard.config import EntraConfig, is_loopback_host, without_user_info

__all__ = ["WELL_KNOWN_PATH", "MetadataEndpoint", "ProtectedResource"]

#: The well-known URI suffix of RFC 9728 3.
WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource"
# The document changes only with a deployment; an hour keeps clients and caches from asking on
# every 401 without pinning a stale one for long.
_MAX_AGE = 3600
_ALLOW = b"GET, HEAD, OPTIONS"
# RFC 3986 2: the characters a URI may hold. Every one is also allowed inside an RFC 9110
# quoted-string without escaping (no '"', no '\', no space, nothing outside ASCII), so a URL
# that passes this can go into a challenge as it is.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 6749 3.3 scope-token.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# OpenID Connect scopes that name no resource; every other Entra scope is "<resource>/<name>".
_OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtectedResource:
    """What this API says about itself to OAuth clients (RFC 9728 2); checked at construction.

    ``resource`` is the URL clients call this API by, exactly (RFC 9728 3.3: a client refuses
    a document whose ``resource`` differs from the URL it used): ``https://api.contoso.com``, or
    ``https://contoso.com/orders`` for an API behind a path prefix. https, or http on a loopback
    host; no query, fragment or user info. It is also where the document's absolute URL comes
    from, so behind a proxy it is the public URL, not the one the app server sees.

    ``scopes_supported`` are the delegated scopes a client should ask Entra for, by their full
    names (``api://orders/Orders.Read``): Entra reads a scope without a resource prefix as
    Microsoft Graph's. At least one is needed, or a client could only get a token for Graph.
    OpenID Connect scopes (``openid``, ``offline_access``, ...) may be added as they are.

    ``authorization_servers`` are issuer URLs; left empty, the tenant's v2 authority
    ``{instance}/{tenant_id}/v2.0`` of the middleware's config is advertised (see
    :meth:`document`). ``resource_name`` and ``resource_documentation`` (a URL) are shown to
    people by clients that display them.

    Raises ``ValueError`` naming the field for any value that breaks these rules.
    """

    resource: str
    scopes_supported: Sequence[str]
    authorization_servers: Sequence[str] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__  # the documented way to normalise a frozen dataclass
        _check_url("resource", self.resource, query=False)
        setattr_(self, "scopes_supported", _check_scopes(self.scopes_supported))
        servers = self.authorization_servers
        if isinstance(servers, str) or not isinstance(servers, Sequence):
            raise ValueError(
                f"authorization_servers must be a list of issuer URLs, got {servers!r}"
            )
        for server in servers:
            _check_url("authorization_servers", server, query=False)
        setattr_(self, "authorization_servers", tuple(dict.fromkeys(servers)))
        if self.resource_name is not None and (
            not isinstance(self.resource_name, str) or not self.resource_name.strip()
        ):
            raise ValueError(
                f"resource_name must be a non-empty string, got {self.resource_name!r}"
            )
        if self.resource_documentation is not None:
            _check_url("resource_documentation", self.resource_documentation, query=True)

    @property
    def metadata_path(self) -> str:
        """The path of the document's URL: the well-known suffix, then the resource's path."""
        path = urlsplit(self.resource).path
        return WELL_KNOWN_PATH if path in ("", "/") else WELL_KNOWN_PATH + path

    @property
    def metadata_url(self) -> str:
        """The absolute URL of the document, as 401 challenges give it (RFC 9728 3.1, 5.1)."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{self.metadata_path}"

    def document(
        self, config: EntraConfig, *, bearer_methods: Sequence[str] = ("header",)
    ) -> dict[str, Any]:
        """The metadata as a JSON object (RFC 9728 2).

        ``authorization_servers`` defaults to ``[f"{config.instance}/{config.tenant_id}/v2.0"]``:
        for a single-tenant API, exactly the ``issuer`` of the tenant's OpenID configuration at
        ``{authority}/.well-known/openid-configuration``. For ``organizations`` and ``common``
        it is the multi-tenant authority where any user signs in, but whose configuration
        gives the issuer as the ``{tenantid}`` template: a client that checks the issuer
        (RFC 8414 3.3, OpenID Connect Discovery 4.3, recent MCP clients) refuses it. Give
        ``authorization_servers`` explicitly (each allowed tenant's authority) for those.
        """
        servers = self.authorization_servers or (f"{config.instance}/{config.tenant_id}/v2.0",)
        body: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(servers),
            "scopes_supported": list(self.scopes_supported),
            "bearer_methods_supported": list(bearer_methods),
        }
        if self.resource_name is not None:
            body["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            body["resource_documentation"] = self.resource_documentation
        return body


class MetadataEndpoint:
    """The document as a small ASGI app, with everything precomputed.

    ``GET`` and ``HEAD`` answer the JSON with ``Cache-Control: public`` and
    ``Access-Control-Allow-Origin: *`` (browser-based clients fetch it from another origin, and
    it holds nothing private); ``OPTIONS`` answers 204 with ``Allow`` and what a CORS preflight
    needs; any other method 405 with ``Allow``. No token is asked for or looked at.
    """

    def __init__(
        self,
        resource: ProtectedResource,
        config: EntraConfig,
        *,
        bearer_methods: Sequence[str] = ("header",),
    ) -> None:
        if not isinstance(resource, ProtectedResource):
            raise ValueError(f"resource_metadata must be a ProtectedResource, got {resource!r}")
        self.resource = resource
        #: The absolute URL 401 challenges name.
        self.url = resource.metadata_url
        # The paths the app routes on, as ASGI gives them (percent-decoded). The bare well-known
        # path is served for a resource with a path too: MCP clients fall back to it, and
        # Microsoft's guide for MCP servers on Entra publishes the document there.
        self.paths = frozenset({unquote(resource.metadata_path), WELL_KNOWN_PATH})
        self._body = json.dumps(resource.document(config, bearer_methods=bearer_methods)).encode()
        cors = [(b"access-control-allow-origin", b"*")]
        self._document_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"cache-control", f"public, max-age={_MAX_AGE}".encode()),
            *cors,
        ]
        self._options_headers = [
            (b"allow", _ALLOW),
            *cors,
            (b"access-control-allow-methods", _ALLOW),
            (b"access-control-allow-headers", b"*"),
            (b"access-control-max-age", str(_MAX_AGE).encode()),
        ]
        refusal = json.dumps(
            {
                "error": "method_not_allowed",
                "error_description": "The protected-resource metadata answers GET and HEAD only",
            }
        ).encode()
        self._refusal = refusal
        self._refusal_headers = [
            (b"allow", _ALLOW),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(refusal)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            status, headers = 200, self._document_headers
            body = self._body if method == "GET" else b""
        elif method == "OPTIONS":
            status, headers, body = 204, self._options_headers, b""
        else:
            status, headers, body = 405, self._refusal_headers, self._refusal
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _check_url(name: str, value: object, *, query: bool) -> None:
    """An absolute https URL (http on loopback), safe to quote in a header as it is.

    Messages show the value with any user info (a password) replaced by ``***``.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a URL string")
    shown = without_user_info(value)
    if _URI_CHARACTERS.fullmatch(value) is None:
        raise ValueError(
            f"{name}: {shown!r} is not a URL made of the characters RFC 3986 allows "
            "(percent-encode spaces, quotes, backslashes and non-ASCII; use punycode hosts)"
        )
    if _BAD_PERCENT.search(value):
        raise ValueError(f"{name}: {shown!r} has a '%' that starts no percent-encoding")
    parts = urlsplit(value)
    if "@" in parts.netloc or "#" in value:
        raise ValueError(f"{name}: {shown!r} must not carry user info or a fragment")
    try:
        parts.port  # noqa: B018  # urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f"{name}: {shown!r} has an invalid port") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{name}: {shown!r} must be an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{name}: {shown!r} uses http://, which is only allowed for a loopback host; "
            "use https:// (RFC 9728 requires it)"
        )
    if parts.query and not query:
        raise ValueError(f"{name}: {shown!r} must not carry a query")


def _check_scopes(scopes: object) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise ValueError(f"scopes_supported must be a list of scope names, got {scopes!r}")
    for scope in scopes:
        if not isinstance(scope, str) or _SCOPE_TOKEN.fullmatch(scope) is None:
            raise ValueError(
                f"scopes_supported: {scope!r} is not a scope name (RFC 6749 3.3: printable "
                "ASCII without spaces, '\"' or '\\')"
            )
        head, _, name = scope.rpartition("/")
        if scope not in _OIDC_SCOPES and not (head and name):
            raise ValueError(
                f"scopes_supported: {scope!r} must be a full scope name such as "
                "'api://orders/Orders.Read' (the App ID URI, '/', the scope): Entra reads a "
                "scope without its API's prefix as one of Microsoft Graph's"
            )
    if not any(scope not in _OIDC_SCOPES for scope in scopes):
        raise ValueError(
            "scopes_supported must name at least one of this API's delegated scopes "
            "(e.g. 'api://orders/Orders.Read'): without one, a client can only get a token "
            "for Microsoft Graph"
        )
    return tuple(dict.fromkeys(scopes))
