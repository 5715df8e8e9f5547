"""Strict parsing of a compact JWS: the first thing hostile input meets.

Everything here runs before any signature is checked, so it trusts nothing: sizes are capped,
only the base64url alphabet is accepted, JSON must be an object without duplicate members or
non-standard constants (``NaN``, ``Infinity``), and every failure is an ``InvalidToken``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from entra_guard.errors import InvalidToken

__all__ = ["ParsedToken", "parse_token"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token split and decoded, not yet verified: nothing in it is to be believed yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_token(token: str, *, max_bytes: int) -> ParsedToken:
    """Split and decode ``header.payload.signature``; raise ``InvalidToken`` for anything else."""
    if len(token) > max_bytes:
        raise InvalidToken("token_too_large", f"The token is longer than {max_bytes} bytes")
    if not token.isascii():
        raise _malformed("the token contains non-ASCII characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed(f"a JWT has 3 dot-separated segments, this token has {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    for segment in parts:
        if not _SEGMENT.fullmatch(segment):
            raise _malformed("a segment is empty or not base64url")
    header = _json_object(_b64decode(header_b64), "header")
    payload = _json_object(_b64decode(payload_b64), "payload")
    return ParsedToken(
        header=header,
        payload=payload,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=_b64decode(signature_b64),
    )


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _malformed("a segment is not valid base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate:
        raise _malformed(f"the {what} repeats a member") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _malformed(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers that pick different duplicates see two different tokens; refuse them all.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _malformed(detail: str) -> InvalidToken:
    return InvalidToken("malformed_token", f"The token is malformed: {detail}")
