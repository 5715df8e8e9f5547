"""The verified-token cache: a token already validated in full skips the signature next time.

An API sees the same token many times (a client reuses it for an hour), and the RSA signature
is most of what validating costs. The rules that keep this safe:

- an entry is found only by the SHA-256 digest of the whole token, never by ``kid`` or claims;
- every hit checks the lifetime again (``exp`` and ``nbf`` with the leeway), so an entry never
  outlives its token;
- every hit checks that the key which verified the token is still published: when a refresh
  drops a key, the tokens it signed stop being honoured;
- the cache holds at most ``maxsize`` entries (least recently used go first, 1/64 of them at
  a time), and only successes: a token that failed is checked in full every time;
- ``token_cache_size=0`` turns it off.
"""

from __future__ import annotations

from itertools import islice
from typing import NamedTuple

from entra_guard.discovery import KeySet, KeyStore, SigningKey
from entra_guard.principal import EntraPrincipal

__all__ = ["VerifiedToken", "VerifiedTokenCache"]


class VerifiedToken(NamedTuple):
    """One validated token: what a hit needs, and nothing else (the version and ``exp`` are the
    principal's). A tuple because one is built, and kept, for every fresh token."""

    principal: EntraPrincipal
    keyset: KeySet
    key: SigningKey
    not_before: float  # the later of nbf and iat, or -inf


class VerifiedTokenCache:
    """Bounded memory of fully validated tokens; see the module docstring for the rules."""

    def __init__(self, maxsize: int, *, leeway: float) -> None:
        # A dict keeps insertion order: a hit re-inserts its entry at the end, so the first
        # entries are the least recently used. (A plain dict: an OrderedDict costs about 80
        # more bytes per entry.)
        self._entries: dict[bytes, VerifiedToken] = {}
        self._maxsize = maxsize
        # A full cache drops its least recently used 1/64 at once: reaching the first entries
        # walks past the slots that earlier drops emptied, paid once per batch this way.
        self._drop = max(1, maxsize // 64)
        self._leeway = leeway

    def get(self, digest: bytes, *, now: float, keys: KeyStore) -> EntraPrincipal | None:
        """The principal of a still-valid entry, or ``None`` (and the entry is gone).

        ``digest`` is the SHA-256 of the whole token's bytes (the validator computes it).
        """
        entries = self._entries
        entry = entries.pop(digest, None)
        if entry is None:
            return None
        principal, leeway = entry.principal, self._leeway
        if (
            now < principal.expires_on + leeway
            and entry.not_before <= now + leeway
            and keys.is_current(principal.version, entry.keyset, entry.key)
        ):
            entries[digest] = entry  # now the most recently used
            return principal
        return None  # and it stays out

    def forget(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def put(self, digest: bytes, entry: VerifiedToken) -> None:
        entries = self._entries
        entries[digest] = entry
        if len(entries) > self._maxsize:
            for oldest in list(islice(entries, self._drop)):
                del entries[oldest]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def maxsize(self) -> int:
        return self._maxsize
