"""Helpers the tests share: taking tokens apart and putting forged ones together."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

from entra_guard import KeyStore, TokenValidator
from entra_guard.testing import EntraEmulator


def b64(data: bytes) -> str:
    """base64url without padding, as in a JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A token's decoded header and payload, and its signature segment as it is."""
    header, payload, signature = token.split(".")
    return _json(header), _json(payload), signature


def _json(segment: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


def assemble(header: object, payload: object, signature: bytes | str) -> str:
    """A token from parts; a bytes signature is encoded, a str one used as it is."""
    sig = b64(signature) if isinstance(signature, bytes) else signature
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{sig}"


async def settle(keys: KeyStore) -> None:
    """Wait (boundedly) for a background key refresh to finish."""
    for _ in range(300):
        if not keys._refreshes_running():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background refresh did not finish")


def validator_for(
    idp: EntraEmulator, clock: Callable[[], float] | None = None, **config: Any
) -> TokenValidator:
    """A validator trusting ``idp``; its key store runs on ``clock`` (monotonic) when given."""
    settings = idp.config(**config)
    keys = KeyStore(settings) if clock is None else KeyStore(settings, clock=clock)
    return TokenValidator(settings, key_store=keys)
