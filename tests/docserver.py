"""A hand-made identity provider's web server: uvicorn on loopback serving the documents a test
gives it, exactly as given, and recording every request it receives.

The emulator shapes its documents itself (it rewrites every ``jwks_uri`` to its own), so the
rules about what discovery must refuse in a document need a server that serves anything.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from entra_guard import EntraConfig
from entra_guard.testing import EntraEmulator
from entra_guard.testing.server import BackgroundServer

#: How long a held answer waits for the client to hang up before sending its body anyway.
HOLD_LIMIT = 30.0


@dataclass(frozen=True)
class Document:
    body: bytes
    #: Sent in pieces with chunked transfer encoding: no ``Content-Length`` announces its size.
    chunked: bool = False
    #: ``Content-Length`` (the true one) goes out with the headers, the body only once the
    #: client has waited ``HOLD_LIMIT`` seconds for it without hanging up.
    hold_body: bool = False


class DocumentServer:
    """Serves ``documents`` (path -> ``Document``) on ``http://127.0.0.1:<port>``; 404 else.

    ``hits`` lists the path of every request, in order, whether or not it was served.
    """

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.hits: list[str] = []
        self._server = BackgroundServer(self, host="127.0.0.1", port=0, tls=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def serve(self, path: str, document: Mapping[str, Any] | bytes, **how: bool) -> str:
        """Serve ``document`` (JSON, or bytes as they are) at ``path``; returns its URL."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.documents[path] = Document(body, **how)
        return self.base_url + path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path: str = scope["path"]
        self.hits.append(path)
        document = self.documents.get(path)
        if document is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(b"content-type", b"application/json")]
        if not document.chunked:
            headers.append((b"content-length", str(len(document.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if document.hold_body:
            await receive()  # the (empty) request body
            try:
                await asyncio.wait_for(receive(), HOLD_LIMIT)  # http.disconnect
                return  # the client hung up without waiting for the body
            except asyncio.TimeoutError:
                pass
        if document.chunked:
            pieces = [document.body[i : i + 1000] for i in range(0, len(document.body), 1000)]
            for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": document.body})

    def __enter__(self) -> DocumentServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


@contextmanager
def mirror(idp: EntraEmulator, *, jwks_path: str = "/keys") -> Iterator[MirroredTenant]:
    """A ``DocumentServer`` serving ``idp``'s v2 metadata at the usual path for its tenant, with
    ``jwks_uri`` pointing at ``jwks_path`` on this server, where ``idp``'s JWKS is served.

    Tokens the emulator issues validate against it (``MirroredTenant.config()``) until a test
    changes a document.
    """
    metadata = httpx.get(idp.metadata_url(version="2.0")).json()
    jwks = httpx.get(idp.jwks_url(version="2.0")).json()
    with DocumentServer() as server:
        yield MirroredTenant(idp, server, metadata, jwks, jwks_path)


class MirroredTenant:
    def __init__(
        self,
        idp: EntraEmulator,
        server: DocumentServer,
        metadata: dict[str, Any],
        jwks: dict[str, Any],
        jwks_path: str,
    ) -> None:
        self.idp, self.server, self.jwks = idp, server, jwks
        #: The emulator's metadata with ``jwks_uri`` on this server, as served at first.
        self.metadata = {**metadata, "jwks_uri": server.base_url + jwks_path}
        self.metadata_path = f"/{idp.tenant_id}/v2.0/.well-known/openid-configuration"
        self.serve_metadata(self.metadata)
        self.jwks_path = jwks_path
        server.serve(jwks_path, jwks)

    def serve_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.server.serve(self.metadata_path, metadata)

    def config(self, **overrides: Any) -> EntraConfig:
        """The emulator's configuration (v2 tokens only), with this server as the instance."""
        settings = {"instance": self.server.base_url, "token_versions": ("2.0",), **overrides}
        return self.idp.config(**settings)
