"""What every section shares: timing, token minting, and configuration that follows the library.

Timing: each case runs a warm-up batch, then ``repeats`` timed batches; the cases of one
comparison take turns batch by batch (in a rotating order), so drift in the machine's speed
lands on all of them alike. The figure is the median time per operation over the batches.

Tokens: a benchmark that needs a new token for every operation gets tokens the emulator would
issue, differing only in their unique token id (``uti``), signed with the emulator's current
key. Signing dominates (about half a millisecond each), so large batches are signed by one
worker process per core.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from entra_guard import EntraConfig
from entra_guard.config import TokenVersion
from entra_guard.testing import EntraEmulator

__all__ = [
    "BENCH_ROLE",
    "Batch",
    "Context",
    "Cursor",
    "Options",
    "Timing",
    "cache_entries",
    "cache_setting",
    "compare",
    "config_for",
    "default_cache_size",
    "mint_tokens",
    "mint_tokens_to_file",
    "rss_bytes",
    "split_token",
    "supports_token_cache",
    "timed",
]

#: The app role every benchmark token carries and every guarded route requires (the example
#: API's): tokens with neither roles nor scopes grant nothing and are refused (403).
BENCH_ROLE = "Orders.Read"
_CACHE_FIELD = "token_cache_size"
# Below this, starting worker processes costs more than it saves.
_PARALLEL_FROM = 400
_CHUNK = 1000

T = TypeVar("T")
#: Runs ``n`` operations of one case.
Batch = Callable[[int], Awaitable[None]]


# -- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """Nanoseconds per operation: the median over the timed batches, and each batch's figure."""

    median_ns: float
    runs_ns: tuple[float, ...]
    batch: int

    @property
    def us(self) -> float:
        return self.median_ns / 1000

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median: how far one run's figure can be trusted."""
        if len(self.runs_ns) < 4:
            return 0.0
        low, _, high = statistics.quantiles(self.runs_ns, n=4)
        return (high - low) / self.median_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_us": round(self.us, 3),
            "runs_us": [round(r / 1000, 3) for r in self.runs_ns],
            "batch": self.batch,
            "iqr_relative": round(self.spread, 4),
        }


