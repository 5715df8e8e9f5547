"""Strict parsing of a compact JWS: the first thing hostile input meets.

Everything here runs before any signature is checked, so it trusts nothing: sizes are capped,
only the base64url alphabet is accepted, JSON must be an object without duplicate members or
non-standard constants (``NaN``, ``Infinity``), and every failure is an ``InvalidToken``.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from entra_guard.errors import InvalidToken

__all__ = ["ParsedToken", "decode_json", "decode_segment", "parse_token", "split_token"]

# One pass checks the whole shape: ASCII, three non-empty segments, the base64url alphabet.
_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_PADDING = ("", "", "==", "=")  # by length % 4; a length of 1 mod 4 is no base64 at all


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token split and decoded, not yet verified: nothing in it is to be believed yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_token(token: str, *, max_bytes: int) -> ParsedToken:
    """Split and decode ``header.payload.signature``; raise ``InvalidToken`` for anything else."""
    header_b64, payload_b64, signature_b64 = split_token(token, max_bytes=max_bytes)
    return ParsedToken(
        header=decode_json(header_b64, "header"),
        payload=decode_json(payload_b64, "payload"),
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=decode_segment(signature_b64),
    )


def split_token(token: str, *, max_bytes: int) -> tuple[str, str, str]:
    """The three base64url segments of a compact JWS, or ``InvalidToken`` saying what is wrong."""
    if len(token) > max_bytes:
        raise InvalidToken("token_too_large", f"The token is longer than {max_bytes} bytes")
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise _diagnose(token)
    header, payload, signature = match.groups()
    return header, payload, signature


def decode_segment(segment: str) -> bytes:
    """base64url without padding (RFC 7515); the alphabet is already checked by the split."""
    if len(segment) % 4 == 1:
        raise _malformed("a segment is not valid base64url")
    # a2b_base64 is the fast C decoder; it wants the standard alphabet and padding.
    return binascii.a2b_base64(
        segment.replace("-", "+").replace("_", "/") + _PADDING[len(segment) % 4]
    )


def decode_json(segment: str, what: str) -> dict[str, Any]:
    """A base64url segment holding one JSON object, strictly."""
    try:
        value = _DECODER.decode(decode_segment(segment).decode("utf-8"))
    except _Duplicate:
        raise _malformed(f"the {what} repeats a member") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _malformed(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def _diagnose(token: str) -> InvalidToken:
    """Why a token failed the one-pass shape check (the slow path, for a useful message)."""
    if not token.isascii():
        return _malformed("the token contains non-ASCII characters")
    parts = token.split(".")
    if len(parts) != 3:
        return _malformed(f"a JWT has 3 dot-separated segments, this token has {len(parts)}")
    return _malformed("a segment is empty or not base64url")


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


# Built once: json.loads with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _malformed(detail: str) -> InvalidToken:
    return InvalidToken("malformed_token", f"The token is malformed: {detail}")
