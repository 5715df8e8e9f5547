"""Sections 1 and 2: ``TokenValidator.validate`` against the cost of the signature itself.

The floor is what no validator can go below: one RSA-2048 PKCS#1 v1.5 SHA-256 verify of the
token's signing input with ``cryptography``. PyJWT's ``jwt.decode`` with the same key and
equivalent checks shows what a general-purpose decoder costs on top of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from benchmarks.common import (
    Context,
    Cursor,
    Timing,
    compare,
    config_for,
    default_cache_size,
    split_token,
    supports_token_cache,
)
from benchmarks.report import Row, ratio, us
from entra_guard import TokenValidator

__all__ = ["run"]

SECTION = "validator"
FRESH_TARGET = 1.6
HIT_TARGET = 0.15


def run(ctx: Context) -> list[Row]:
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> list[Row]:
    batch, repeats = ctx.options.scaled(100, 50), ctx.options.scaled(41, 5)
    fresh = ctx.fresh_tokens(batch * (repeats + 1))
    idp = ctx.idp
    public_key = idp.current_key.private_key.public_key()
    config = config_for(idp)
    audience = config.audiences[0]
    # The issuer the tenant's v2 metadata promises, read from it as any client would.
    async with httpx.AsyncClient() as client:
        issuer = (await client.get(idp.metadata_url(version="2.0"))).json()["issuer"]

    floor_inputs = Cursor([split_token(t) for t in fresh])
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    async def floor(n: int) -> None:
        for signing_input, signature in floor_inputs.take(n):
            public_key.verify(signature, signing_input, pkcs1, sha256)

    pyjwt_tokens = Cursor(fresh)
    require = {"require": ["exp", "iss", "aud"]}

    async def pyjwt(n: int) -> None:
        for token in pyjwt_tokens.take(n):
            jwt.decode(
                token,
                public_key,
                algorithms=["RS256"],
                audience=audience,
                issuer=issuer,
                leeway=config.leeway,
                options=require,  # type: ignore[arg-type]  # PyJWT types options as a TypedDict
            )

    validators: list[TokenValidator] = []

    async def ready(cache_size: int | None = None) -> TokenValidator:
        validator = TokenValidator(config_for(idp, token_cache_size=cache_size))
        await validator.prefetch()
        validators.append(validator)
        return validator

    fresh_validator, hit_validator = await ready(), await ready()
    fresh_tokens = Cursor(fresh)
    token = ctx.token

    async def validate_fresh(n: int) -> None:
        for each in fresh_tokens.take(n):
            await fresh_validator.validate(each)

    async def validate_repeated(n: int) -> None:
        for _ in range(n):
            await hit_validator.validate(token)

    cases = {
        "floor": floor,
        "pyjwt": pyjwt,
        "fresh": validate_fresh,
        "repeated": validate_repeated,
    }
    if supports_token_cache():
        uncached = await ready(cache_size=0)

        async def validate_uncached(n: int) -> None:
            for _ in range(n):
                await uncached.validate(token)

        cases["uncached"] = validate_uncached
    else:
        ctx.note(
            "This entra-guard has no `EntraConfig.token_cache_size`: no verified-token cache "
            "exists yet, so 'repeated token' is a full validation every time."
        )
    try:
        timings = await compare(cases, batch=batch, repeats=repeats)
    finally:
        for validator in validators:
            await validator.aclose()
    return _rows(timings)


def _rows(t: dict[str, Timing]) -> list[Row]:
    floor = t["floor"].us

    def row(name: str, key: str, target: float | None = None, **data: Any) -> Row:
        figure = t[key].us
        return Row(
            SECTION,
            name,
            us(figure),
            baseline=f"floor {us(floor)}",
            ratio=ratio(figure / floor),
            target="-" if target is None else f"<= {target}x floor",
            met=None if target is None else figure / floor <= target,
            data={"timing": t[key].as_dict(), "floor": t["floor"].as_dict(), **data},
        )

    size = default_cache_size()
    cache = f"token_cache_size={size} (default)" if size is not None else "no cache in this build"
    rows = [
        Row(
            SECTION,
            "Floor: cryptography RSA-2048 PKCS#1 v1.5 SHA-256 verify, per token",
            us(floor),
            data={"timing": t["floor"].as_dict()},
        ),
        row(
            "Validator, fresh token (new token per call), warm keys",
            "fresh",
            FRESH_TARGET,
            cache=cache,
        ),
    ]
    if "uncached" in t:
        rows.append(
            row("Validator, same token, token_cache_size=0, warm keys", "uncached", FRESH_TARGET)
        )
    rows += [
        row("pyjwt.decode, fresh token, same key and checks", "pyjwt"),
        row(f"Validator, repeated token (cache hit), {cache}", "repeated", HIT_TARGET),
    ]
    return rows
