"""Attack tokens, one named case each, through the middleware: the status and the refusal
*reason* are exact (a token refused for the wrong reason is a rule that went unchecked), never a
500.

Each case builds its token from the emulator (a real tenant key, or an attacker's key) at a fixed
time ``NOW`` and sends it over the ASGI interface to a middleware whose validator runs on that
same fixed clock, so the lifetime cases sit exactly on the leeway boundary. The test also asserts
that nothing was logged as an unexpected error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from entra_guard import AuthOutcome, EntraAuthMiddleware, TokenValidator
from entra_guard.testing import REMOVE, EntraEmulator
from tests.asgi import get_with_token
from tests.docserver import DocumentServer
from tests.support import assemble, b64, segments

OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"
LEEWAY = 60
#: The moment every token is issued at and every validation runs at (Unix seconds).
NOW = 1_800_000_000


def issue(idp: EntraEmulator, **options: Any) -> str:
    """An emulator token issued at ``NOW`` (an hour's lifetime) unless ``options`` say else."""
    options.setdefault("now", NOW)
    return idp.issue_token(**options)


def hs256_with_public_key(idp: EntraEmulator) -> str:
    header, payload, _ = segments(issue(idp, roles=["r"]))
    header["alg"] = "HS256"
    pem = idp.current_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = assemble(header, payload, "x").rsplit(".", 1)[0]
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def attacker(idp: EntraEmulator, **headers: Any) -> str:
    """Signed by a key that is not the tenant's, under the tenant's kid unless overridden."""
    key = EntraEmulator.generate_key()
    return issue(idp, roles=["r"], key=key, headers={"kid": idp.current_key.kid, **headers})


def tampered(idp: EntraEmulator) -> str:
    header, payload, signature = segments(issue(idp, roles=["Orders.Read"]))
    return assemble(header, {**payload, "roles": ["Orders.Admin"]}, signature)


def duplicate_member(idp: EntraEmulator) -> str:
    header, payload, signature = issue(idp, roles=["r"]).split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    doubled = raw[:-1] + b', "roles": ["Orders.Admin"]}'
    return f"{header}.{b64(doubled)}.{signature}"


def nan_member(idp: EntraEmulator) -> str:
    header, payload, signature = issue(idp, roles=["r"]).split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    with_nan = raw[:-1] + b', "pad": NaN}'
    return f"{header}.{b64(with_nan)}.{signature}"


def claims(**changes: Any) -> Callable[[EntraEmulator], str]:
    return lambda idp: issue(idp, roles=["r"], claims=changes)


def at(exp: int | None = None, nbf: int | None = None) -> Callable[[EntraEmulator], str]:
    """A token whose ``exp`` (issued an hour before) or ``nbf`` is this many seconds from NOW."""

    def build(idp: EntraEmulator) -> str:
        changes: dict[str, Any] = {}
        if exp is not None:
            changes.update(exp=NOW + exp, nbf=NOW + exp - 3600, iat=NOW + exp - 3600)
        if nbf is not None:
            changes["nbf"] = NOW + nbf
        return issue(idp, roles=["r"], claims=changes)

    return build


@dataclass
class Attack:
    name: str
    token: Callable[[EntraEmulator], str | bytes]
    status: int
    #: The refusal's reason code (``AuthOutcome.reason``), or "authenticated".
    reason: str
    config: dict[str, Any] = field(default_factory=dict)


def alg_none(signature: str) -> Callable[[EntraEmulator], str]:
    def build(idp: EntraEmulator) -> str:
        header, payload, _ = segments(issue(idp, roles=["r"]))
        return assemble({**header, "alg": "none"}, payload, signature)

    return build


ATTACKS = [
    Attack("control: a valid token", lambda idp: issue(idp, roles=["r"]), 200, "authenticated"),
    Attack("alg none, empty signature", alg_none(""), 401, "malformed_token"),
    Attack("alg none, with a signature", alg_none("c2ln"), 401, "algorithm_not_allowed"),
    Attack("HS256 keyed with the tenant's public key", hs256_with_public_key, 401, "algorithm_not_allowed"),
    Attack("valid signature by a key not the tenant's", attacker, 401, "invalid_signature"),
    Attack("attacker's key under its own kid", lambda idp: attacker(idp, kid="attacker-key"), 401, "key_not_found"),
    Attack("jwk header injection", lambda idp: attacker(idp, jwk=EntraEmulator.generate_key().public_jwk()), 401, "invalid_signature"),
    Attack("x5c header injection", lambda idp: attacker(idp, x5c=EntraEmulator.generate_key().public_jwk()["x5c"]), 401, "invalid_signature"),
    Attack("tampered payload", tampered, 401, "invalid_signature"),
    Attack("another tenant's token", lambda idp: issue(idp, roles=["r"], tenant_id=OTHER_TENANT), 401, "invalid_issuer"),
    Attack("tid disagreeing with iss", claims(tid=OTHER_TENANT), 401, "tenant_not_allowed"),
    Attack("multi-tenant, tid disagreeing with iss", claims(tid=OTHER_TENANT), 401, "invalid_issuer",
           {"tenant_id": "organizations", "allowed_tenants": [OTHER_TENANT]}),
    Attack("multi-tenant, tenant not allowed", lambda idp: issue(idp, roles=["r"]), 401, "tenant_not_allowed",
           {"tenant_id": "organizations", "allowed_tenants": [OTHER_TENANT]}),
    Attack("multi-tenant, tenant allowed", lambda idp: issue(idp, roles=["r"], tenant_id=OTHER_TENANT), 200, "authenticated",
           {"tenant_id": "organizations", "allowed_tenants": [OTHER_TENANT]}),
    Attack("audience of another API", lambda idp: issue(idp, roles=["r"], audience="api://payroll"), 401, "invalid_audience"),
    Attack("Microsoft Graph audience", lambda idp: issue(idp, roles=["r"], audience="00000003-0000-0000-c000-000000000000"), 401, "graph_token"),
    Attack("Graph nonce header", lambda idp: issue(idp, roles=["r"], headers={"nonce": "abc"}), 401, "graph_token"),
    Attack("crit header", lambda idp: issue(idp, roles=["r"], headers={"crit": ["exp"]}), 401, "unsupported_header"),
    Attack("expired: exp + leeway == now", at(exp=-LEEWAY), 401, "token_expired"),
    Attack("expired, a second within the leeway", at(exp=-LEEWAY + 1), 200, "authenticated"),
    Attack("not yet valid: nbf a second beyond the leeway", at(nbf=LEEWAY + 1), 401, "token_not_yet_valid"),
    Attack("not yet valid: nbf == now + leeway", at(nbf=LEEWAY), 200, "authenticated"),
    Attack("issued in the future beyond the leeway", claims(iat=NOW + LEEWAY + 1), 401, "token_not_yet_valid"),
    Attack("nbf after exp", claims(nbf=NOW + 7200), 401, "invalid_lifetime"),
    Attack("no exp", claims(exp=REMOVE), 401, "missing_claim"),
    Attack("no tid", claims(tid=REMOVE), 401, "invalid_claim"),
    Attack("no iss", claims(iss=REMOVE), 401, "missing_claim"),
    Attack("no aud", claims(aud=REMOVE), 401, "missing_claim"),
    Attack("no azp (an ID token)", claims(azp=REMOVE), 401, "not_an_access_token"),
    Attack("no ver", claims(ver=REMOVE), 401, "version_not_accepted"),
    Attack("exp as a string", claims(exp="9999999999"), 401, "invalid_claim"),
    Attack("exp as a boolean", claims(exp=True), 401, "invalid_claim"),
    Attack("exp as a 400-digit integer", claims(exp=10**400), 401, "invalid_claim"),
    Attack("aud as a number", claims(aud=42), 401, "invalid_claim"),
    Attack("tid as a number", claims(tid=42), 401, "invalid_claim"),
    Attack("iss as a list", claims(iss=["https://sts.windows.net/x/"]), 401, "missing_claim"),
    Attack("roles as a string", claims(roles="Orders.Admin"), 401, "invalid_claim"),
    Attack("scp as a list", claims(scp=["Orders.Read"]), 401, "invalid_claim"),
    Attack("ver as a number", claims(ver=2.0), 401, "version_not_accepted"),
    Attack("kid as a number", lambda idp: issue(idp, roles=["r"], headers={"kid": 7}), 401, "malformed_token"),
    Attack("duplicate JSON members", duplicate_member, 401, "malformed_token"),
    Attack("NaN in the payload", nan_member, 401, "malformed_token"),
    Attack("oversized token", lambda idp: issue(idp, roles=["r"], claims={"pad": "x" * 40_000}), 401, "token_too_large"),
    Attack("oversized header", lambda idp: issue(idp, roles=["r"], headers={"pad": "x" * 40_000}), 401, "token_too_large"),
    Attack("non-ASCII token", lambda idp: issue(idp, roles=["r"]).replace("e", "é", 1).encode(), 401, "malformed_token"),
    Attack("2 segments", lambda idp: issue(idp, roles=["r"]).rsplit(".", 1)[0], 401, "malformed_token"),
    Attack("4 segments", lambda idp: issue(idp, roles=["r"]) + ".c2ln", 401, "malformed_token"),
    Attack("5 segments", lambda idp: issue(idp, roles=["r"]) + ".c2ln.c2ln", 401, "malformed_token"),
    Attack("genuine, granting nothing", lambda idp: issue(idp, roles=[]), 403, "no_permissions"),
]  # fmt: skip


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


@pytest.fixture(scope="module")
def idp() -> Iterator[EntraEmulator]:
    """One emulator for the table: no case changes its keys or documents."""
    with EntraEmulator() as emulator:
        yield emulator


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
async def test_attack(idp: EntraEmulator, attack: Attack, caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[AuthOutcome] = []
    validator = TokenValidator(idp.config(**attack.config), clock=lambda: NOW)
    middleware = EntraAuthMiddleware(ok, validator=validator, on_outcome=outcomes.append)
    token = attack.token(idp)
    with caplog.at_level(logging.INFO, logger="entra_guard"):
        status, headers, _ = await get_with_token(middleware, token)
    assert (status, [o.reason for o in outcomes]) == (attack.status, [attack.reason])
    if status == 401:
        assert headers[b"www-authenticate"].startswith(b'Bearer error="invalid_token"')
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing unexpected
    await validator.aclose()


@pytest.mark.parametrize("member", ["jku", "x5u"])
async def test_jku_and_x5u_are_never_fetched(idp: EntraEmulator, member: str) -> None:
    """A token pointing at the attacker's own keys, on a loopback server that records every
    request: nothing is asked of it, and the token is refused for its key, not for the URL."""
    forger = EntraEmulator.generate_key()
    outcomes: list[AuthOutcome] = []
    with DocumentServer() as server:
        url = server.serve("/keys", {"keys": [forger.public_jwk()]})
        if member == "x5u":
            url = server.serve("/cert.pem", forger.certificate.public_bytes(Encoding.PEM))
        validator = TokenValidator(idp.config(), clock=lambda: NOW)
        middleware = EntraAuthMiddleware(ok, validator=validator, on_outcome=outcomes.append)
        own_kid = issue(idp, roles=["r"], key=forger, headers={member: url})
        tenant_kid = issue(
            idp, roles=["r"], key=forger, headers={member: url, "kid": idp.current_key.kid}
        )
        assert (await get_with_token(middleware, own_kid))[0] == 401
        assert (await get_with_token(middleware, tenant_kid))[0] == 401
        await validator.aclose()
    assert [o.reason for o in outcomes] == ["key_not_found", "invalid_signature"]
    assert server.hits == []
