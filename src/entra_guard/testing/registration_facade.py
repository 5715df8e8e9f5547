"""The emulator's app registrations, users and token-endpoint switches, as facade methods.

Kept apart from :mod:`entra_guard.testing.emulator` so that each file has one job: that one
serves documents and keys, this one says who may sign in and ask the token endpoint for what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entra_guard.testing.authorize import authorize_path
from entra_guard.testing.registration_file import load_registrations, register_client
from entra_guard.testing.state import TokenFault
from entra_guard.testing.token_endpoint import token_path

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping, Sequence

    from entra_guard.testing.registration_file import Registrations
    from entra_guard.testing.registrations import (
        ApiRegistration,
        ClientRegistration,
        ClientType,
    )
    from entra_guard.testing.state import EmulatorState
    from entra_guard.testing.tenants import Version
    from entra_guard.testing.users import EmulatorUser

__all__ = ["RegistrationMethods"]


class RegistrationMethods:
    """Mixed into :class:`EntraEmulator`, which provides the state, tenant and instance."""

    _state: EmulatorState
    _tenant_id: str

    @property
    def instance(self) -> str:
        raise NotImplementedError  # pragma: no cover - EntraEmulator defines it

    def token_endpoint(self, *, version: Version = "2.0", tenant: str | None = None) -> str:
        """The token endpoint URL (``/oauth2/v2.0/token``, or ``/oauth2/token`` for v1)."""
        return self.instance + token_path(tenant or self._tenant_id, version)

    def authorize_endpoint(self, *, tenant: str | None = None) -> str:
        """The v2 authorization endpoint URL, where users sign in (``/oauth2/v2.0/authorize``)."""
        return self.instance + authorize_path(tenant or self._tenant_id)

    # -- app registrations and the token endpoint ------------------------------------------

    def register_api(
        self,
        *,
        app_id_uri: str | None = None,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        access_token_version: Version = "2.0",  # noqa: S107  # a version, not a secret
        client_id: str | None = None,
        custom_signing_key: bool = False,
    ) -> ApiRegistration:
        """Register an API that clients can ask tokens for.

        A ``scope`` of ``{app_id_uri}/.default`` or ``{client_id}/.default`` names it;
        ``scopes`` are the delegated scopes it exposes to signed-in users, by short name
        (``Orders.Read``, asked for as ``{app_id_uri}/Orders.Read``);
        ``access_token_version`` (the manifest's ``accessTokenAcceptedVersion``) decides the
        version of its tokens: v2 tokens carry its client id as ``aud``, v1 tokens the resource
        as the client asked for it. ``client_id`` is generated when not given.

        ``custom_signing_key=True`` gives the API a signing key of its own (``.signing_key``),
        as a claims-mapping policy or SAML single sign-on does in Entra: the token endpoint
        signs its tokens with it, and only the metadata asked with ``?appid=<client id>``
        points at a JWKS that lists it. Mint such tokens directly with
        ``issue_token(key=api.signing_key, audience=api.client_id)``.
        """
        return self._state.registry.add_api(
            app_id_uri=app_id_uri,
            roles=roles,
            scopes=scopes,
            access_token_version=access_token_version,
            client_id=client_id,
            custom_signing_key=custom_signing_key,
        )

    def register_client(
        self,
        *,
        name: str,
        type: ClientType = "confidential",  # the portal's word for it
        redirect_uris: Sequence[str] = (),
        scopes: Mapping[str, Sequence[str]] | None = None,
        roles: Mapping[str, Sequence[str]] | None = None,
        secret: bool | str | None = None,
        certificate: bool | bytes | str = False,
        client_id: str | None = None,
    ) -> ClientRegistration:
        """Register a client, grant it app roles and consent it to delegated scopes.

        ``type`` is ``"confidential"`` (a daemon or web app with credentials), ``"public"``
        (a native or command-line app) or ``"spa"`` (a browser app: it redeems codes
        cross-origin with PKCE and gets CORS headers back). ``redirect_uris`` are where
        sign-ins may return to (exact matches). ``scopes`` maps an API to the delegated
        scopes (short names) the client is consented to; ``roles`` maps an API (App ID URI
        or client id) to the app roles granted on it.
        ``secret`` (default: ``True`` for a confidential client, ``False`` otherwise; public
        and SPA clients have no credentials) generates a secret (``.secret``) when ``True``;
        a string registers that one.
        ``certificate=True`` generates a self-signed RSA certificate (``.certificate_pem``,
        ``.private_key_pem``); PEM text registers that certificate. Secrets and keys never
        appear in the registration's repr.
        """
        if secret is None:
            secret = type == "confidential"
        return register_client(
            self._state.registry,
            name=name,
            roles=roles or {},
            secrets=[secret] if isinstance(secret, str) else [],
            certificates=[certificate] if isinstance(certificate, (bytes, str)) else [],
            new_secret=secret is True,
            new_certificate=certificate is True,
            client_id=client_id,
            type=type,
            redirect_uris=redirect_uris,
            scopes=scopes or {},
        )

    def register_user(
        self,
        upn: str,
        *,
        password: str | None = None,
        name: str | None = None,
        object_id: str | None = None,
        groups: Iterable[str] = (),
        roles: Mapping[str, Sequence[str]] | None = None,
        guest: bool = False,
    ) -> EmulatorUser:
        """Register a user who can sign in at :meth:`authorize_endpoint`.

        ``password`` is generated when ``None`` (read it from ``.password``); ``name`` (the
        ``name`` claim) defaults to the UPN's local part; ``object_id`` (``oid``) is a new
        GUID when ``None``; ``groups`` are group object ids (the ``groups`` claim); ``roles``
        maps an API (App ID URI or client id) to app roles assigned to the user, which their
        tokens for that API carry; ``guest=True`` makes a B2B guest from another tenant.
        ``ValueError`` for a malformed field, an API that is not registered, a role it does
        not define, or a UPN or object id taken already.
        """
        return self._state.users.add(
            self._state.registry,
            upn=upn,
            password=password,
            name=name,
            object_id=object_id,
            groups=groups,
            roles=roles,
            guest=guest,
        )

    @property
    def users(self) -> tuple[EmulatorUser, ...]:
        """The registered users, in registration order."""
        return self._state.users.all

    def load_registrations(
        self, source: str | os.PathLike[str] | Mapping[str, Any]
    ) -> Registrations:
        """Register the APIs and clients of a JSON file (or its parsed mapping).

        The shape is ``{"apis": [...], "clients": [...], "users": [...]}``; each entry takes
        the keyword arguments of :meth:`register_api` / :meth:`register_client` /
        :meth:`register_user`, except that clients list
        ``secrets`` and ``certificates`` (PEM text) and ask for generated ones with
        ``generate_secret`` / ``generate_certificate``. See
        :mod:`entra_guard.testing.registration_file` for an example.
        """
        return load_registrations(self._state.registry, source, self._state.users)

    @property
    def token_lifetime(self) -> int:
        """Seconds issued tokens live (``expires_in``); Entra's usual answer, 3599, by default."""
        return self._state.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"token_lifetime must be a whole number of seconds >= 1: {seconds!r}")
        self._state.token_lifetime = seconds

    def token_request_count(self) -> int:
        """POST requests to the token endpoints (v1 and v2), answered or faulted."""
        return self._state.token_request_count()

    def fail_token_requests(
        self,
        *,
        status: int = 503,
        count: int | None = 1,
        retry_after: int | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` token requests (every one if ``None``) with ``status``.

        The body is Entra's JSON error (AADSTS90055 for 429, AADSTS90033 for 503) unless
        ``body`` gives a raw one (an HTML error page, or a broken 200); ``retry_after`` adds a
        ``Retry-After`` header. ``count=0`` switches the fault off.
        """
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
        ):
            raise ValueError(f"retry_after must be whole seconds >= 0 or None: {retry_after!r}")
        fault = TokenFault(status=status, retry_after=retry_after, body=body)
        self._state.faults.fail_token_requests(fault, count)