async def compare(
    cases: Mapping[str, Batch], *, batch: int, repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Time each case as ``repeats`` batches of ``batch`` operations, taking turns."""
    for run in cases.values():
        for _ in range(warmup):
            await run(batch)
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        gc.collect()  # a collection owed by one case must not be paid inside the next one's batch
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter_ns()
            await cases[name](batch)
            samples[name].append((time.perf_counter_ns() - started) / batch)
    return {
        name: Timing(statistics.median(runs), tuple(runs), batch) for name, runs in samples.items()
    }


class Cursor(Generic[T]):
    """Hands out each item once. Running out is a bug in the benchmark's sizing, never a wrap:
    a token seen twice would be a cache hit in a case that claims to measure fresh tokens."""

    def __init__(self, items: Sequence[T]) -> None:
        self._items = items
        self._next = 0

    def take(self, count: int) -> Sequence[T]:
        end = self._next + count
        if end > len(self._items):
            raise RuntimeError(f"only {len(self._items)} items; the benchmark asked for {end}")
        chunk = self._items[self._next : end]
        self._next = end
        return chunk


# -- configuration that follows the library as it changes -------------------------------------


def _cache_field() -> dataclasses.Field[Any] | None:
    return next((f for f in dataclasses.fields(EntraConfig) if f.name == _CACHE_FIELD), None)


def supports_token_cache() -> bool:
    """Whether this entra-guard has ``EntraConfig.token_cache_size`` (the verified-token cache)."""
    return _cache_field() is not None


def default_cache_size() -> int | None:
    found = _cache_field()
    if found is None or not isinstance(found.default, int):
        return None
    return found.default


def cache_setting(size: int | None) -> dict[str, Any]:
    """``token_cache_size`` as a config keyword, or nothing (default size, or no cache at all)."""
    if size is None or not supports_token_cache():
        return {}
    return {_CACHE_FIELD: size}


def config_for(idp: EntraEmulator, *, token_cache_size: int | None = None) -> EntraConfig:
    """A config trusting the emulator; ``token_cache_size`` is applied where the field exists."""
    return idp.config(**cache_setting(token_cache_size))


def cache_entries(validator: object) -> int | None:
    """Entries in the validator's token cache, if it exposes something sized named *cache*."""
    for name in sorted(dir(validator)):
        if "cache" not in name.lower() or name.startswith("__"):
            continue
        value = getattr(validator, name, None)
        if isinstance(value, Sized) and not isinstance(value, (str, bytes)):
            return len(value)
    return None


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/statm`` (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# -- tokens ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def split_token(token: str) -> tuple[bytes, bytes]:
    """The signing input and the raw signature of a compact JWS."""
    signing_input, _, signature = token.rpartition(".")
    return signing_input.encode("ascii"), _b64url_decode(signature)


@dataclass(frozen=True, slots=True)
class _Template:
    header_segment: str
    claims: dict[str, Any]
    private_pem: bytes
    #: Makes this run's ``uti`` values unlike any other run's.
    salt: bytes


# Parsing a PEM key costs more than a signature: each process keeps the last one it loaded.
_loaded_keys: dict[bytes, rsa.RSAPrivateKey] = {}


def _load_key(private_pem: bytes) -> rsa.RSAPrivateKey:
    key = _loaded_keys.get(private_pem)
    if key is None:
        loaded = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise TypeError("the emulator's key is not an RSA key")
        _loaded_keys.clear()
        key = _loaded_keys[private_pem] = loaded
    return key


def _sign_range(template: _Template, start: int, stop: int) -> list[str]:
    key = _load_key(template.private_pem)
    tokens = []
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    for index in range(start, stop):
        claims = {**template.claims, "uti": _b64url(template.salt + index.to_bytes(8, "big"))}
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{template.header_segment}.{payload}"
        signature = key.sign(signing_input.encode("ascii"), pkcs1, sha256)
        tokens.append(f"{signing_input}.{_b64url(signature)}")
    return tokens


def _template(idp: EntraEmulator, version: TokenVersion) -> _Template:
    issued = idp.issue_token(version=version, roles=[BENCH_ROLE])
    header_segment, payload_segment, _ = issued.split(".")
    return _Template(
        header_segment=header_segment,
        claims=json.loads(_b64url_decode(payload_segment)),
        private_pem=idp.current_key.private_pem(),
        salt=os.urandom(8),
    )


def _mint_chunks(idp: EntraEmulator, count: int, version: TokenVersion) -> Iterator[list[str]]:
    template = _template(idp, version)
    bounds = [(start, min(start + _CHUNK, count)) for start in range(0, count, _CHUNK)]
    if count < _PARALLEL_FROM:
        for start, stop in bounds:
            yield _sign_range(template, start, stop)
        return
    # spawn, not fork: this process runs the emulator's server thread, and forking a process
    # with threads can copy a lock that is held forever in the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=os.cpu_count() or 1,
        mp_context=context,
        initializer=_load_key,
        initargs=(template.private_pem,),
    ) as pool:
        futures = [pool.submit(_sign_range, template, start, stop) for start, stop in bounds]
        for future in futures:
            yield future.result()


def mint_tokens(idp: EntraEmulator, count: int, *, version: TokenVersion = "2.0") -> list[str]:
    """``count`` distinct valid access tokens of the emulator's tenant, with ``BENCH_ROLE``."""
    return [token for chunk in _mint_chunks(idp, count, version) for token in chunk]


def mint_tokens_to_file(
    idp: EntraEmulator, count: int, path: Path, *, version: TokenVersion = "2.0"
) -> None:
    """The same, one token per line, written as they are signed (100k tokens are ~120 MB)."""
    with path.open("w", encoding="ascii") as out:
        for chunk in _mint_chunks(idp, count, version):
            out.write("\n".join(chunk))
            out.write("\n")


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """``run()`` and the seconds it took."""
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


# -- what the sections share ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False
    #: Seconds of load per app and round, and rounds, in the HTTP section.
    http_seconds: float = 2.0
    http_rounds: int = 5
    http_connections: int = 50
    #: Distinct tokens validated in the memory section.
    memory_tokens: int = 100_000

    def scaled(self, full: int, quick: int) -> int:
        return quick if self.quick else full


class Context:
    """One emulator for the run, its tokens, and notes on anything odd, for the report."""

    def __init__(self, idp: EntraEmulator, options: Options) -> None:
        self.idp = idp
        self.options = options
        self.notes: list[str] = []
        self._fresh: list[str] = []
        self._token: str | None = None

    @property
    def token(self) -> str:
        """The repeated token: one valid app-only v2 token with ``BENCH_ROLE``."""
        if self._token is None:
            self._token = self.idp.issue_token(roles=[BENCH_ROLE])
        return self._token

    def fresh_tokens(self, count: int) -> list[str]:
        """``count`` distinct tokens, the same list for every caller: each cache sees each once.

        Callers that share the list must not share a validator.
        """
        if len(self._fresh) < count:
            self._fresh += mint_tokens(self.idp, count - len(self._fresh))
        return self._fresh[:count]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
