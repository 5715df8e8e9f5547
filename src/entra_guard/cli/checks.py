"""``entra-guard inspect``'s checks: every rule of the validator, one by one, with the evidence.

Each check prints ``[pass]`` or ``[FAIL]``; a failed one also prints what the token says against
what this API expects (the audiences, the issuer and tenants, the times with the clock and the
leeway), so a developer sees at once why. Until the signature holds, the payload is only what
the sender wrote: the claim checks then run all the same but are marked ``[unverified]``, never
``[pass]``. Values are shown as JSON (control characters escaped) and cut to a line; a whole
token, a secret or a key is never printed.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, TextIO, TypeVar

import httpx

from entra_guard.claims import (
    check_audience,
    check_client,
    check_issuer,
    check_lifetime,
    check_permissions,
)
from entra_guard.config import MSA_TENANT_ID, EntraConfig, TokenVersion
from entra_guard.discovery import KeySet, KeyStore, SigningKey
from entra_guard.errors import EntraGuardError, InvalidToken
from entra_guard.parsing import ParsedToken
from entra_guard.validation import TokenValidator

__all__ = ["check_token", "claim_time", "when"]

T = TypeVar("T")
#: (label, text) lines printed under a check: what the token says, what is expected.
Evidence = Callable[[], Iterable[tuple[str, str]]]

_TENANT_PLACEHOLDER = "{tenantid}"
_MAX_VALUE = 100
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z, as the lifetime check reads times


async def check_token(
    parsed: ParsedToken,
    config: EntraConfig,
    *,
    now: float,
    out: TextIO,
    http_client: httpx.AsyncClient | None = None,
) -> EntraGuardError | None:
    """Run every check and print each; return the first failure of a trusted check, if any.

    ``now`` is a Unix time in seconds. Fetches the keys of ``config``'s tenant through
    ``http_client`` (one of its own when ``None``); ``KeysUnavailable`` is returned, not raised.
    """
    out.write(f"Checks (tenant {config.tenant_id}, audiences {', '.join(config.audiences)})\n")
    report = _Report(out)
    claims = parsed.payload
    validator = TokenValidator(config, key_store=KeyStore(config, http_client=http_client))
    try:
        header = report.check(
            "header",
            lambda: validator.check_header(parsed.header),
            lambda h: f"algorithm {h[1]} accepted",
        )
        version = report.check("version", lambda: validator.token_version(claims), "v{}".format)
        if header is None or version is None:
            return report.first_failure
        algorithm, alg, kid, x5t = header
        with _DiscoveryLog() as said:
            try:
                keyset, key = await validator.key_store.find_key(version, kid, x5t)
            except EntraGuardError as exc:  # no keys at all: nothing further can be checked
                metadata_url = validator.key_store.metadata_url(version)
                report.check(
                    "signing key",
                    _raising(exc),
                    str,
                    lambda: [
                        *(("identity provider", line) for line in said.lines),
                        (
                            "token",
                            f"tid {_show(claims.get('tid'))}, iss {_show(claims.get('iss'))}",
                        ),
                        ("expected", f"keys of tenant {config.tenant_id} at {metadata_url}"),
                    ],
                )
                return exc
        if key is None:
            missing = InvalidToken("key_not_found", "The signature key was not found")
            published = ", ".join(sorted(keyset.by_kid)) or "none"
            report.check(
                "signing key",
                _raising(missing),
                str,
                lambda: [
                    ("token", f"kid {_show(kid)}, x5t {_show(x5t)}"),
                    ("expected", f"a key of {keyset.jwks_uri}: {published}"),
                ],
            )
        else:
            report.check("signing key", lambda: kid or x5t, lambda k: f"{k} in {keyset.jwks_uri}")
            report.check(
                "signature",
                lambda: validator.verify_signature(
                    parsed.signing_input, parsed.signature, algorithm, alg, key
                ),
                lambda _: "valid",
            )
        if report.first_failure is not None:
            report.trusted = False
            out.write("  (no signature verified: the claims below are only what the token says)\n")
        _check_claims(
            report, claims, config=config, keyset=keyset, key=key, version=version, now=now
        )
    finally:
        await validator.aclose()
    return report.first_failure


def _check_claims(
    report: _Report,
    claims: Mapping[str, Any],
    *,
    config: EntraConfig,
    keyset: KeySet,
    key: SigningKey | None,
    version: TokenVersion,
    now: float,
) -> None:
    leeway = config.leeway
    report.check(
        "lifetime",
        lambda: check_lifetime(claims, leeway=leeway, now=now),
        lambda _: f"within exp/nbf/iat, leeway {leeway:g} s",
        lambda: _lifetime_evidence(claims, leeway, now),
    )
    issuer_evidence = functools.partial(_issuer_evidence, claims, config, keyset, key)
    if key is None:
        report.note("issuer", "not checked without the signing key", issuer_evidence)
    else:
        report.check(
            "issuer",
            lambda: check_issuer(claims, config=config, keyset=keyset, key=key),
            lambda _: str(claims.get("iss")),
            issuer_evidence,
        )
    report.check(
        "audience",
        lambda: check_audience(claims, config),
        lambda _: str(claims.get("aud")),
        lambda: [
            ("token", f"aud {_claim(claims, 'aud')}"),
            ("expected", f"one of {', '.join(config.audiences)}"),
        ],
    )
    client_claim = "azp" if version == "2.0" else "appid"
    client_id = report.check(
        "client",
        lambda: check_client(claims, version),
        str,
        lambda: [
            ("token", f"{client_claim} {_claim(claims, client_claim)}"),
            ("expected", f"{client_claim}: the calling application's id (an ID token has none)"),
        ],
    )
    if client_id is not None:
        report.check(
            "permissions",
            lambda: check_permissions(claims, config=config, version=version, client_id=client_id),
            lambda p: "grants " + (" ".join(sorted(p.roles | p.scopes)) or "nothing"),
            lambda: _permissions_evidence(claims, config, client_id),
        )


class _DiscoveryLog(logging.Handler):
    """Collects what discovery logs while inspect asks for keys, to print it as evidence.

    Left to Python's last-resort handler, those lines would reach stderr unexplained ("retrying in
    1 s" from a command that is about to exit).
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._logger = logging.getLogger("entra_guard.discovery")
        self._propagate = self._logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _DiscoveryLog:
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        self._logger.propagate = self._propagate


