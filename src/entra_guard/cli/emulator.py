"""``entra-guard emulator``: a local Entra ID in the foreground, and how to point things at it.

The text output is for people; ``--json`` prints one JSON object on one line instead (the
endpoints, and every API, client and user with their ids, secrets and passwords), so that a
script can read the first line and drive the emulator.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from entra_guard.cli import EXIT_OK, EXIT_USAGE, fail
from entra_guard.testing import EntraEmulator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from entra_guard.testing.registrations import ApiRegistration, ClientRegistration
    from entra_guard.testing.users import EmulatorUser

__all__ = [
    "DEMO_API",
    "DEMO_SCOPES",
    "DEMO_SPA_REDIRECT_URIS",
    "DEMO_USER",
    "describe",
    "describe_json",
    "register_demo",
    "register_demo_sign_in",
    "run_emulator",
]

DEMO_API = "api://entra-guard-demo"
DEMO_ROLES = ("Orders.Read", "Orders.Write")
#: Delegated scopes the demo API exposes to signed-in users.
DEMO_SCOPES = ("Orders.Read", "Orders.Write")
DEMO_USER = "adele@contoso.test"
#: Swagger UI's redirect page of an API served on port 8000 (FastAPI's default path).
DEMO_SPA_REDIRECT_URIS = (
    "http://localhost:8000/docs/oauth2-redirect",
    "http://127.0.0.1:8000/docs/oauth2-redirect",
)
#: A native app's loopback redirect; Entra ignores the port of loopback redirect URIs.
DEMO_PUBLIC_REDIRECT_URI = "http://localhost"


def register_demo(
    idp: EntraEmulator, *, granted: tuple[str, ...] = DEMO_ROLES
) -> tuple[ApiRegistration, ClientRegistration]:
    """The demo's API (two app roles and two delegated scopes, v2 tokens) and a daemon client
    granted ``granted``."""
    api = idp.register_api(app_id_uri=DEMO_API, roles=DEMO_ROLES, scopes=DEMO_SCOPES)
    daemon = idp.register_client(name="orders-daemon", roles={DEMO_API: list(granted)}, secret=True)
    return api, daemon


def register_demo_sign_in(
    idp: EntraEmulator,
    *,
    spa_redirect_uris: Sequence[str] = DEMO_SPA_REDIRECT_URIS,
) -> tuple[ClientRegistration, ClientRegistration, EmulatorUser]:
    """After :func:`register_demo`: an SPA client (Swagger UI) and a public client, both
    consented to ``Orders.Read``, and a test user (:data:`DEMO_USER`, generated password)."""
    consent = {DEMO_API: ["Orders.Read"]}
    spa = idp.register_client(
        name="orders-docs", type="spa", redirect_uris=spa_redirect_uris, scopes=consent
    )
    native = idp.register_client(
        name="orders-cli", type="public", redirect_uris=[DEMO_PUBLIC_REDIRECT_URI], scopes=consent
    )
    user = idp.register_user(upn=DEMO_USER, name="Adele Vance")
    return spa, native, user


def run_emulator(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    try:
        idp = EntraEmulator(
            tenant_id=args.tenant_id, https=args.https, host=args.host, port=args.port
        )
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        idp.start()
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc}", EXIT_USAGE)
    try:
        if args.registrations:
            registrations = idp.load_registrations(args.registrations)
            apis, clients = list(registrations.apis), list(registrations.clients)
            users = list(registrations.users)
        else:
            api, daemon = register_demo(idp)
            spa, native, user = register_demo_sign_in(idp)
            apis, clients, users = [api], [daemon, spa, native], [user]
    except (OSError, ValueError) as exc:
        idp.close()
        return fail(f"cannot load registrations: {exc}", EXIT_USAGE)
    _stop_on_sigterm()
    try:  # Ctrl-C may come at any moment from here on, and always means a clean stop
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(describe_json(idp, apis, clients, users)) + "\n")
        else:
            describe(idp, apis, clients, out=sys.stdout, users=users)
            sys.stdout.write("Press Ctrl-C to stop.\n")
        sys.stdout.flush()
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        idp.close()
    return EXIT_OK


def _stop_on_sigterm() -> None:
    """Make SIGTERM (kill, a service manager) and SIGINT stop as cleanly as Ctrl-C: the
    generated CA and server key are deleted on the way out, not left in the temporary
    directory. SIGINT is set too because a shell starts background jobs with it ignored, and
    Python then leaves it ignored: ``kill -INT`` would do nothing."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set there; tests run the command in threads

    def interrupt(signum: int, frame: object) -> None:
        for stop in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut the clean-up
            signal.signal(stop, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def describe(
    idp: EntraEmulator,
    apis: list[ApiRegistration],
    clients: list[ClientRegistration],
    *,
    out: TextIO,
    users: Sequence[EmulatorUser] = (),
) -> None:
    """Endpoints, registrations and a ready-to-paste configuration."""
    base = f"{idp.instance}/{idp.tenant_id}"
    lines = [
        "entra-guard emulator: a local Microsoft Entra ID",
        f"  instance     {idp.instance}",
        f"  tenant       {idp.tenant_id}",
        f"  metadata v2  {base}/v2.0/.well-known/openid-configuration",
        f"  metadata v1  {base}/.well-known/openid-configuration",
        f"  authorize    {idp.authorize_endpoint()}",
        f"  token        {base}/oauth2/v2.0/token",
        f"  Graph        {idp.graph_url}  (a stand-in for Microsoft Graph: /me, /users, groups)",
    ]
    if idp.ca_bundle:
        lines.append(f"  CA bundle    {idp.ca_bundle}")
    lines.append("Registrations")
    for api in apis:
        lines.append(
            f"  API     {api.app_id_uri or '(no App ID URI)'}  client id {api.client_id}  "
            f"roles {', '.join(api.roles) or '-'}  scopes {', '.join(api.scopes) or '-'}  "
            f"v{api.access_token_version} tokens"
        )
    for client in clients:
        granted = "; ".join(f"{', '.join(r)}" for r in client.roles.values()) or "-"
        consented = "; ".join(f"{', '.join(s)}" for s in client.scopes.values()) or "-"
        kind = "" if client.type == "confidential" else f" ({client.type})"
        lines.append(
            f"  client  {client.name}{kind}  client id {client.client_id}  roles {granted}  "
            f"scopes {consented}"
        )
        if client.redirect_uris:
            lines.append(f"          redirect URIs {' '.join(client.redirect_uris)}")
        if client.secret:
            lines.append(f"          secret {client.secret}  (the emulator's; for local use only)")
    for user in users:
        lines.append(
            f"  user    {user.upn}  password {user.password}  object id {user.object_id}"
            "  (sign in at the authorize endpoint; for local use only)"
        )
    if apis:
        api = apis[0]
        audiences = ",".join(a for a in (api.client_id, api.app_id_uri) if a)
        lines += [
            "Configure an API to trust it:",
            f"  export ENTRA_TENANT_ID={idp.tenant_id}",
            f"  export ENTRA_AUDIENCES={audiences}",
            f"  export ENTRA_INSTANCE={idp.instance}",
        ]
        if idp.ca_bundle:
            lines.append(f"  export ENTRA_CA_BUNDLE={shlex.quote(idp.ca_bundle)}")
        spa = next((client for client in clients if client.type == "spa"), None)
        if spa is not None:  # the example API's Swagger UI sign-in (swagger_login's client_id)
            lines.append(f"  export ENTRA_SWAGGER_CLIENT_ID={spa.client_id}")
        if clients and clients[0].secret:
            scope = f"{api.app_id_uri or api.client_id}/.default"
            ca = f" --ca-bundle {shlex.quote(idp.ca_bundle)}" if idp.ca_bundle else ""
            lines += [
                "Get a token:",
                f"  ENTRA_CLIENT_SECRET='{clients[0].secret}' entra-guard token --instance "
                f"{idp.instance} --tenant-id {idp.tenant_id} --client-id {clients[0].client_id} "
                f"--scope {scope}{ca}",
            ]
    out.write("\n".join(lines) + "\n")


def describe_json(
    idp: EntraEmulator,
    apis: Sequence[ApiRegistration],
    clients: Sequence[ClientRegistration],
    users: Sequence[EmulatorUser],
) -> dict[str, Any]:
    """What :func:`describe` says, as one JSON-ready object for scripts.

    Roles and scopes are keyed by the API's App ID URI (its client id when it has none).
    """
    names = {api.client_id: api.app_id_uri or api.client_id for api in apis}

    def by_api(grants: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        return {names.get(api, api): list(values) for api, values in grants.items()}

    return {
        "instance": idp.instance,
        "tenant_id": idp.tenant_id,
        "ca_bundle": idp.ca_bundle,
        "metadata": idp.metadata_url(),
        "metadata_v1": idp.metadata_url(version="1.0"),
        "authorization_endpoint": idp.authorize_endpoint(),
        "token_endpoint": idp.token_endpoint(),
        "graph_url": idp.graph_url,
        "apis": [
            {
                "app_id_uri": api.app_id_uri,
                "client_id": api.client_id,
                "roles": list(api.roles),
                "scopes": list(api.scopes),
                "access_token_version": api.access_token_version,
            }
            for api in apis
        ],
        "clients": [
            {
                "name": client.name,
                "client_id": client.client_id,
                "type": client.type,
                "redirect_uris": list(client.redirect_uris),
                "roles": by_api(client.roles),
                "scopes": by_api(client.scopes),
                "secrets": list(client.secrets),
            }
            for client in clients
        ],
        "users": [
            {
                "upn": user.upn,
                "password": user.password,
                "name": user.name,
                "object_id": user.object_id,
                "groups": list(user.groups),
                "roles": by_api(user.roles),
                "guest": user.guest,
            }
            for user in users
        ],
    }
