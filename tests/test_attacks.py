"""Attack tokens, one named case each, through the middleware: the status is exact, never a 500.

Each case builds its token from the emulator (a real tenant key, or an attacker's key) and sends
it over the ASGI interface; the test also asserts that nothing was logged as an unexpected error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from entra_guard import EntraAuthMiddleware
from entra_guard.testing import REMOVE, EntraEmulator
from tests.support import assemble, b64, segments

OTHER_TENANT = "add29489-7269-41f4-8841-b63c95564420"
LEEWAY = 60


def hs256_with_public_key(idp: EntraEmulator) -> str:
    header, payload, _ = segments(idp.issue_token(roles=["r"]))
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
    return idp.issue_token(roles=["r"], key=key, headers={"kid": idp.current_key.kid, **headers})


def tampered(idp: EntraEmulator) -> str:
    header, payload, signature = segments(idp.issue_token(roles=["Orders.Read"]))
    return assemble(header, {**payload, "roles": ["Orders.Admin"]}, signature)


def duplicate_member(idp: EntraEmulator) -> str:
    header, payload, signature = idp.issue_token(roles=["r"]).split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    doubled = raw[:-1] + b', "roles": ["Orders.Admin"]}'
    return f"{header}.{b64(doubled)}.{signature}"


def claims(**changes: Any) -> Callable[[EntraEmulator], str]:
    return lambda idp: idp.issue_token(roles=["r"], claims=changes)


def at(
    offset_exp: float | None = None, offset_nbf: float | None = None
) -> Callable[[EntraEmulator], str]:
    def build(idp: EntraEmulator) -> str:
        now = time.time()
        changes: dict[str, Any] = {}
        if offset_exp is not None:  # issued an hour before it expires
            changes.update(exp=int(now + offset_exp), nbf=int(now + offset_exp - 3600),
                           iat=int(now + offset_exp - 3600))  # fmt: skip
        if offset_nbf is not None:
            changes["nbf"] = int(now + offset_nbf)
        return idp.issue_token(roles=["r"], claims=changes)

    return build


@dataclass
class Attack:
    name: str
    token: Callable[[EntraEmulator], str | bytes]
    status: int
    config: dict[str, Any] = field(default_factory=dict)


def alg_none(signature: str) -> Callable[[EntraEmulator], str]:
    def build(idp: EntraEmulator) -> str:
        header, payload, _ = segments(idp.issue_token(roles=["r"]))
        return assemble({**header, "alg": "none"}, payload, signature)

    return build


ATTACKS = [
    Attack("control: a valid token", lambda idp: idp.issue_token(roles=["r"]), 200),
    Attack("alg none, empty signature", alg_none(""), 401),
    Attack("alg none, with a signature", alg_none("c2ln"), 401),
    Attack("HS256 keyed with the tenant's public key", hs256_with_public_key, 401),
    Attack("valid signature by a key not the tenant's", attacker, 401),
    Attack("attacker's key under its own kid", lambda idp: attacker(idp, kid="attacker-key"), 401),
    Attack("jwk header injection", lambda idp: attacker(idp, jwk=EntraEmulator.generate_key().public_jwk()), 401),
    Attack("jku header injection", lambda idp: attacker(idp, jku="https://attacker.example/keys"), 401),
    Attack("x5u header injection", lambda idp: attacker(idp, x5u="https://attacker.example/c.pem"), 401),
    Attack("x5c header injection", lambda idp: attacker(idp, x5c=EntraEmulator.generate_key().public_jwk()["x5c"]), 401),
    Attack("tampered payload", tampered, 401),
    Attack("another tenant's token", lambda idp: idp.issue_token(roles=["r"], tenant_id=OTHER_TENANT), 401),
    Attack("tid disagreeing with iss", claims(tid=OTHER_TENANT), 401),
    Attack("multi-tenant, tenant not allowed", lambda idp: idp.issue_token(roles=["r"]), 401,
           {"tenant_id": "organizations", "allowed_tenants": [OTHER_TENANT]}),
    Attack("multi-tenant, tenant allowed", lambda idp: idp.issue_token(roles=["r"], tenant_id=OTHER_TENANT), 200,
           {"tenant_id": "organizations", "allowed_tenants": [OTHER_TENANT]}),
    Attack("audience of another API", lambda idp: idp.issue_token(roles=["r"], audience="api://payroll"), 401),
    Attack("Microsoft Graph audience", lambda idp: idp.issue_token(roles=["r"], audience="00000003-0000-0000-c000-000000000000"), 401),
    Attack("Graph nonce header", lambda idp: idp.issue_token(roles=["r"], headers={"nonce": "abc"}), 401),
    Attack("expired beyond the leeway", at(offset_exp=-LEEWAY - 5), 401),
    Attack("expired within the leeway", at(offset_exp=-LEEWAY + 5), 200),
    Attack("not yet valid beyond the leeway", at(offset_nbf=LEEWAY + 5), 401),
    Attack("not yet valid within the leeway", at(offset_nbf=LEEWAY - 5), 200),
    Attack("no exp", claims(exp=REMOVE), 401),
    Attack("no tid", claims(tid=REMOVE), 401),
    Attack("no iss", claims(iss=REMOVE), 401),
    Attack("no aud", claims(aud=REMOVE), 401),
    Attack("no azp (an ID token)", claims(azp=REMOVE), 401),
    Attack("no ver", claims(ver=REMOVE), 401),
    Attack("exp as a string", claims(exp="9999999999"), 401),
    Attack("exp as a boolean", claims(exp=True), 401),
    Attack("exp as a 400-digit integer", claims(exp=10**400), 401),
    Attack("aud as a number", claims(aud=42), 401),
    Attack("tid as a number", claims(tid=42), 401),
    Attack("iss as a list", claims(iss=["https://sts.windows.net/x/"]), 401),
    Attack("roles as a string", claims(roles="Orders.Admin"), 401),
    Attack("scp as a list", claims(scp=["Orders.Read"]), 401),
    Attack("ver as a number", claims(ver=2.0), 401),
    Attack("kid as a number", lambda idp: idp.issue_token(roles=["r"], headers={"kid": 7}), 401),
    Attack("duplicate JSON members", duplicate_member, 401),
    Attack("oversized token", lambda idp: idp.issue_token(roles=["r"], claims={"pad": "x" * 40_000}), 401),
    Attack("oversized header", lambda idp: idp.issue_token(roles=["r"], headers={"pad": "x" * 40_000}), 401),
    Attack("non-ASCII token", lambda idp: idp.issue_token(roles=["r"]).replace("e", "é", 1).encode(), 401),
    Attack("2 segments", lambda idp: idp.issue_token(roles=["r"]).rsplit(".", 1)[0], 401),
    Attack("4 segments", lambda idp: idp.issue_token(roles=["r"]) + ".c2ln", 401),
    Attack("5 segments", lambda idp: idp.issue_token(roles=["r"]) + ".c2ln.c2ln", 401),
    Attack("genuine, granting nothing", lambda idp: idp.issue_token(roles=[]), 403),
]  # fmt: skip


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


async def call(
    middleware: EntraAuthMiddleware, token: str | bytes
) -> tuple[int, dict[bytes, bytes]]:
    value = token if isinstance(token, bytes) else token.encode()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/orders", "query_string": b"",
                    "headers": [(b"authorization", b"Bearer " + value)]}  # fmt: skip
    await middleware(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"])


@pytest.fixture(scope="module")
def idp() -> Iterator[EntraEmulator]:
    """One emulator for the table: no case changes its keys or documents."""
    with EntraEmulator() as emulator:
        yield emulator


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
async def test_attack(idp: EntraEmulator, attack: Attack, caplog: pytest.LogCaptureFixture) -> None:
    middleware = EntraAuthMiddleware(ok, config=idp.config(**attack.config))
    token = attack.token(idp)
    with caplog.at_level(logging.INFO, logger="entra_guard"):
        status, headers = await call(middleware, token)
    assert status == attack.status
    if status == 401:
        assert headers[b"www-authenticate"].startswith(b'Bearer error="invalid_token"')
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing unexpected
    await middleware.validator.aclose()
