"""The soak's traffic: the tokens it sends, which status each answer should have, and the tally.

Token categories, and what ``GET /orders`` / ``POST /orders`` must answer (``/health`` is public
and must answer 200 whatever is sent):

- *valid*: app-only tokens with the role ``Orders.Read`` and delegated tokens with the scope
  ``Orders.Read``, v1 and v2, signed by a key the tenant publishes: 200 / 403 (a reader may not
  create orders);
- *valid, removed key*: the same tokens once their signing key has left the JWKS: 401, after the
  API's next refresh of the keys. Until then they may still pass (see ``KeyTimeline``);
- *expired* (``exp`` an hour ago), *forged* (signed by a key nobody publishes, under the
  tenant's own ``kid``), *garbage* (random printable strings) and *no token*: 401.

Two windows follow from the key policy (``refresh_interval``, ``min_refresh_interval``) and are
tolerated, counted in rows of their own, never folded into the plain categories:

- after a key is removed, the API keeps honouring it until its next refresh: 200 (403) or 401;
- after a rotation, tokens signed by the new key name a ``kid`` the API has not fetched yet; it
  forces a refresh for an unknown ``kid`` at most once per ``min_refresh_interval``, so they may
  be refused 401 "key not found" until that refresh. Only that 401 is tolerated there.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from entra_guard.testing import EmulatorKey, EntraEmulator

__all__ = [
    "KEY_NOT_FOUND",
    "MIX_TEXT",
    "REFRESH_JITTER",
    "ROW_ORDER",
    "WINDOW_SLACK",
    "Expectation",
    "KeyLife",
    "KeyTimeline",
    "Kind",
    "Pick",
    "Pools",
    "Route",
    "SoakToken",
    "Tally",
    "describe_body",
    "expect",
    "garbage",
    "mint_pools",
    "pick",
    "row_title",
]

T = TypeVar("T")
Kind = Literal["valid", "expired", "forged", "garbage", "none"]
Route = Literal["GET /orders", "POST /orders", "GET /health"]

ROLE: Final = "Orders.Read"
#: ``KeyStore`` adds up to this share to each refresh interval, so replicas do not align.
REFRESH_JITTER: Final = 0.05
#: Event-loop lag on either side: a window closes this much after the policy says it may.
WINDOW_SLACK: Final = 0.5
#: The 401 description of a token whose ``kid`` is not in the API's key set.
KEY_NOT_FOUND: Final = "The signature key was not found"
_VERSIONS: Final = ("1.0", "2.0")
# Per key and version: tokens clients hold and reuse (cache hits), as real clients do.
_APP_TOKENS = 6
_USER_TOKENS = 3
_BAD_TOKENS = 4
_EXPIRED_BY = 2 * 3600.0  # well past the API's 60 s leeway
_GARBAGE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F))  # visible ASCII: a header can carry it
_MAX_GARBAGE = 600
_MAX_EXAMPLES = 12
_EXAMPLES_PER_KIND = 3
_MAX_DESCRIPTIONS = 24
_OTHER = "(other descriptions)"
# Latency histogram resolution: bounded memory however long the run.
_LATENCY_STEP_MS = 0.1

# Traffic mix, in percent of requests.
_KIND_MIX: Final[tuple[tuple[Kind, int], ...]] = (
    ("valid", 60),
    ("expired", 10),
    ("forged", 10),
    ("garbage", 10),
    ("none", 10),
)
#: Of the valid tokens: the share signed by earlier keys (clients holding old tokens).
OLDER_KEY_SHARE: Final = 0.25
_ROUTE_MIX: Final[tuple[tuple[Route, int], ...]] = (
    ("GET /orders", 80),
    ("POST /orders", 10),
    ("GET /health", 10),
)
MIX_TEXT: Final = (
    ", ".join(f"{kind} {share}%" for kind, share in _KIND_MIX)
    + f" (of valid: {OLDER_KEY_SHARE:.0%} signed by earlier keys); "
    + ", ".join(f"{route} {share}%" for route, share in _ROUTE_MIX)
)


@dataclass(frozen=True, slots=True)
class SoakToken:
    """A token and what the soak knows about it. ``ref`` identifies it in reports instead of
    the token itself, which is never printed."""

    value: str
    kid: str
    version: str
    ref: str


@dataclass(slots=True)
class Pools:
    """The tokens handed out; replaced as a whole at each rotation (one event loop, no locks)."""

    current: tuple[SoakToken, ...]
    expired: tuple[SoakToken, ...]
    forged: tuple[SoakToken, ...]
    #: Valid tokens of every earlier signing key, removed or not.
    older: tuple[SoakToken, ...] = ()


def _token(value: str, kid: str, version: str) -> SoakToken:
    return SoakToken(value, kid, version, hashlib.sha256(value.encode()).hexdigest()[:10])


def mint_pools(
    idp: EntraEmulator, *, key: EmulatorKey, forger: EmulatorKey, audience: str, lifetime: float
) -> tuple[tuple[SoakToken, ...], tuple[SoakToken, ...], tuple[SoakToken, ...]]:
    """Valid, expired and forged tokens for signing key ``key`` (RSA signing: run in a thread)."""
    valid: list[SoakToken] = []
    expired: list[SoakToken] = []
    forged: list[SoakToken] = []
    now = time.time()
    for version in _VERSIONS:
        for _ in range(_APP_TOKENS):
            value = idp.issue_token(
                version=version, audience=audience, roles=[ROLE], key=key, lifetime=lifetime
            )
            valid.append(_token(value, key.kid, version))
        for _ in range(_USER_TOKENS):
            value = idp.issue_token(
                version=version,
                audience=audience,
                app_only=False,
                scopes=[ROLE],
                key=key,
                lifetime=lifetime,
            )
            valid.append(_token(value, key.kid, version))
        # The tenant's kid (and x5t, which v1 tokens carry) on a signature by another key.
        claimed = {"kid": key.kid, "x5t": key.x5t} if version == "1.0" else {"kid": key.kid}
        for _ in range(_BAD_TOKENS):
            value = idp.issue_token(
                version=version, audience=audience, roles=[ROLE], key=key, now=now - _EXPIRED_BY
            )
            expired.append(_token(value, key.kid, version))
            value = idp.issue_token(
                version=version, audience=audience, roles=[ROLE], key=forger, headers=claimed
            )
            forged.append(_token(value, key.kid, version))
    return tuple(valid), tuple(expired), tuple(forged)


def garbage(rng: random.Random) -> str:
    """A random printable string: sometimes one blob, sometimes three dot-separated parts."""
    length = rng.randint(1, _MAX_GARBAGE)
    text = "".join(rng.choices(_GARBAGE_CHARS, k=length))
    if rng.random() < 0.5 and length >= 3:
        first, second = sorted(rng.sample(range(1, length), 2)) if length > 3 else (1, 2)
        text = f"{text[:first]}.{text[first:second]}.{text[second:]}"
    return text


@dataclass(frozen=True, slots=True)
class Pick:
    kind: Kind
    route: Route
    token: SoakToken | None  # None for garbage (the text is in ``text``) and no token
    text: str | None  # what goes after "Bearer ", or None for no Authorization header


def pick(rng: random.Random, pools: Pools) -> Pick:
    route = _weighted(rng, _ROUTE_MIX)
    kind = _weighted(rng, _KIND_MIX)
    token: SoakToken | None = None
    if kind == "valid":
        older = pools.older and rng.random() < OLDER_KEY_SHARE
        token = rng.choice(pools.older if older else pools.current)
    elif kind == "expired":
        token = rng.choice(pools.expired)
    elif kind == "forged":
        token = rng.choice(pools.forged)
    elif kind == "garbage":
        return Pick(kind, route, None, garbage(rng))
    else:
        return Pick(kind, route, None, None)
    return Pick(kind, route, token, token.value)


def _weighted(rng: random.Random, mix: Sequence[tuple[T, int]]) -> T:
    roll = rng.randrange(sum(share for _, share in mix))
    for name, share in mix:
        if roll < share:
            return name
        roll -= share
    return mix[-1][0]


# -- what each answer should be ------------------------------------------------------------------


@dataclass(slots=True)
class KeyLife:
    kid: str
    published_at: float  # soak clock; -inf for the key the API started with
    removed_at: float | None = None


@dataclass(slots=True)
class KeyTimeline:
    """When each signing key was published and removed, on the soak's clock (seconds)."""

    #: How long after a removal the API may still honour the key (its next refresh, at most).
    removal_window: float
    #: How long after a rotation the API may not know the new key yet.
    new_key_window: float
    keys: dict[str, KeyLife] = field(default_factory=dict)
    current: str = ""

    def published(self, kid: str, at: float) -> None:
        self.keys[kid] = KeyLife(kid, at)
        self.current = kid

    def removed(self, kid: str, at: float) -> None:
        self.keys[kid].removed_at = at


