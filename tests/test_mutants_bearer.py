"""Rules of ``bearer`` that mutation testing found untested (benchmarks/MUTATION.md)."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.types import Scope

from entra_guard.bearer import bearer_token, error_response
from entra_guard.errors import (
    ClaimsChallenge,
    InsufficientPermissions,
    InvalidRequest,
    InvalidToken,
    KeysUnavailable,
    MissingToken,
)


def test_every_failure_answer_is_uncacheable_json_with_its_length() -> None:
    for exc in (
        InvalidToken("token_expired", "The token has expired"),
        InsufficientPermissions("missing_permission", 'needs "x"', required="Orders.Read"),
        KeysUnavailable("keys_unavailable", "later", retry_after=7),
    ):
        status, headers, body = error_response(exc)
        names = dict(headers)
        assert names[b"content-type"] == b"application/json"
        assert names[b"cache-control"] == b"no-store"
        assert names[b"content-length"] == str(len(body)).encode()
        assert status == exc.status_code
        said = json.loads(body)
        assert said["error_description"] == exc.description
    assert said == {"error": "temporarily_unavailable", "error_description": "later"}
    assert names[b"retry-after"] == b"7"
    assert b"www-authenticate" not in names


def scope(*headers: tuple[bytes, bytes], query: bytes = b"") -> Scope:
    return {"type": "http", "headers": list(headers), "query_string": query}


AUTH = b"authorization"


@pytest.mark.parametrize(
    ("request_scope", "token"),
    [
        (scope(), None),
        (scope((b"accept", b"*/*")), None),
        (scope((AUTH, b"Bearer abc")), "abc"),
        (scope((AUTH, b"bEARER    abc  ")), "abc"),  # any case, spaces, surrounding blanks
        (scope((AUTH, b"\t Bearer abc \t")), "abc"),
        (scope(query=b"my_access_token=abc"), None),  # another parameter, not ours
        # Only spaces and tabs are trimmed (HTTP's optional whitespace), and only around the
        # token: what else it holds stays in it, for the parser to refuse.
        (scope((AUTH, b"Bearer abc \t")), "abc"),
        (scope((AUTH, b"Bearer abc\x0c")), "abc\x0c"),
        (scope((AUTH, b"Bearer \tabc")), "\tabc"),
        (scope((AUTH, b"Bearer XXabcXX")), "XXabcXX"),
        (scope((AUTH, b"BEARER XXabcXX\x0b")), "XXabcXX\x0b"),
        (scope((AUTH, b"BEARER \x0cabc")), "\x0cabc"),
        (scope((AUTH, b"bearer abcX")), "abcX"),
    ],
)
def test_the_bearer_token_is_read_from_its_one_header(
    request_scope: Scope, token: str | None
) -> None:
    assert bearer_token(request_scope) == token


@pytest.mark.parametrize(
    ("request_scope", "reason", "description"),
    [
        (scope((AUTH, b"Bearer a"), (AUTH, b"Bearer b")), "multiple_authorization_headers",
         "Send exactly one Authorization header"),
        (scope(query=b"access_token=abc"), "token_in_query",
         "Tokens are not accepted in the URL: send 'Authorization: Bearer <token>'"),
        (scope((AUTH, b"Bearer a"), query=b"access_token=b"), "multiple_token_methods",
         "Send the token in one place only"),
        (scope((AUTH, b"Bearer\tabc")), "malformed_authorization",
         "Separate 'Bearer' from the token with a space"),
        (scope((AUTH, b"Bearer")), "empty_token", "The Authorization header carries no token"),
        (scope((AUTH, b"Bearer    ")), "empty_token",
         "The Authorization header carries no token"),
    ],
)  # fmt: skip
def test_each_wrong_way_of_sending_a_token_is_a_400_saying_so(
    request_scope: Scope, reason: str, description: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        bearer_token(request_scope)
    assert (refused.value.reason, refused.value.description) == (reason, description)
    assert refused.value.status_code == 400


@pytest.mark.parametrize(
    "query", [b"access_token=a&access_token=b", b"access_token=&access_token=b",
              b"access_token=a&x=1&access_token=a"],
)  # fmt: skip
def test_a_repeated_access_token_parameter_is_refused_not_read_first_wins(query: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        bearer_token(scope(query=query), accept_query_token=True)
    assert (refused.value.reason, refused.value.description) == (
        "multiple_query_tokens",
        "Send exactly one access_token parameter",
    )
    # Where the URL is no place for a token at all, that is what the answer says.
    with pytest.raises(InvalidRequest) as not_here:
        bearer_token(scope(query=query))
    assert not_here.value.reason == "token_in_query"


@pytest.mark.parametrize(
    "header",
    [b"Basic YTpi", b"Bearerabc", b"Negotiate abc", b"", b" \t", b"Bearer-x abc",
     b"\x0cBearer abc"],
)  # fmt: skip
def test_another_scheme_is_no_credentials_a_401_with_no_error_code(header: bytes) -> None:
    with pytest.raises(MissingToken) as refused:
        bearer_token(scope((AUTH, header)))
    assert (refused.value.reason, refused.value.description) == (
        "unsupported_scheme",
        "Authentication required: send 'Authorization: Bearer <token>' "
        "(no other scheme is accepted)",
    )
    assert (refused.value.status_code, refused.value.error_code) == (401, None)
    assert challenge_of(refused.value) == "Bearer"


def test_a_query_token_when_accepted_is_trimmed_and_a_blank_one_is_none() -> None:
    assert bearer_token(scope(query=b"a=1&access_token=%20abc%20"), accept_query_token=True) == (
        "abc"
    )
    assert bearer_token(scope(query=b"access_token=%20"), accept_query_token=True) is None
    blanks = scope(query=b"access_token=&access_token=%20")
    assert bearer_token(blanks, accept_query_token=True) is None  # blanks are no token


METADATA = "https://api.contoso.test/.well-known/oauth-protected-resource"


def challenge_of(exc: Exception, **options: str) -> str:
    assert isinstance(exc, (InvalidToken, MissingToken, InsufficientPermissions, ClaimsChallenge))
    _, headers, _ = error_response(exc, **options)
    return dict(headers)[b"www-authenticate"].decode("ascii")


def test_the_challenges_of_rfc_6750_and_9728() -> None:
    assert challenge_of(MissingToken()) == "Bearer"
    assert challenge_of(MissingToken(), resource_metadata=METADATA) == (
        f'Bearer resource_metadata="{METADATA}"'
    )
    expired = InvalidToken("token_expired", 'The token "x" has\\ expired\u00e9')
    assert challenge_of(expired, resource_metadata=METADATA) == (
        "Bearer error=\"invalid_token\", error_description=\"The token 'x' has' expired'\", "
        f'resource_metadata="{METADATA}"'
    )
    forbidden = InsufficientPermissions("missing_permission", "needs it", required="A.Read B")
    assert challenge_of(forbidden, resource_metadata=METADATA) == (
        'Bearer error="insufficient_scope", error_description="needs it", scope="A.Read B"'
    )  # a 403 names no metadata: the caller knows where tokens come from
    no_scope = InsufficientPermissions("groups_overage", "needs groups")
    assert challenge_of(no_scope) == (
        'Bearer error="insufficient_scope", error_description="needs groups"'
    )


def test_a_claims_challenge_in_microsofts_form() -> None:
    claims = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
    full = ClaimsChallenge(
        "claims_challenge", "sign in again", claims=claims,
        authorization_uri="https://login.test/t/oauth2/v2.0/authorize", realm="t", client_id="c",
    )  # fmt: skip
    encoded = base64.b64encode(claims.encode()).decode()
    assert challenge_of(full, resource_metadata=METADATA) == (
        'Bearer realm="t", authorization_uri="https://login.test/t/oauth2/v2.0/authorize", '
        f'client_id="c", error="insufficient_claims", claims="{encoded}", '
        f'resource_metadata="{METADATA}"'
    )
    bare = ClaimsChallenge("claims_challenge", "sign in again", claims=claims)
    assert challenge_of(bare) == f'Bearer error="insufficient_claims", claims="{encoded}"'
    status, _, body = error_response(bare)
    assert status == 401
    assert json.loads(body) == {
        "error": "insufficient_claims",
        "error_description": "sign in again",
    }


def test_a_scope_without_a_query_string_is_read_as_an_empty_one() -> None:
    """ASGI: ``query_string`` may be left out of a scope; it then defaults to ``b""``."""
    headers = [(AUTH, b"Bearer abc")]
    assert bearer_token({"type": "http", "headers": headers}) == "abc"
    assert bearer_token({"type": "http", "headers": []}) is None
