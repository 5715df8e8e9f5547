"""Strict parsing of a compact JWS: the first thing hostile input meets.

Everything here runs before any signature is checked, so it trusts nothing: sizes are capped,
only the base64url alphabet is accepted, JSON must be an object without duplicate members
(anywhere, at any depth, however the names are escaped) or non-standard constants (``NaN``,
``Infinity``), and every failure is an ``InvalidToken``.

JSON is parsed by jiter (pydantic's parser), which refuses duplicate members and those constants
natively, without a Python callback per object. Whatever jiter refuses is parsed again by the
standard library with the same rules, which words the error (or accepts the few texts only it
accepts, such as a lone UTF-16 surrogate escape): so jiter can only make parsing faster, never
more lenient or differently worded.
"""

from __future__ import annotations

import binascii
import json
import string
from dataclasses import dataclass
from typing import Any

import jiter

from entra_guard.errors import InvalidToken

__all__ = [
    "ParsedToken",
    "decode_json",
    "decode_parts",
    "decode_segment",
    "dots",
    "load_object",
    "parse_token",
    "split_token",
    "token_bytes",
]

_ALPHABET = (string.ascii_letters + string.digits + "-_").encode("ascii")
_STANDARD = bytes.maketrans(b"-_", b"+/")  # a2b_base64, the fast C decoder, wants +/ and padding
_PADDING = (b"", b"", b"==", b"=")  # by length % 4; a length of 1 mod 4 is no base64 at all


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token split and decoded, not yet verified: nothing in it is to be believed yet."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_token(token: str, *, max_bytes: int) -> ParsedToken:
    """Split and decode ``header.payload.signature``; raise ``InvalidToken`` for anything else."""
    data = token_bytes(token, max_bytes=max_bytes)
    first, second = dots(data)
    payload, signature = decode_parts(data, first, second)
    return ParsedToken(
        header=load_object(decode_segment(data[:first]), "header"),
        payload=load_object(payload, "payload"),
        signing_input=data[:second],
        signature=signature,
    )


def token_bytes(token: str, *, max_bytes: int) -> bytes:
    """The token's ASCII bytes; ``InvalidToken`` when it is too long or not ASCII."""
    if len(token) > max_bytes:
        raise InvalidToken("token_too_large", f"The token is longer than {max_bytes} bytes")
    if not token.isascii():  # known to the str object: no scan
        raise _malformed("the token contains non-ASCII characters")
    return token.encode()


def dots(data: bytes) -> tuple[int, int]:
    """The positions of the two dots of a compact JWS in ``data``, or ``InvalidToken``.

    Checks the whole shape: three non-empty segments of the base64url alphabet (RFC 7515).
    """
    # Deleting the alphabet in one C pass must leave exactly the two separators.
    if data.translate(None, _ALPHABET) == b"..":
        first = data.find(b".")
        second = data.find(b".", first + 1)
        if 0 < first < second - 1 and second < len(data) - 1:
            return first, second
    raise _diagnose(data)


def split_token(token: str, *, max_bytes: int) -> tuple[str, str, str]:
    """The three base64url segments of a compact JWS, or ``InvalidToken`` saying what is wrong."""
    data = token_bytes(token, max_bytes=max_bytes)
    first, second = dots(data)
    return token[:first], token[first + 1 : second], token[second + 1 :]


def decode_segment(segment: str | bytes) -> bytes:
    """base64url without padding (RFC 7515); the alphabet is already checked by the split."""
    raw = segment.encode("ascii") if isinstance(segment, str) else segment
    return _standard(raw.translate(_STANDARD))


def decode_parts(data: bytes, first: int, second: int) -> tuple[bytes, bytes]:
    """The decoded payload and signature of ``data``, whose dots :func:`dots` found.

    One pass maps the whole token to the standard alphabet: a pass and a copy less per segment
    than :func:`decode_segment` on each (about 1 us of the 4.4 us the two took, RSA-signed
    tokens of 1,324 bytes).
    """
    standard = data.translate(_STANDARD)
    return _standard(standard[first + 1 : second]), _standard(standard[second + 1 :])


def _standard(segment: bytes) -> bytes:
    remainder = len(segment) % 4
    if remainder == 1:
        raise _malformed("a segment is not valid base64url")
    return binascii.a2b_base64(segment + _PADDING[remainder] if remainder else segment)


def decode_json(segment: str | bytes, what: str) -> dict[str, Any]:
    """A base64url segment holding one JSON object, strictly."""
    return load_object(decode_segment(segment), what)


def load_object(raw: bytes, what: str) -> dict[str, Any]:
    """UTF-8 ``raw`` holding one JSON object, strictly (see the module docstring)."""
    try:
        # cache_mode="keys": one object per member name across tokens. Not "all": values
        # like uti are unique, and a cache of them would only hold memory.
        value = jiter.from_json(
            raw, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="keys"
        )
    except ValueError:
        value = _standard_library(raw, what)
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def _standard_library(raw: bytes, what: str) -> Any:
    try:
        return _DECODER.decode(raw.decode())  # UTF-8 (RFC 8259 §8.1)
    except _Duplicate:
        raise _malformed(f"the {what} repeats a member") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _malformed(f"the {what} is not JSON") from None


def _diagnose(data: bytes) -> InvalidToken:
    """Why a token failed the one-pass shape check (the slow path, for a useful message)."""
    if not data.isascii():  # the validator refuses these earlier; dots() is called directly too
        return _malformed("the token contains non-ASCII characters")
    segments = data.count(b".") + 1
    if segments != 3:
        return _malformed(f"a JWT has 3 dot-separated segments, this token has {segments}")
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
