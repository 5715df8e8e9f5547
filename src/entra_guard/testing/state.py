"""What the server thread reads while the test thread changes it.

Keys and replayed documents are immutable values swapped under a lock, so a request sees either
the old set or the new one, never half of a rotation. Faults are plain attributes: one
assignment is atomic, and a request that races a switch may go either way, as it would in life.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from entra_guard.testing.delegated import GrantStore
from entra_guard.testing.registrations import Registry
from entra_guard.testing.tenants import MSA_TENANT_ID
from entra_guard.testing.users import UserDirectory

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entra_guard.testing.keys import EmulatorKey
    from entra_guard.testing.tenants import Tenant

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "DocumentKind",
    "EmulatorState",
    "Faults",
    "Replay",
    "TokenFault",
]

DocumentKind: TypeAlias = Literal["metadata", "jwks"]

#: What Entra answers as ``expires_in`` for a fresh app token.
DEFAULT_TOKEN_LIFETIME = 3599


@dataclass(frozen=True, slots=True)
class TokenFault:
    """How a faulted token request is answered; add new kinds of failure as fields here."""

    status: int
    #: Seconds for a ``Retry-After`` header, or ``None`` for no header.
    retry_after: int | None = None
    #: A raw body (say, a proxy's HTML page) instead of Entra's JSON error.
    body: str | None = None


#: Broken answers a document request can get: a body that is not JSON, a body far larger than
#: any real document, or (for JWKS) a key set without one usable RSA signing key.
DocumentFault = Literal["invalid-json", "huge", "no-usable-keys"]


class Faults:
    """Switches that make the identity provider misbehave; add new ones here."""

    def __init__(self) -> None:
        self._fail_status: int | None = None
        self._document_fault: DocumentFault | None = None
        self._delay = 0.0
        self._token_lock = threading.Lock()
        self._token_fault: TokenFault | None = None
        self._token_faults_left: int | None = 0
        self._obo_claims_challenge: str | None = None

    def set_obo_claims_challenge(self, claims: str) -> None:
        """Answer the next on-behalf-of request with a claims challenge carrying ``claims``."""
        with self._token_lock:
            self._obo_claims_challenge = claims

    def take_obo_claims_challenge(self) -> str | None:
        """The claims challenge due for this on-behalf-of request, spent by taking it."""
        with self._token_lock:
            claims, self._obo_claims_challenge = self._obo_claims_challenge, None
            return claims

    def fail_token_requests(self, fault: TokenFault | None, count: int | None) -> None:
        """Answer the next ``count`` token requests (all of them if ``None``) with ``fault``."""
        if fault is not None:
            _check_status("status", fault.status)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise ValueError(f"count must be a whole number or None, got {count!r}")
        if count is not None and count < 0:
            raise ValueError(f"count must not be negative, got {count!r}")
        with self._token_lock:
            self._token_fault, self._token_faults_left = fault, count

    def take_token_fault(self) -> TokenFault | None:
        """The fault for the request being answered now, if one is still due."""
        with self._token_lock:
            fault, left = self._token_fault, self._token_faults_left
            if fault is None or left == 0:
                return None
            if left is not None:
                self._token_faults_left = left - 1
            return fault

    @property
    def fail_status(self) -> int | None:
        """When set, document requests get this HTTP status and an Entra-style error body."""
        return self._fail_status

    @fail_status.setter
    def fail_status(self, status: int | None) -> None:
        if status is not None:
            _check_status("fail_status", status, none_ok=True)
        self._fail_status = status

    @property
    def document_fault(self) -> DocumentFault | None:
        """When set, documents are answered 200 with a broken body of this kind."""
        return self._document_fault

    @document_fault.setter
    def document_fault(self, fault: DocumentFault | None) -> None:
        if fault is not None and fault not in get_args(DocumentFault):
            raise ValueError(
                f"document_fault must be one of {get_args(DocumentFault)}, got {fault!r}"
            )
        self._document_fault = fault

    @property
    def delay(self) -> float:
        """Seconds every document and token request waits before it is answered."""
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"delay must be a number of seconds, got {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be finite and not negative, got {seconds!r}")
        self._delay = float(seconds)


@dataclass(frozen=True, slots=True)
class Replay:
    """Documents to serve verbatim for one (tenant, version) in place of generated ones."""

    metadata: Mapping[str, Any]
    jwks: Mapping[str, Any]


class EmulatorState:
    """Keys, replayed documents, request counts and faults of one emulator."""

    def __init__(self, key: EmulatorKey) -> None:
        self._lock = threading.Lock()
        self._current = key
        self._published: tuple[EmulatorKey, ...] = (key,)
        self._replays: dict[tuple[str, str], Replay] = {}
        self._counts: Counter[tuple[str, str, str, str | None]] = Counter()
        self._token_requests = 0
        self.faults = Faults()
        self.registry = Registry()
        self.users = UserDirectory()
        #: Outstanding authorization codes and refresh tokens.
        self.grants = GrantStore()
        #: Seconds an issued token lives: its ``exp - iat`` and the response's ``expires_in``.
        self.token_lifetime = DEFAULT_TOKEN_LIFETIME
        #: The emulator's own base URL, known once the socket is bound.
        self.instance = ""
        #: The one tenant whose token endpoint answers (lower-case GUID).
        self.tenant_id = ""
        #: Other tenant GUIDs that exist: their discovery documents are served too.
        self._other_tenants: frozenset[str] = frozenset()
        #: Every tenant GUID exists (for tests that mint tokens of arbitrary tenants).
        self.any_tenant = False
        #: Set while stop() runs, so that delayed requests give up waiting.
        self.stopping = False
        #: Token versions whose metadata and keys are published; others answer 404.
        self.served_versions: frozenset[str] = frozenset({"1.0", "2.0"})

    @property
    def current_key(self) -> EmulatorKey:
        return self._current

    @property
    def published_keys(self) -> tuple[EmulatorKey, ...]:
        return self._published

    def rotate(self, key: EmulatorKey, *, keep_previous: bool) -> None:
        """Publish ``key`` and sign with it; optionally unpublish the key it replaces."""
        with self._lock:
            previous = self._current
            kept = self._published if keep_previous else self._without(previous.kid)
            self._published = (*kept, key)
            self._current = key

    def publish(self, key: EmulatorKey) -> None:
        with self._lock:
            self._published = (*self._published, key)

    def unpublish(self, kid: str) -> None:
        with self._lock:
            remaining = self._without(kid)
            if len(remaining) == len(self._published):
                raise KeyError(f"no published key has kid {kid!r}")
            self._published = remaining

    def _without(self, kid: str) -> tuple[EmulatorKey, ...]:
        return tuple(key for key in self._published if key.kid != kid)

    def replay(self, segment: str, version: str, replay: Replay) -> None:
        # Deep copies: a test mutating its dict afterwards must not change what is served.
        frozen = Replay(
            metadata=copy.deepcopy(dict(replay.metadata)), jwks=copy.deepcopy(dict(replay.jwks))
        )
        with self._lock:
            self._replays = {**self._replays, (segment, version): frozen}

    def replayed(self, segment: str, version: str) -> Replay | None:
        return self._replays.get((segment, version))

    def record_fetch(
        self, kind: DocumentKind, segment: str, version: str, app_id: str | None = None
    ) -> None:
        with self._lock:
            self._counts[(kind, segment, version, app_id)] += 1

    def fetch_count(
        self,
        kind: DocumentKind,
        segment: str | None,
        version: str | None,
        app_id: str | None = None,
    ) -> int:
        """Matching fetches; ``None`` segment or version match any, ``app_id`` must equal."""
        with self._lock:
            return sum(
                count
                for (k, s, v, a), count in self._counts.items()
                if k == kind and segment in (None, s) and version in (None, v) and a == app_id
            )

    def record_token_request(self) -> None:
        with self._lock:
            self._token_requests += 1

    def token_request_count(self) -> int:
        with self._lock:
            return self._token_requests

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._token_requests = 0

    @property
    def other_tenants(self) -> frozenset[str]:
        return self._other_tenants

    def add_tenant(self, tid: str) -> None:
        with self._lock:
            self._other_tenants = self._other_tenants | {tid}

    def knows(self, tenant: Tenant) -> bool:
        """Whether Entra would find ``tenant``, or answer AADSTS90002 (tenant not found).

        The multi-tenant keywords and the personal-accounts tenant always exist; a tenant GUID
        exists if it is the emulator's own, was added, or every GUID is let exist.
        """
        tid = tenant.tid
        if tid is None or tid in (self.tenant_id, MSA_TENANT_ID) or self.any_tenant:
            return True
        return tid in self._other_tenants


def _check_status(name: str, status: int, *, none_ok: bool = False) -> None:
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        alternative = "None or " if none_ok else ""
        raise ValueError(f"{name} must be {alternative}an HTTP status 200-599, got {status!r}")
