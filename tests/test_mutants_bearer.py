"""Rules of ``bearer`` that mutation testing found untested (benchmarks/MUTATION.md)."""

from __future__ import annotations

import json

from entra_guard.bearer import error_response
from entra_guard.errors import InsufficientPermissions, InvalidToken, KeysUnavailable


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
