from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entra_guard import InvalidToken
from entra_guard.parsing import parse_token
from tests.support import b64

LIMIT = 16 * 1024


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


def raw(header: bytes, payload: bytes) -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(b's')}"


GOOD = f"{segment({'alg': 'RS256', 'kid': 'k'})}.{segment({'ver': '2.0'})}.{b64(b'sig')}"


def test_a_well_formed_token_parses() -> None:
    parsed = parse_token(GOOD, max_bytes=LIMIT)
    assert parsed.header == {"alg": "RS256", "kid": "k"}
    assert parsed.payload == {"ver": "2.0"}
    assert parsed.signature == b"sig"
    assert parsed.signing_input == GOOD.rsplit(".", 1)[0].encode()


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("", "segments"),
        ("abc", "segments"),
        (GOOD.rsplit(".", 1)[0], "has 2"),
        (GOOD + ".x", "has 4"),
        (GOOD + ".x.y", "has 5"),
        (GOOD.rsplit(".", 1)[0] + ".", "empty"),
        ("." + GOOD.split(".", 1)[1], "empty"),
        (GOOD.replace(".", ". ", 1), "base64url"),
        (GOOD.replace("e", "+", 1), "base64url"),
        (GOOD + "=", "base64url"),
        (f"{segment([1, 2])}.{segment({})}.{b64(b's')}", "header is not a JSON object"),
        (f"{segment({'alg': 'RS256'})}.{segment('x')}.{b64(b's')}", "payload is not a JSON object"),
        (raw(b"{not json", b"{}"), "header is not JSON"),
        (raw(bytes([0xFF, 0xFE]), b"{}"), "header is not JSON"),
        (raw(b"{}", b'{"exp": NaN}'), "payload is not JSON"),
        (raw(b"{}", b'{"exp": Infinity}'), "payload is not JSON"),
        (raw(b"{}", b'{"a": 1, "a": 2}'), "repeats a member"),
        (raw(b'{"alg": "RS256", "alg": "none"}', b"{}"), "repeats"),
        (raw(b"{}", b"[" * 5000 + b"]" * 5000), "payload is not JSON"),
        ("é" + GOOD, "non-ASCII"),
        (f"aaaaa.{segment({})}.{b64(b's')}", "not valid base64url"),  # 5 chars: 1 mod 4
    ],
)
def test_malformed_tokens_are_invalid(token: str, detail: str) -> None:
    with pytest.raises(InvalidToken) as info:
        parse_token(token, max_bytes=LIMIT)
    assert info.value.reason == "malformed_token"
    assert detail in info.value.description


def test_oversized_tokens_are_refused_before_any_decoding() -> None:
    big = f"{segment({'alg': 'RS256'})}.{segment({'pad': 'x' * LIMIT})}.{b64(b's')}"
    with pytest.raises(InvalidToken) as info:
        parse_token(big, max_bytes=LIMIT)
    assert info.value.reason == "token_too_large"


@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_invalid_token(text: str) -> None:
    try:
        parse_token(text, max_bytes=LIMIT)
    except InvalidToken as exc:
        assert exc.reason in {"malformed_token", "token_too_large"}


@given(st.lists(st.one_of(st.binary(max_size=60), st.text(max_size=20)), min_size=3, max_size=3))
def test_arbitrary_segments_only_ever_raise_invalid_token(parts: list[bytes | str]) -> None:
    token = ".".join(b64(p) if isinstance(p, bytes) else p for p in parts)
    try:
        parsed = parse_token(token, max_bytes=LIMIT)
    except InvalidToken as exc:
        assert exc.reason == "malformed_token"
    else:
        assert isinstance(parsed.header, dict)
        assert isinstance(parsed.payload, dict)
