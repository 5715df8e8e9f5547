"""Rules of ``parsing`` that mutation testing found untested (benchmarks/MUTATION.md).

``test_parsing`` checks that each malformed token is refused; these check the exact words a
client developer reads, and the boundaries of the size cap and of the base64url padding.
"""

from __future__ import annotations

import pytest

from entra_guard import InvalidToken
from entra_guard.parsing import decode_json, decode_segment, dots, parse_token, split_token
from tests.support import b64
from tests.test_parsing import GOOD, LIMIT, raw, segment

MALFORMED = "The token is malformed: "


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("", "a JWT has 3 dot-separated segments, this token has 1"),
        (GOOD + ".x", "a JWT has 3 dot-separated segments, this token has 4"),
        (GOOD.rsplit(".", 1)[0] + ".", "a segment is empty or not base64url"),
        (GOOD.replace("e", "+", 1), "a segment is empty or not base64url"),
        ("é" + GOOD, "the token contains non-ASCII characters"),
        (f"aaaaa.{segment({})}.{b64(b's')}", "a segment is not valid base64url"),
        (f"a.{segment({})}.{b64(b's')}", "a segment is not valid base64url"),  # 1 character
        (f"{segment({})}.a.{b64(b's')}", "a segment is not valid base64url"),  # in the middle
        (f"{segment({})}.{segment({})}.a", "a segment is not valid base64url"),  # and last
        (f"{segment({})}.{segment({})}.aaaaa", "a segment is not valid base64url"),
        (f"{segment([1])}.{segment({})}.{b64(b's')}", "the header is not a JSON object"),
        (f"{segment({})}.{segment('x')}.{b64(b's')}", "the payload is not a JSON object"),
        (raw(b"{not json", b"{}"), "the header is not JSON"),
        (raw(b"{}", b'{"exp": NaN}'), "the payload is not JSON"),
        (raw(b"{}", b'{"a": 1, "a": 2}'), "the payload repeats a member"),
        (raw(b'{"alg": "RS256", "alg": "none"}', b"{}"), "the header repeats a member"),
    ],
)
def test_each_malformed_token_says_exactly_what_is_wrong(token: str, detail: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        parse_token(token, max_bytes=LIMIT)
    assert (refused.value.reason, refused.value.description) == (
        "malformed_token",
        MALFORMED + detail,
    )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"a\xff.b.c", "the token contains non-ASCII characters"),
        ("é.b.c".encode(), "the token contains non-ASCII characters"),
        (b"a.b", "a JWT has 3 dot-separated segments, this token has 2"),
        (b"a.b.c.d", "a JWT has 3 dot-separated segments, this token has 4"),
        (b"a..c", "a segment is empty or not base64url"),
        (b"a.b.c=", "a segment is empty or not base64url"),
    ],
)
def test_dots_called_directly_refuses_any_bytes_with_a_malformed_token(
    data: bytes, detail: str
) -> None:
    """Not a UnicodeDecodeError for bytes that are not ASCII: the reason and the words."""
    with pytest.raises(InvalidToken) as refused:
        dots(data)
    assert (refused.value.reason, refused.value.description) == (
        "malformed_token",
        MALFORMED + detail,
    )


def test_the_size_cap_is_inclusive_and_named_in_the_refusal() -> None:
    assert split_token(GOOD, max_bytes=len(GOOD)) == tuple(GOOD.split("."))
    with pytest.raises(InvalidToken) as refused:
        split_token(GOOD, max_bytes=len(GOOD) - 1)
    assert (refused.value.reason, refused.value.description) == (
        "token_too_large",
        f"The token is longer than {len(GOOD) - 1} bytes",
    )


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"abcd", b"\xfb\xff\xbf", b"\xff" * 5])
def test_every_padding_length_decodes_to_the_bytes_signed(data: bytes) -> None:
    if data:
        assert decode_segment(b64(data)) == data
    token = f"{segment({'alg': 'RS256'})}.{segment({'d': data.hex()})}.{b64(data + b'!')}"
    assert parse_token(token, max_bytes=LIMIT).signature == data + b"!"


def test_decode_json_names_the_part_it_was_given() -> None:
    assert decode_json(segment({"a": 1}), "header") == {"a": 1}
    with pytest.raises(InvalidToken) as refused:
        decode_json(b64(b"[1]"), "payload")
    assert refused.value.description == MALFORMED + "the payload is not a JSON object"
