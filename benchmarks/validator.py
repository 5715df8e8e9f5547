"""Sections 1 and 2: ``TokenValidator.validate`` against the cost of the signature itself.

The floor is what no validator can go below: one RSA-2048 PKCS#1 v1.5 SHA-256 verify of the
token's signing input with ``cryptography``. PyJWT's ``jwt.decode`` with the same key and
equivalent checks shows what a general-purpose decoder costs on top of it.

The fresh-token figure is then taken apart, on fresh tokens too, into the stages the validator
runs (each with the library's own public functions): parsing (shape, base64url, JSON), the claim
checks with the principal they build, and the cache's digest, miss and insert. What is left is
the signature and the glue between the stages.
"""

from __future__ import annotations

import asyncio
import time
from hashlib import sha256
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from benchmarks.common import (
    Batch,
    Context,
    Cursor,
    Timing,
    compare,
    config_for,
    default_cache_size,
    mint_tokens,
    split_token,
    supports_token_cache,
)
from benchmarks.report import Row, ratio, us
from entra_guard import EntraPrincipal, TokenValidator
from entra_guard.claims import check_claims
from entra_guard.parsing import decode_segment, dots, load_object
from entra_guard.token_cache import VerifiedToken, VerifiedTokenCache

__all__ = ["run"]

SECTION = "validator"
FRESH_TARGET = 1.6
HIT_TARGET = 0.15


def run(ctx: Context) -> list[Row]:
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> list[Row]:
    batch, repeats = ctx.options.scaled(100, 50), ctx.options.scaled(41, 5)
    fresh = ctx.fresh_tokens(batch * (repeats + 1))
    stage_tokens = mint_tokens(ctx.idp, batch * (repeats + 1))
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
        **_stages(fresh_validator, stage_tokens, await hit_validator.validate(token)),
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


def _stages(
    validator: TokenValidator, tokens: list[str], principal: EntraPrincipal
) -> dict[str, Batch]:
    """The fresh path's stages, each on fresh tokens: parse, claims and principal, cache."""
    encoded = [token.encode("ascii") for token in tokens]
    to_parse = Cursor(encoded)
    parsed = []
    for data in encoded:
        first, second = dots(data)
        payload = decode_segment(data[first + 1 : second])
        parsed.append((load_object(payload, "payload"), payload))
    to_check, to_cache = Cursor(parsed), Cursor(encoded)
    config, keys = validator.config, validator.key_store
    keyset = keys.current("2.0")
    assert keyset is not None  # prefetched
    key = next(iter(keyset.by_kid.values()))
    cache = VerifiedTokenCache(10_000, leeway=config.leeway)
    when = time.time()

    async def parse(n: int) -> None:
        for data in to_parse.take(n):
            first, second = dots(data)
            load_object(decode_segment(data[first + 1 : second]), "payload")
            decode_segment(data[second + 1 :])

    async def claims(n: int) -> None:
        for payload_claims, payload in to_check.take(n):
            check_claims(
                payload_claims,
                config=config,
                keyset=keyset,
                key=key,
                version="2.0",
                now=when,
                payload=payload,
            )

    entry = VerifiedToken(principal, keyset, key, when)

    async def caching(n: int) -> None:
        for data in to_cache.take(n):
            digest = sha256(data).digest()  # as the validator keys its cache
            cache.get(digest, now=when, keys=keys)
            cache.put(digest, entry)

    return {"stage_parse": parse, "stage_claims": claims, "stage_cache": caching}


def _rows(t: dict[str, Timing]) -> list[Row]:
    floor = t["floor"].us

    def row(name: str, key: str, target: float | None = None, **data: Any) -> Row:
        figure = t[key].us
        return Row(
            SECTION,
            name,
            us(figure),
            baseline=f"floor {us(floor)}",
            ratio=ratio(figure / floor, target),
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
    if "stage_parse" in t:
        rows += [
            row("Fresh-token stage: parse (shape, base64url, JSON)", "stage_parse"),
            row("Fresh-token stage: claim checks and the principal", "stage_claims"),
            row("Fresh-token stage: cache digest, miss and insert", "stage_cache"),
        ]
    return rows
