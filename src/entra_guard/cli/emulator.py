"""``entra-guard emulator``: a local Entra ID in the foreground, and how to point things at it."""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from typing import TextIO

from entra_guard.cli import EXIT_OK, EXIT_USAGE, fail
from entra_guard.testing import EntraEmulator
from entra_guard.testing.registrations import ApiRegistration, ClientRegistration

__all__ = ["DEMO_API", "describe", "register_demo", "run_emulator"]

DEMO_API = "api://entra-guard-demo"
DEMO_ROLES = ("Orders.Read", "Orders.Write")


def register_demo(
    idp: EntraEmulator, *, granted: tuple[str, ...] = DEMO_ROLES
) -> tuple[ApiRegistration, ClientRegistration]:
    """The demo's API (two app roles, v2 tokens) and a daemon client granted ``granted``."""
    api = idp.register_api(app_id_uri=DEMO_API, roles=DEMO_ROLES)
    daemon = idp.register_client(name="orders-daemon", roles={DEMO_API: list(granted)}, secret=True)
    return api, daemon


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
        else:
            api, daemon = register_demo(idp)
            apis, clients = [api], [daemon]
    except (OSError, ValueError) as exc:
        idp.stop()
        return fail(f"cannot load registrations: {exc}", EXIT_USAGE)
    try:  # Ctrl-C may come at any moment from here on, and always means a clean stop
        describe(idp, apis, clients, out=sys.stdout)
        sys.stdout.write("Press Ctrl-C to stop.\n")
        sys.stdout.flush()
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        idp.stop()
    return EXIT_OK


def describe(
    idp: EntraEmulator,
    apis: list[ApiRegistration],
    clients: list[ClientRegistration],
    *,
    out: TextIO,
) -> None:
    """Endpoints, registrations and a ready-to-paste configuration."""
    base = f"{idp.instance}/{idp.tenant_id}"
    lines = [
        "entra-guard emulator: a local Microsoft Entra ID",
        f"  instance     {idp.instance}",
        f"  tenant       {idp.tenant_id}",
        f"  metadata v2  {base}/v2.0/.well-known/openid-configuration",
        f"  metadata v1  {base}/.well-known/openid-configuration",
        f"  token        {base}/oauth2/v2.0/token",
    ]
    if idp.ca_bundle:
        lines.append(f"  CA bundle    {idp.ca_bundle}")
    lines.append("Registrations")
    for api in apis:
        lines.append(
            f"  API     {api.app_id_uri or '(no App ID URI)'}  client id {api.client_id}  "
            f"roles {', '.join(api.roles) or '-'}  v{api.access_token_version} tokens"
        )
    for client in clients:
        granted = "; ".join(f"{', '.join(r)}" for r in client.roles.values()) or "-"
        lines.append(f"  client  {client.name}  client id {client.client_id}  roles {granted}")
        if client.secret:
            lines.append(f"          secret {client.secret}  (the emulator's; for local use only)")
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