@dataclass(frozen=True, slots=True)
class Expectation:
    row: str  # the table row (token category)
    statuses: frozenset[int]
    #: A 401 is acceptable only with the "key not found" description (the windows).
    tolerated_401_key_not_found: bool = False
    #: In a window: the key, and how long after its rotation or removal the request was sent.
    kid: str = ""
    since: float = 0.0

    def accepts(self, status: int, description: str) -> bool:
        if status in self.statuses:
            return True
        return self.tolerated_401_key_not_found and status == 401 and description == KEY_NOT_FOUND


_ROW_TEXT: Final = {
    "valid": "valid, current key",
    "valid-older": "valid, earlier key still published",
    "valid-new": "valid, key rotated in < {new:g} s ago",
    "valid-removing": "valid, key removed < {removal:g} s ago",
    "valid-removed": "valid, removed key",
    "expired": "expired",
    "forged": "forged (tenant's kid, other key)",
    "garbage": "garbage",
    "none": "no token",
}
ROW_ORDER: Final = tuple(_ROW_TEXT)


def row_title(row: str, timeline: KeyTimeline) -> str:
    return _ROW_TEXT[row].format(new=timeline.new_key_window, removal=timeline.removal_window)


def expect(pick_: Pick, timeline: KeyTimeline, sent: float, received: float) -> Expectation:
    """The acceptable statuses of one request, given when it was sent and answered."""
    if pick_.route == "GET /health":
        return Expectation("health", frozenset({200}))
    granted = 200 if pick_.route == "GET /orders" else 403
    if pick_.kind != "valid" or pick_.token is None:
        return Expectation(pick_.kind, frozenset({401}))
    life = timeline.keys[pick_.token.kid]
    if life.removed_at is not None and received >= life.removed_at:
        if sent >= life.removed_at + timeline.removal_window:
            return Expectation("valid-removed", frozenset({401}))
        since = sent - life.removed_at
        return Expectation("valid-removing", frozenset({granted, 401}), kid=life.kid, since=since)
    if sent < life.published_at + timeline.new_key_window:
        since = sent - life.published_at
        return Expectation("valid-new", frozenset({granted}), True, kid=life.kid, since=since)
    if life.kid != timeline.current:
        return Expectation("valid-older", frozenset({granted}))
    return Expectation("valid", frozenset({granted}))


