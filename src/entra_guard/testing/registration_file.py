"""Registrations from a JSON document, so a whole tenant can be described once and shared.

The shape (every key is optional but a client's ``name`` and a user's ``upn``)::

    {
      "apis": [
        {"app_id_uri": "api://orders", "client_id": "<GUID>",
         "roles": ["Orders.Read", "Orders.Write"], "scopes": ["Orders.Read"],
         "access_token_version": "2.0", "custom_signing_key": false}
      ],
      "clients": [
        {"name": "billing-daemon", "client_id": "<GUID>",
         "roles": {"api://orders": ["Orders.Read"]},
         "secrets": ["..."], "certificates": ["-----BEGIN CERTIFICATE-----..."],
         "generate_secret": false, "generate_certificate": false},
        {"name": "orders-docs", "type": "spa",
         "redirect_uris": ["http://localhost:8000/docs/oauth2-redirect"],
         "scopes": {"api://orders": ["Orders.Read"]}}
      ],
      "users": [
        {"upn": "adele@contoso.test", "password": "...", "name": "Adele Vance",
         "object_id": "<GUID>", "groups": ["<GUID>"],
         "roles": {"api://orders": ["Orders.Write"]}, "guest": false}
      ]
    }

A client's ``type`` is ``confidential`` (the default), ``public`` or ``spa``; a user's password
is generated when absent. APIs are registered first, then clients and users, so these may be
granted roles and scopes on them. Unknown keys are refused: a typo would otherwise silently
register a client without its roles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entra_guard.testing.registrations import (
    ApiRegistration,
    ClientRegistration,
    Registry,
    generate_certificate,
    generate_secret,
    load_certificates,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cryptography import x509

    from entra_guard.testing.users import EmulatorUser, UserDirectory

__all__ = ["Registrations", "load_registrations", "register_client"]

_API_KEYS = frozenset(
    {"app_id_uri", "client_id", "roles", "scopes", "access_token_version", "custom_signing_key"}
)
_CLIENT_KEYS = frozenset(
    {"name", "client_id", "roles", "secrets", "certificates", "generate_secret"}
    | {"generate_certificate", "type", "redirect_uris", "scopes"}
)
_USER_KEYS = frozenset({"upn", "password", "name", "object_id", "groups", "roles", "guest"})


@dataclass(frozen=True, slots=True)
class Registrations:
    """What one document registered, in document order."""

    apis: tuple[ApiRegistration, ...]
    clients: tuple[ClientRegistration, ...]
    users: tuple[EmulatorUser, ...] = ()

    def client(self, name: str) -> ClientRegistration:
        """The client registered under ``name`` (``KeyError`` if none)."""
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(name)

    def user(self, upn: str) -> EmulatorUser:
        """The user registered as ``upn`` (``KeyError`` if none)."""
        for user in self.users:
            if user.upn.lower() == upn.lower():
                return user
        raise KeyError(upn)


def register_client(
    registry: Registry,
    *,
    name: str,
    roles: Mapping[str, Sequence[str]],
    secrets: Sequence[str] = (),
    certificates: Sequence[bytes | str] = (),
    new_secret: bool = False,
    new_certificate: bool = False,
    client_id: str | None = None,
    type: str = "confidential",  # the portal's word for it
    redirect_uris: Sequence[str] = (),
    scopes: Mapping[str, Sequence[str]] | None = None,
) -> ClientRegistration:
    """Register a client, generating a secret and/or a certificate (with its key) if asked."""
    all_secrets = [generate_secret(), *secrets] if new_secret else list(secrets)
    loaded: list[x509.Certificate] = []
    for pem in certificates:
        loaded.extend(load_certificates(pem))
    private_key_pem = None
    if new_certificate:
        certificate_pem, private_key_pem = generate_certificate(name)
        loaded = [*load_certificates(certificate_pem), *loaded]
    return registry.add_client(
        name=name,
        roles=roles,
        secrets=all_secrets,
        certificates=loaded,
        private_key_pem=private_key_pem,
        client_id=client_id,
        type=type,
        redirect_uris=redirect_uris,
        scopes=scopes,
    )


def load_registrations(
    registry: Registry,
    source: str | os.PathLike[str] | Mapping[str, Any],
    users: UserDirectory | None = None,
) -> Registrations:
    """Register every API, client and user a document (or the JSON file at ``source``)
    describes; ``ValueError`` for a malformed one (users need ``users``)."""
    if isinstance(source, (str, os.PathLike)):
        document: Any = json.loads(Path(source).read_text(encoding="utf-8"))
    else:
        document = source
    if not isinstance(document, dict) or not set(document) <= {"apis", "clients", "users"}:
        raise ValueError(
            "registrations: expected an object with 'apis', 'clients' and/or 'users' lists"
        )
    if document.get("users") and users is None:
        raise ValueError("registrations: this registry takes no users")
    apis = tuple(
        registry.add_api(
            app_id_uri=entry.get("app_id_uri"),
            roles=entry.get("roles", ()),
            scopes=entry.get("scopes", ()),
            access_token_version=entry.get("access_token_version", "2.0"),
            client_id=entry.get("client_id"),
            custom_signing_key=entry.get("custom_signing_key", False),
        )
        for entry in _entries(document, "apis", _API_KEYS)
    )
    clients = tuple(
        register_client(
            registry,
            name=entry.get("name", ""),
            roles=entry.get("roles", {}),
            secrets=entry.get("secrets", ()),
            certificates=entry.get("certificates", ()),
            new_secret=entry.get("generate_secret", False) is True,
            new_certificate=entry.get("generate_certificate", False) is True,
            client_id=entry.get("client_id"),
            type=entry.get("type", "confidential"),
            redirect_uris=entry.get("redirect_uris", ()),
            scopes=entry.get("scopes", {}),
        )
        for entry in _entries(document, "clients", _CLIENT_KEYS)
    )
    registered_users = tuple(
        users.add(
            registry, upn=_upn(index, entry), **{k: v for k, v in entry.items() if k != "upn"}
        )
        for index, entry in enumerate(_entries(document, "users", _USER_KEYS))
        if users is not None
    )
    return Registrations(apis=apis, clients=clients, users=registered_users)


def _upn(index: int, entry: Mapping[str, Any]) -> str:
    upn = entry.get("upn")
    if not isinstance(upn, str):
        raise ValueError(f"registrations: users[{index}] needs a 'upn' string")
    return upn


def _entries(
    document: Mapping[str, Any], key: str, allowed: frozenset[str]
) -> list[dict[str, Any]]:
    entries = document.get(key, [])
    if not isinstance(entries, list):
        raise ValueError(f"registrations: '{key}' must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"registrations: {key}[{index}] must be an object")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"registrations: {key}[{index}] has unknown keys {unknown}")
    return entries
