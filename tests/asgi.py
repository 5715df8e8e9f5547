"""Small helpers for driving ASGI apps in tests."""

from __future__ import annotations

from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Message, Scope


def denial_of(
    client: TestClient, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Open a WebSocket that must be refused before accept; return the HTTP denial response."""
    try:
        with client.websocket_connect(path, headers=headers):
            pass
    except WebSocketDenialResponse as denial:
        return denial.status_code, dict(denial.headers), denial.content
    raise AssertionError(f"the WebSocket to {path} was accepted")


async def get_with_token(
    app: ASGIApp, token: str | bytes, path: str = "/orders"
) -> tuple[int, dict[bytes, bytes], bytes]:
    """``GET path`` with ``Authorization: Bearer <token>``, straight through the ASGI interface
    (no server, no HTTP client); returns the status, the headers and the body."""
    value = token if isinstance(token, bytes) else token.encode()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                    "headers": [(b"authorization", b"Bearer " + value)]}  # fmt: skip
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], dict(sent[0]["headers"]), body
