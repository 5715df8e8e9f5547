"""The verified-token cache: a token already validated in full skips the signature next time.

An API sees the same token many times (a client reuses it for an hour), and the RSA signature
is most of what validating costs. The rules that keep this safe:

- an entry is found only by the SHA-256 digest of the whole token, never by ``kid`` or claims;
- every hit checks the lifetime again (``exp`` and ``nbf`` with the leeway), so an entry never
  outlives its token;
- every hit checks that the key which verified the token is still published: when a refresh
  drops a key, the tokens it signed stop being honoured;
- the cache holds at most ``maxsize`` entries (least recently used go first), and only
  successes: a token that failed is checked in full every time;
- ``token_cache_size=0`` turns it off.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from cachetools import LRUCache

from entra_guard.config import TokenVersion
from entra_guard.discovery import KeySet, KeyStore, SigningKey
from entra_guard.principal import EntraPrincipal

__all__ = ["VerifiedToken", "VerifiedTokenCache"]


class VerifiedToken(NamedTuple):
    """One validated token; a tuple because one is built for every fresh token."""

    principal: EntraPrincipal
    version: TokenVersion
    keyset: KeySet
    key: SigningKey
    not_before: float  # the later of nbf and iat, or -inf
    expires: float


class VerifiedTokenCache:
    """Bounded memory of fully validated tokens; see the module docstring for the rules."""

    def __init__(self, maxsize: int, *, leeway: float) -> None:
        self._entries: LRUCache[bytes, VerifiedToken] = LRUCache(maxsize=maxsize)
        self._leeway = leeway

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, digest: bytes, *, now: float, keys: KeyStore) -> EntraPrincipal | None:
        """The principal of a still-valid entry, or ``None`` (and the entry is gone)."""
        try:
            entry = self._entries[digest]  # cheaper than .get() in cachetools
        except KeyError:
            return None
        leeway = self._leeway
        if (
            now < entry.expires + leeway
            and entry.not_before <= now + leeway
            and keys.is_current(entry.version, entry.keyset, entry.key)
        ):
            return entry.principal
        self._entries.pop(digest, None)
        return None

    def forget(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def put(self, digest: bytes, entry: VerifiedToken) -> None:
        self._entries[digest] = entry

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)
