"""``EntraEmulator``: a local Microsoft Entra ID for tests, over real HTTP.

It publishes the same discovery documents as Entra (metadata and JWKS, v1 and v2, for its
tenant, the tenants added to it and the ``organizations``/``common``/``consumers`` keywords;
AADSTS90002 for any other tenant, as Entra answers for one that does not exist), mints access tokens
with Entra's claim sets from real RSA keys, answers the client-credentials grant of its token
endpoints for registered APIs and clients, and misbehaves on demand: keys rotate, documents
are replaced by recorded real ones, requests fail or stall, the whole server goes down and
comes back on the same port. Nothing is mocked, so the code under test runs its real HTTP path.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from entra_guard.config import EntraConfig, is_guid, is_loopback_host
from entra_guard.testing.app import build_app
from entra_guard.testing.documents import jwks_path, metadata_path
from entra_guard.testing.keys import EmulatorKey
from entra_guard.testing.registration_facade import RegistrationMethods
from entra_guard.testing.server import BackgroundServer
from entra_guard.testing.state import DocumentFault, EmulatorState, Replay
from entra_guard.testing.tenants import resolve_tenant, token_tenant_id
from entra_guard.testing.tls import TLSMaterial
from entra_guard.testing.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_CLIENT_ID,
    build_claims,
    build_header,
    merge,
    sign,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from entra_guard.testing.state import DocumentKind
    from entra_guard.testing.tenants import Version

__all__ = ["EntraEmulator"]

_VERSIONS: tuple[Version, ...] = ("1.0", "2.0")


class EntraEmulator(RegistrationMethods):
    """A local Entra ID tenant served on loopback; see the module docstring.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`stop`. The port is chosen at the first start and kept for the emulator's lifetime.

    Tenants: ``tenant_id`` (default: a new GUID) is where registrations and the token endpoint
    live. Discovery for another tenant GUID answers 400 AADSTS90002 unless it was added with
    :meth:`add_tenant`, or ``any_tenant=True`` lets every GUID exist (for tests that mint
    tokens of arbitrary tenants and fetch their keys).
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        https: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        any_tenant: bool = False,
    ) -> None:
        tenant = str(uuid.uuid4()) if tenant_id is None else tenant_id
        if not isinstance(tenant, str) or not is_guid(tenant):
            raise ValueError(f"tenant_id must be a tenant GUID, got {tenant_id!r}")
        if not is_loopback_host(host):
            # It hands out secrets, passwords and tokens to anyone who asks: this machine only.
            raise ValueError(f"host must be a loopback address (127.0.0.1, ::1), got {host!r}")
        self._tenant_id = tenant.lower()
        self._https = https
        self._host = host
        self._tls = TLSMaterial(hosts=[host]) if https else None
        self._state = EmulatorState(EmulatorKey.generate())
        self._state.tenant_id = self._tenant_id
        self.any_tenant = any_tenant
        self._server = BackgroundServer(build_app(self._state), host=host, port=port, tls=self._tls)
        # An emulator dropped while serving still stops its thread (and at interpreter exit).
        weakref.finalize(self, self._server.stop)

    def __repr__(self) -> str:
        where = self.instance if self._server.port else "unbound"
        state = "running" if self.running else "stopped"
        return f"EntraEmulator({where}, tenant_id={self._tenant_id!r}, {state})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> EntraEmulator:
        """Bind (the same port as before, after a stop) and serve; returns once accepting."""
        self._state.stopping = False
        self._server.start()
        self._state.instance = self.instance
        return self

    def stop(self) -> None:
        """Stop serving: connections close and the port refuses new ones.

        Requests held by :attr:`delay` are answered 503 at once instead of finishing their wait.
        """
        self._state.stopping = True
        # The port stays bound, refusing connections, so that start() can take it again.
        self._server.stop(hold_port=True)

    def close(self) -> None:
        """Stop serving and release the port (``stop`` keeps it for a later ``start``)."""
        self._state.stopping = True
        self._server.stop()

    def __enter__(self) -> EntraEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> EntraEmulator:
        # Start-up and shutdown wait on another thread; keep the caller's event loop free.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    @property
    def running(self) -> bool:
        return self._server.running

    # -- where it is ------------------------------------------------------------------------

    @property
    def instance(self) -> str:
        """``http(s)://host:port`` without a trailing slash: the ``instance`` of a config."""
        port = self._server.port
        if port == 0:
            raise RuntimeError("the port is chosen when the emulator starts; call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._https else 'http'}://{host}:{port}"

    @property
    def tenant_id(self) -> str:
        return self._tenant_id

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenant GUIDs that exist: :attr:`tenant_id` first, then the added ones."""
        return (self._tenant_id, *sorted(self._state.other_tenants))

    def add_tenant(self, tenant_id: str | None = None) -> str:
        """Let another tenant exist (a new GUID if none is given) and return its GUID.

        Its v1 and v2 metadata and JWKS are served from now on. Registrations and the token
        endpoint stay with :attr:`tenant_id`: the other tenant's token endpoint answers
        AADSTS700016 (application not found in the directory), as Entra does for an app
        that is not in a tenant.
        """
        tenant = str(uuid.uuid4()) if tenant_id is None else tenant_id
        if not isinstance(tenant, str) or not is_guid(tenant):
            raise ValueError(f"tenant_id must be a tenant GUID, got {tenant_id!r}")
        self._state.add_tenant(tenant.lower())
        return tenant.lower()

    @property
    def any_tenant(self) -> bool:
        """Whether every tenant GUID exists (no AADSTS90002 for unknown GUIDs)."""
        return self._state.any_tenant

    @any_tenant.setter
    def any_tenant(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"any_tenant must be True or False, got {value!r}")
        self._state.any_tenant = value

    @property
    def port(self) -> int:
        """The bound port (0 before the first start when an ephemeral port was asked for)."""
        return self._server.port

    @property
    def ca_bundle(self) -> str | None:
        """Path of the CA certificate PEM to trust (``https=True`` only).

        The PEM files live in a private temporary directory, removed by :meth:`stop` and when
        the emulator is collected; asking for the path again writes them anew.
        """
        return self._tls.files().ca_bundle if self._tls is not None else None

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the emulator's CA and nothing else."""
        if self._tls is None:
            raise ValueError("this emulator serves plain http; create it with https=True")
        return self._tls.client_context()

    @property
    def graph_url(self) -> str:
        """The Microsoft Graph stand-in's base URL, ``{instance}/v1.0`` (no trailing slash).

        It serves ``/me``, ``/users``, ``/users/{id}``, ``transitiveMemberOf``,
        ``checkMemberGroups`` and ``getMemberGroups`` for this emulator's users, to tokens it
        issued with ``aud`` = ``https://graph.microsoft.com`` or Graph's app id.
        """
        return self.instance + "/v1.0"

    def next_obo_claims_challenge(self, *, claims: str) -> None:
        """Answer the next on-behalf-of request with a claims challenge, as conditional access
        does: 400 ``interaction_required`` (AADSTS50076) whose ``claims`` member is ``claims``
        as given (a JSON object in text, e.g.
        ``'{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'``).
        One request only; the one after it is answered normally. ``ValueError`` if ``claims``
        is not a JSON object.
        """
        try:
            parsed = json.loads(claims) if isinstance(claims, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError(f"claims must be a JSON object as text, got {claims!r}")
        self._state.faults.set_obo_claims_challenge(claims)

    def metadata_url(self, *, version: Version = "2.0", tenant: str | None = None) -> str:
        """The openid-configuration URL of ``tenant`` (default: the emulator's tenant)."""
        return self.instance + metadata_path(tenant or self._tenant_id, version)

    def jwks_url(self, *, version: Version = "2.0", tenant: str | None = None) -> str:
        """The JWKS URL the metadata of ``tenant`` and ``version`` points at."""
        return self.instance + jwks_path(tenant or self._tenant_id, version)

    def config(self, **overrides: Any) -> EntraConfig:
        """An ``EntraConfig`` for this tenant and instance accepting ``DEFAULT_AUDIENCE``.

        Over https its ``ca_bundle`` is :attr:`ca_bundle`, so its key store trusts this
        emulator's CA (read when the config is built; call this while the emulator runs).
        """
        defaults: dict[str, Any] = {
            "tenant_id": self._tenant_id,
            "instance": self.instance,
            "audiences": (DEFAULT_AUDIENCE,),
            "ca_bundle": self.ca_bundle,
        }
        return EntraConfig(**{**defaults, **overrides})

    # -- keys -------------------------------------------------------------------------------

    @property
    def current_key(self) -> EmulatorKey:
        """The key tokens are signed with."""
        return self._state.current_key

    @property
    def published_keys(self) -> tuple[EmulatorKey, ...]:
        """The keys every JWKS lists, in order."""
        return self._state.published_keys

    def rotate_keys(self, *, keep_previous: bool = True) -> EmulatorKey:
        """Publish a new key and sign with it from now on.

        ``keep_previous=False`` also unpublishes the key that signed until now (other published
        keys stay), so tokens it signed stop validating once a client refreshes.
        """
        key = EmulatorKey.generate()
        self._state.rotate(key, keep_previous=keep_previous)
        return key

    def add_key(self) -> EmulatorKey:
        """Publish a new key without signing with it (Entra pre-publishes its next key)."""
        key = EmulatorKey.generate()
        self._state.publish(key)
        return key

    def remove_key(self, kid: str) -> None:
        """Unpublish a key (``KeyError`` if none has ``kid``); it may still be the signing key."""
        self._state.unpublish(kid)

    def publish_key(self, key: EmulatorKey) -> None:
        """Publish ``key`` again, as a rollover does when it drops a key for a moment."""
        if any(published.kid == key.kid for published in self.published_keys):
            raise ValueError(f"the key {key.kid!r} is published already")
        self._state.publish(key)

    @staticmethod
    def generate_key() -> EmulatorKey:
        """A fresh key nobody publishes: sign with it to forge a token."""
        return EmulatorKey.generate()

    # -- tokens -----------------------------------------------------------------------------

    def issue_token(
        self,
        *,
        version: Version = "2.0",
        app_only: bool = True,
        audience: str = DEFAULT_AUDIENCE,
        tenant_id: str | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        roles: Sequence[str] = (),
        scopes: Sequence[str] = (),
        lifetime: float = 3600,
        now: float | None = None,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        key: EmulatorKey | None = None,
        algorithm: str = "RS256",
    ) -> str:
        """An access token as Entra would issue it, then bent by ``claims`` and ``headers``.

        ``app_only=True`` is the client-credentials shape (``roles`` only if given);
        ``app_only=False`` is a user's delegated token, whose ``scp`` holds ``scopes`` or, when
        none are given, ``access_as_user`` (remove it with ``claims={"scp": REMOVE}``).
        ``claims`` and ``headers`` are applied last and may hold anything JSON can carry;
        ``REMOVE`` deletes a member. ``key`` signs instead of the current key, and the header's
        ``kid``/``x5t`` follow it.

        Times: ``now`` (Unix seconds; default the current time) becomes ``iat`` and ``nbf``, and
        ``exp`` is ``now + lifetime`` (whole seconds, rounded down). For an expired token put
        ``now`` in the past: ``now=time.time() - 7200`` gives a token that expired an hour ago,
        which a validator refuses as ``token_expired``. ``lifetime`` must be at least 1 second
        (``ValueError`` otherwise): a shorter one would put ``exp`` at or before ``nbf``, a
        different fault (``invalid_lifetime``); forge that one with ``claims=``.
        """
        signing_key = key if key is not None else self.current_key
        payload = build_claims(
            version=version,
            app_only=app_only,
            instance=self.instance,
            tid=token_tenant_id(tenant_id if tenant_id is not None else self._tenant_id),
            audience=audience,
            client_id=client_id,
            roles=roles,
            scopes=scopes,
            now=time.time() if now is None else now,
            lifetime=lifetime,
        )
        header = build_header(signing_key, version=version, algorithm=algorithm)
        return sign(merge(header, headers), merge(payload, claims), signing_key, algorithm)

    # -- documents, observation and faults ---------------------------------------------------

    def serve_documents(
        self,
        *,
        tenant: str,
        version: Version,
        metadata: Mapping[str, Any],
        jwks: Mapping[str, Any],
    ) -> None:
        """Serve recorded documents for ``(tenant, version)`` from now on.

        The metadata is served as given except that its ``jwks_uri`` points at the emulator's
        own JWKS URL for that tenant and version, where ``jwks`` is served verbatim. A tenant
        GUID is added (:meth:`add_tenant`) if it was not known.
        """
        resolved = resolve_tenant(tenant)
        if resolved is None:
            raise ValueError(
                f"tenant {tenant!r} is not a GUID, 'organizations', 'common' or 'consumers'"
            )
        if resolved.tid == resolved.segment:  # a tenant GUID, not a keyword
            self._state.add_tenant(resolved.segment)
        if version not in _VERSIONS:
            raise ValueError(f"version must be '1.0' or '2.0', got {version!r}")
        self._state.replay(resolved.segment, version, Replay(metadata=metadata, jwks=jwks))

    def fetch_count(
        self,
        kind: DocumentKind,
        tenant: str | None = None,
        version: str | None = None,
        *,
        app_id: str | None = None,
    ) -> int:
        """GET requests for a document, answered or faulted; ``None`` tenant or version matches
        any. Requests with ``?appid=`` (app-specific keys) count only under their ``app_id``."""
        if kind not in ("metadata", "jwks"):
            raise ValueError(f"kind must be 'metadata' or 'jwks', got {kind!r}")
        segment = tenant.lower() if tenant is not None else None
        return self._state.fetch_count(kind, segment, version, app_id and app_id.lower())

    def reset_counts(self) -> None:
        """Zero :meth:`fetch_count` and :meth:`token_request_count`."""
        self._state.reset_counts()

    @property
    def fail_status(self) -> int | None:
        """When set, metadata and JWKS requests get this HTTP status with an error body."""
        return self._state.faults.fail_status

    @fail_status.setter
    def fail_status(self, status: int | None) -> None:
        self._state.faults.fail_status = status

    @property
    def document_fault(self) -> DocumentFault | None:
        """``"invalid-json"``, ``"huge"`` (4 MiB) or ``"no-usable-keys"`` (JWKS): a 200 answer
        with a broken body for metadata and JWKS requests; ``None`` to answer normally."""
        return self._state.faults.document_fault

    @document_fault.setter
    def document_fault(self, fault: DocumentFault | None) -> None:
        self._state.faults.document_fault = fault

    @property
    def served_versions(self) -> tuple[Version, ...]:
        """Token versions whose metadata and JWKS are published (both by default).

        Documents of the others answer 404, as an External ID (``*.ciamlogin.com``) authority
        does for v1: set ``("2.0",)`` to emulate one.
        """
        return tuple(v for v in _VERSIONS if v in self._state.served_versions)

    @served_versions.setter
    def served_versions(self, versions: Sequence[Version]) -> None:
        chosen = frozenset(versions)
        if not chosen or not chosen <= set(_VERSIONS) or isinstance(versions, str):
            raise ValueError(f"served_versions must be a non-empty subset of {_VERSIONS}")
        self._state.served_versions = chosen

    @property
    def delay(self) -> float:
        """Seconds metadata, JWKS and token requests wait before they are answered."""
        return self._state.faults.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._state.faults.delay = seconds