def describe_body(body: bytes) -> str:
    """The ``error_description`` of an entra-guard refusal ('' for anything else)."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    if isinstance(document, dict):
        description = document.get("error_description")
        if isinstance(description, str):
            return description[:160]
    return ""


# -- the tally ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    at: float
    row: str
    route: Route
    status: int | str
    expected: frozenset[int]
    description: str
    token: str  # ref, kid and version, or the kind: never the token itself


@dataclass(slots=True)
class Tally:
    """Everything counted during the run; bounded in memory however long it lasts."""

    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    unexpected: Counter[tuple[str, str, int | str]] = field(default_factory=Counter)
    #: When each kind of unexpected answer was first and last seen (send times).
    unexpected_span: dict[tuple[str, str, int | str], tuple[float, float]] = field(
        default_factory=dict
    )
    descriptions: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    #: Requests that got no answer, by row, route and error (``timeout``, ``ConnectError``...).
    transport: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    examples: list[Example] = field(default_factory=list)
    latency_ms: Counter[float] = field(default_factory=Counter)
    #: Per window row and key: the latest send (seconds after the event) that still got the
    #: old answer, and the earliest that got the new one (the API's switch lies in between).
    #: Keyed by row, kid and token version: each version has its own key set in the API.
    switches: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)
    #: Statuses of valid-token requests sent and answered while the IdP was down.
    during_outage: Counter[tuple[str, int]] = field(default_factory=Counter)
    requests: int = 0

    def record(
        self,
        pick_: Pick,
        expectation: Expectation,
        status: int,
        description: str,
        *,
        at: float,
        seconds: float,
    ) -> bool:
        """Count one answer; returns whether it was expected."""
        self.requests += 1
        row, route = expectation.row, pick_.route
        self.counts[row, route, status] += 1
        step = _LATENCY_STEP_MS
        self.latency_ms[math.floor(seconds * 1000 / step) * step] += 1
        seen = self.descriptions.setdefault((row, route), Counter())
        label = f"{status} {description}".strip()
        if label in seen or len(seen) < _MAX_DESCRIPTIONS:
            seen[label] += 1
        else:
            seen[_OTHER] += 1
        if expectation.kid and pick_.token is not None:
            self._switch(expectation, pick_.token.version, status)
        if expectation.accepts(status, description):
            return True
        self._unexpected(pick_, expectation, status, description, at)
        return False

    def _switch(self, expectation: Expectation, version: str, status: int) -> None:
        if status != 401 and status not in expectation.statuses:
            return  # neither the old nor the new answer: counted as unexpected instead
        key = (expectation.row, expectation.kid, version)
        last_old, first_new = self.switches.get(key, (-math.inf, math.inf))
        # A new key starts refused (401) and becomes accepted; a removed key the other way.
        refused = status == 401
        old = refused if expectation.row == "valid-new" else not refused
        if old:
            last_old = max(last_old, expectation.since)
        else:
            first_new = min(first_new, expectation.since)
        self.switches[key] = (last_old, first_new)

    def record_failure(self, pick_: Pick, expectation: Expectation, error: str, at: float) -> None:
        """A request that got no answer: a timeout or a connection error."""
        self.requests += 1
        self.transport[expectation.row, pick_.route, error] += 1
        self._unexpected(pick_, expectation, error, "", at)

    def _unexpected(
        self,
        pick_: Pick,
        expectation: Expectation,
        status: int | str,
        description: str,
        at: float,
    ) -> None:
        key = (expectation.row, pick_.route, status)
        self.unexpected[key] += 1
        first, last = self.unexpected_span.get(key, (at, at))
        self.unexpected_span[key] = (min(first, at), max(last, at))
        # A few of each kind, so that one burst does not hide the others.
        same = sum(1 for e in self.examples if (e.row, e.route, e.status) == key)
        if len(self.examples) < _MAX_EXAMPLES and same < _EXAMPLES_PER_KIND:
            token: str = pick_.kind
            if pick_.token is not None:
                ref = pick_.token
                token = f"{pick_.kind} token {ref.ref} (v{ref.version}, kid {ref.kid[:8]}...)"
            elif pick_.text is not None:
                token = f"{pick_.kind} ({len(pick_.text)} characters)"
            self.examples.append(
                Example(
                    at,
                    expectation.row,
                    pick_.route,
                    status,
                    expectation.statuses,
                    description,
                    token,
                )
            )

    def percentile_ms(self, fraction: float) -> float:
        total = sum(self.latency_ms.values())
        if not total:
            return math.nan
        rank = fraction * total
        running = 0
        for value in sorted(self.latency_ms):
            running += self.latency_ms[value]
            if running >= rank:
                return value + _LATENCY_STEP_MS
        return max(self.latency_ms) + _LATENCY_STEP_MS
