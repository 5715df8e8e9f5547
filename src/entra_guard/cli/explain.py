"""``entra-guard inspect``: decode a token offline and explain it, then (optionally) check it.

Decoding needs nothing but the token. Checking fetches the tenant's keys and runs every rule of
the validator one by one, so a developer sees all that is wrong at once, not just the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import TextIO

import httpx

from entra_guard.cli.checks import check_token, claim_time, when
from entra_guard.config import EntraConfig
from entra_guard.errors import EntraGuardError, InvalidToken, KeysUnavailable
from entra_guard.parsing import ParsedToken, parse_token

__all__ = ["CLAIM_MEANINGS", "describe_token", "parse_for_display", "run_inspect"]

CLAIM_MEANINGS = {
    "typ": "token type (always JWT)",
    "alg": "signing algorithm",
    "kid": "id of the signing key in the tenant's JWKS",
    "x5t": "thumbprint of the signing key (old v1 tokens: the key id)",
    "nonce": "a Microsoft Graph token: only Graph can validate it",
    "aud": "audience: the API this token is for",
    "iss": "issuer: the security token service and tenant",
    "idp": "identity provider that authenticated the subject",
    "iat": "issued at",
    "nbf": "not valid before",
    "exp": "expires at",
    "aio": "internal (opaque)",
    "rh": "internal (opaque)",
    "uti": "token id",
    "ver": "token version",
    "tid": "tenant id",
    "oid": "object id of the user or service principal (stable; key data on tid + oid)",
    "sub": "subject, pairwise per application",
    "azp": "client application id (v2)",
    "azpacr": "how the client authenticated: 0 public, 1 secret, 2 certificate (v2)",
    "appid": "client application id (v1)",
    "appidacr": "how the client authenticated: 0 public, 1 secret, 2 certificate (v1)",
    "roles": "app roles (application permissions or user roles)",
    "scp": "delegated scopes, space-separated",
    "idtyp": "token type: app for app-only tokens",
    "name": "display name (never authorize on it)",
    "preferred_username": "sign-in name (mutable; never authorize on it)",
    "upn": "user principal name (mutable; never authorize on it)",
    "unique_name": "display name (v1; never authorize on it)",
    "groups": "group object ids",
    "wids": "directory role template ids",
    "amr": "authentication methods",
    "acr": "authentication context class",
    "acrs": "authentication context ids",
    "xms_cc": "client capabilities (cp1: handles claims challenges)",
}
_TIMES = ("iat", "nbf", "exp")


def describe_token(parsed: ParsedToken, *, now: float, out: TextIO) -> None:
    """Print the header and each claim with its meaning; times relative to ``now``."""
    out.write("Header\n")
    for name, value in parsed.header.items():
        _row(out, name, value, CLAIM_MEANINGS.get(name, ""))
    out.write("Claims\n")
    for name, value in parsed.payload.items():
        meaning = CLAIM_MEANINGS.get(name, "")
        if name in _TIMES:
            moment = claim_time(parsed.payload, name)
            shown = "not a time from 1970 to 9999" if moment is None else when(moment, now)
            meaning = f"{meaning}: {shown}"
        _row(out, name, value, meaning)


def parse_for_display(token: str) -> ParsedToken:
    """Parse without the size cap of validation: a developer may inspect any token."""
    return parse_token(token.strip(), max_bytes=1024 * 1024)


def _row(out: TextIO, name: str, value: object, meaning: str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > 70:
        text = text[:67] + "..."
    out.write(f"  {name:<20} {text:<44} {meaning}\n".rstrip() + "\n")


def run_inspect(args: argparse.Namespace) -> int:
    """``entra-guard inspect``."""
    from entra_guard.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, fail  # noqa: PLC0415

    raw = sys.stdin.read() if args.token == "-" else args.token  # noqa: S105  # "-" is stdin
    raw = raw.strip().removeprefix("Bearer ").strip()
    try:
        parsed = parse_for_display(raw)
    except InvalidToken as exc:
        return fail(f"not a JWT: {exc.description}")
    now = time.time() if args.now is None else args.now
    config = None
    if args.config or args.tenant_id or args.audience:
        try:  # a usage error is said before any output, not after the decoded token
            config = _config(args)
        except ValueError as exc:
            return fail(str(exc), EXIT_USAGE)
    describe_token(parsed, now=now, out=sys.stdout)
    if config is None:
        return EXIT_OK
    # --ca-bundle, else the configuration's own (ENTRA_CA_BUNDLE with --config), else the system's
    verify: ssl.SSLContext | bool = config.ssl_context or True
    if args.ca_bundle:
        verify = ssl.create_default_context(cafile=args.ca_bundle)
    client = httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=config.fetch_timeout)

    async def check() -> EntraGuardError | None:
        async with client:
            return await check_token(parsed, config, now=now, out=sys.stdout, http_client=client)

    failure = asyncio.run(check())
    if failure is None:
        print("Result: valid")
        return EXIT_OK
    print(f"Result: refused with {failure.status_code} ({failure.reason}): {failure.description}")
    return EXIT_UNREACHABLE if isinstance(failure, KeysUnavailable) else EXIT_FAILED


def _config(args: argparse.Namespace) -> EntraConfig:
    if args.config:
        return EntraConfig.from_env()
    if not args.tenant_id or not args.audience:
        raise ValueError("checking needs --tenant-id and --audience (or --config)")
    options: dict[str, object] = {"tenant_id": args.tenant_id, "audiences": args.audience}
    if args.instance:
        options["instance"] = args.instance
    if args.allowed_tenant:
        options["allowed_tenants"] = args.allowed_tenant
    return EntraConfig(**options)  # type: ignore[arg-type]