class _Report:
    """Prints each check's outcome; remembers the first failure of a trusted check."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        #: False once the signature has not held: outcomes are then only what they would be.
        self.trusted = True
        self.first_failure: EntraGuardError | None = None

    def check(
        self,
        name: str,
        action: Callable[[], T],
        passed: Callable[[T], str],
        evidence: Evidence | None = None,
    ) -> T | None:
        try:
            result = action()
        except EntraGuardError as exc:
            outcome = f"{exc.description} ({exc.reason})"
            if self.trusted:
                self._line("FAIL", name, outcome)
                self.first_failure = self.first_failure or exc
            else:
                self._line("unverified", name, f"would fail: {outcome}")
            if evidence is not None:
                self._evidence(evidence)
            return None
        if self.trusted:
            self._line("pass", name, passed(result))
        else:
            self._line("unverified", name, f"would pass: {passed(result)}")
        return result

    def note(self, name: str, text: str, evidence: Evidence) -> None:
        self._line("unverified", name, text)
        self._evidence(evidence)

    def _line(self, status: str, name: str, text: str) -> None:
        self.out.write(f"  [{status}] {name:<12} {text}\n")

    def _evidence(self, evidence: Evidence) -> None:
        for label, text in evidence():
            self.out.write(f"      {label:<9} {text}\n")


def _lifetime_evidence(
    claims: Mapping[str, Any], leeway: float, now: float
) -> list[tuple[str, str]]:
    said = []
    bounds = []
    for name in ("exp", "nbf", "iat"):
        value = claim_time(claims, name)
        if value is None:
            said.append(f"{name} {_claim(claims, name)}")
            continue
        said.append(f"{name} {when(value, now)}")
        if name == "exp":
            bounds.append(f"before exp + leeway = {_moment(value + leeway)}")
        else:
            bounds.append(f"at or after {name} - leeway = {_moment(value - leeway)}")
    if "exp" not in claims:
        bounds.insert(0, "an exp (required)")
    expected = f"now {_moment(now)}, leeway {leeway:g} s: " + ("; ".join(bounds) or "-")
    return [("token", ", ".join(said)), ("expected", expected)]


def _issuer_evidence(
    claims: Mapping[str, Any], config: EntraConfig, keyset: KeySet, key: SigningKey | None
) -> list[tuple[str, str]]:
    tid = claims.get("tid")
    tenant = tid if isinstance(tid, str) else _TENANT_PLACEHOLDER
    issuer = keyset.issuer.replace(_TENANT_PLACEHOLDER, tenant)
    expected = f"iss {_show(issuer)}"
    if key is not None and key.issuer is not None:
        key_issuer = key.issuer.replace(_TENANT_PLACEHOLDER, tenant)
        if key_issuer != issuer:
            expected += f" and the signing key's issuer, {_show(key_issuer)}"
    said = f"iss {_claim(claims, 'iss')}, tid {_claim(claims, 'tid')}"
    return [("token", said), ("expected", f"{expected}, tid {_tenants(config)}")]


def _tenants(config: EntraConfig) -> str:
    if config.tenant_id == "consumers":
        return f"{MSA_TENANT_ID} (personal Microsoft accounts)"
    if not config.is_multi_tenant:
        return config.tenant_id
    if config.allow_any_tenant:
        return "any tenant (allow_any_tenant)"
    return "one of " + ", ".join(sorted(config.allowed_tenants))


def _permissions_evidence(
    claims: Mapping[str, Any], config: EntraConfig, client_id: str
) -> list[tuple[str, str]]:
    said = (
        f"client {_show(client_id)}, roles {_claim(claims, 'roles')}, scp {_claim(claims, 'scp')}"
    )
    expected = []
    if config.allowed_client_ids:
        expected.append("client one of " + ", ".join(sorted(config.allowed_client_ids)))
    if not config.allow_tokens_without_permissions:
        expected.append("at least one app role (roles) or scope (scp)")
    return [("token", said), ("expected", "; ".join(expected) or "anything")]


def when(value: float, now: float) -> str:
    """``value`` (a Unix time) as a UTC moment and how far it is from ``now``."""
    delta = value - now
    span = _span(abs(delta))
    return f"{_moment(value)} ({'in ' + span if delta > 0 else span + ' ago'})"


def _moment(value: float) -> str:
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):  # beyond what a datetime holds: say it as is
        return f"Unix time {value:.0f}"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def claim_time(claims: Mapping[str, Any], name: str) -> float | None:
    """The claim as a time, if it is one (a JSON number from 1970 to 9999)."""
    value = claims.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME:
        return value
    return None


def _claim(claims: Mapping[str, Any], name: str) -> str:
    return _show(claims[name]) if name in claims else "absent"


def _show(value: object) -> str:
    """A value for one line: JSON, so control characters cannot reach the terminal."""
    text = json.dumps(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def _raising(exc: EntraGuardError) -> Callable[[], None]:
    def action() -> None:
        raise exc

    return action
