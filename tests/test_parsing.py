from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entra_guard import InvalidToken
from entra_guard.parsing import load_object, parse_token
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


# Duplicate members are refused wherever they are and however their names are written: two
# parsers that keep different duplicates would read two different tokens from one signature.
DUPLICATES = [
    b'{"a": 1, "a": 2}',
    b'{"a": 1, "\\u0061": 2}',  # the same name, one of them escaped
    b'{"\\u0061": 1, "a": 2}',
    b'{"\\u00e9": 1, "\xc3\xa9": 2}',  # an escape against the same letter in UTF-8
    b'{"a\\/b": 1, "a/b": 2}',  # an escaped solidus
    b'{"x": {"a": 1, "a": 2}}',  # nested
    b'{"x": [1, {"y": [{"a": 1, "\\u0061": 2}]}]}',  # in an object inside arrays
    b'{"": 1, "": 2}',
    b'{"a": 1, "b": {}, "a": 1}',  # equal values too
    b'{"a\\u0000": 1, "a\\u0000": 2}',
]


@pytest.mark.parametrize("payload", DUPLICATES)
def test_a_repeated_member_is_refused_anywhere(payload: bytes) -> None:
    with pytest.raises(InvalidToken) as info:
        parse_token(raw(b'{"alg": "RS256"}', payload), max_bytes=LIMIT)
    assert info.value.reason == "malformed_token"
    assert "payload repeats a member" in info.value.description


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": 1, "A": 2}',  # names are case-sensitive
        b'{"a": {"b": 1}, "b": {"a": 1}}',  # the same name in different objects
        b'{"y": [{"a": 1}, {"a": 2}], "a": 3}',
        b'{"x": [{"a": 1}, {"a": 2}]}',
        b'{"a": 1, "a\\u0000": 2}',
    ],
)
def test_equal_names_in_different_objects_are_not_duplicates(payload: bytes) -> None:
    assert load_object(payload, "payload") == json.loads(payload)


@pytest.mark.parametrize(
    "payload",
    [
        # Texts the fast parser refuses but the standard library reads: read as before.
        b'{"a": "\\ud800"}',  # a lone surrogate escape
        b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",  # deeper than jiter goes
    ],
)
def test_what_only_the_standard_library_reads_is_read_as_before(payload: bytes) -> None:
    assert load_object(payload, "payload") == json.loads(payload)


# JSON-like text: real JSON with a chance of repeated names (plain or escaped), constants,
# stray characters, and deep nesting, as bytes.
_names = st.sampled_from(["a", "b", "\\u0061", "\\u0062", "é", "\\u00e9", "exp", ""])
_scalars = st.sampled_from(
    ["1", "-0", "1.5e3", "1e400", "NaN", "Infinity", "true", "null", '"x"', '"\\ud800"', "01"]
)


@st.composite
def _json_like(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        return draw(_scalars)
    if draw(st.booleans()):
        items = draw(st.lists(_json_like(depth + 1), max_size=3))
        return "[" + ",".join(items) + "]"
    members = draw(st.lists(st.tuples(_names, _json_like(depth + 1)), max_size=4))
    return "{" + ",".join(f'"{name}":{value}' for name, value in members) + "}"


def _standard_library(text: bytes) -> object:
    """The rule written with the standard library alone (slow): the reference."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise KeyError("duplicate")
        return dict(pairs)

    def no_constant(name: str) -> object:
        raise ValueError(name)

    try:
        value = json.loads(
            text.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant
        )
    except KeyError:
        return "repeats a member"
    except (ValueError, RecursionError):
        return "is not JSON"
    return value if isinstance(value, dict) else "is not a JSON object"


@given(st.one_of(_json_like(), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_the_parser_agrees_with_the_standard_library(text: str) -> None:
    data = text.encode("utf-8")
    expected = _standard_library(data)
    try:
        value: object = load_object(data, "payload")
    except InvalidToken as exc:
        assert isinstance(expected, str)
        assert exc.description.endswith(f"the payload {expected}")
    else:
        # NaN never gets here (refused); repr compares -0.0 and inf exactly.
        assert repr(value) == repr(expected)
