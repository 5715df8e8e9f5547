"""Small helpers for driving ASGI apps in tests."""

from __future__ import annotations

from starlette.testclient import TestClient, WebSocketDenialResponse


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
