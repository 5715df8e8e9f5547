"""What an app asks for with client credentials: one resource's ``/.default`` scope.

The client-credentials grant takes exactly one scope, ``{resource}/.default``, where the
resource is the API's App ID URI (``api://orders``, ``https://graph.microsoft.com``) or its
client id (a GUID); the app roles granted to the caller then arrive in the token's ``roles``
claim. Anything else is refused by Entra (AADSTS1002012, AADSTS70011). Source: Microsoft
identity platform, "Scopes and permissions" (the ``.default`` scope) and "OAuth 2.0 client
credentials flow".

A delegated scope is written ``{resource}/{permission}`` (``api://orders/Orders.Read``), so
the resource a mistaken scope meant can often be read from it; a bare permission name
(``Orders.Read``) does not say which API it belongs to, and no resource is guessed for it.
"""

from __future__ import annotations

from entra_guard.config import is_guid

__all__ = ["DEFAULT_SUFFIX", "check_scope", "default_scopes_for"]

DEFAULT_SUFFIX = "/.default"
_SCHEME = "://"


def default_scopes_for(scope: str) -> tuple[str, ...]:
    """The ``{resource}/.default`` scopes that ``scope`` may have meant, most likely first.

    Returns one scope when the resource is clear, two when the last path segment may be part of
    the App ID URI or a permission (``https://contoso.com/orders``), and none when the
    resource cannot be told (a bare permission name, scopes of several resources, nothing).
    A correct scope is returned as it is.
    """
    meanings = {_candidates(part) for part in scope.split()}
    return meanings.pop() if len(meanings) == 1 else ()


def check_scope(scope: str) -> str:
    """``scope`` if it is one ``{resource}/.default``; a ``ValueError`` that says why if not.

    The message names the scope to ask for instead when the resource can be told from
    ``scope`` (see :func:`default_scopes_for`), and says that it cannot otherwise.
    """
    if not isinstance(scope, str):
        raise ValueError(f"scope must be a string like 'api://orders/.default', got {scope!r}")
    scope = scope.strip()
    if len(scope.split()) == 1 and _is_default_scope(scope):
        return scope
    roles = "; the app roles granted to the app then arrive in the token's 'roles' claim"
    refused = f"scope {scope!r} cannot be asked for with client credentials"
    match default_scopes_for(scope):
        case (meant,):
            raise ValueError(
                f"{refused}: ask for {meant!r}, the resource's '/.default' scope{roles}"
            )
        case (whole, shorter):
            segment = whole.removesuffix(DEFAULT_SUFFIX).rsplit("/", 1)[1]
            raise ValueError(
                f"{refused}: ask for {whole!r}, the resource's '/.default' scope (or "
                f"{shorter!r} if {segment!r} is a permission name){roles}"
            )
        case _ if len(scope.split()) > 1:
            raise ValueError(
                f"{refused}: a token is for one API; ask for one '<resource>/.default' per "
                f"token{roles}"
            )
        case _:
            raise ValueError(
                f"{refused}, and it does not say which API it is for: ask for "
                "'<resource>/.default', where <resource> is the API's App ID URI (for example "
                f"'api://orders') or its client id{roles}"
            )


def _is_default_scope(scope: str) -> bool:
    # Entra judges the resource itself (AADSTS500011 names one it does not know).
    return scope.endswith(DEFAULT_SUFFIX) and scope != DEFAULT_SUFFIX


def _candidates(scope: str) -> tuple[str, ...]:
    if _is_default_scope(scope):
        return (scope,)
    scope = scope.rstrip("/")
    if _resource(scope) and not _has_path(scope):  # api://orders, a client id
        return (f"{scope}{DEFAULT_SUFFIX}",)
    resource, _, permission = scope.rpartition("/")
    if not (_resource(resource) and permission):  # Orders.Read, openid: which API's?
        return ()
    without_permission = f"{resource}{DEFAULT_SUFFIX}"
    # Microsoft's permission names read resource.operation (User.Read, Orders.Read.All) or use
    # an underscore (user_impersonation); another word is more likely the end of an App ID URI.
    if "." in permission or "_" in permission or not _resource(scope):
        return (without_permission,)
    return (f"{scope}{DEFAULT_SUFFIX}", without_permission)


def _resource(value: str) -> str:
    """``value`` if it can name a resource (an absolute URI or a GUID), else ``""``."""
    if is_guid(value):
        return value
    scheme, separator, rest = value.partition(_SCHEME)
    return value if separator and scheme and rest.split("/", 1)[0] else ""


def _has_path(uri: str) -> bool:
    return "/" in uri.partition(_SCHEME)[2]
