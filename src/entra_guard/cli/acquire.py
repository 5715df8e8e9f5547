"""``entra-guard token``: the client-credentials request the portal's guides show with curl."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time

from entra_guard.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, fail
from entra_guard.client import (
    ClientCertificate,
    ClientSecret,
    ConfidentialClient,
    TokenRequestError,
)

__all__ = ["run_token"]


def run_token(args: argparse.Namespace) -> int:
    try:
        credential = _credential(args)
        verify: ssl.SSLContext | bool = True
        if args.ca_bundle:
            verify = ssl.create_default_context(cafile=args.ca_bundle)
        client = ConfidentialClient(
            tenant_id=args.tenant_id,
            client_id=args.client_id,
            credential=credential,
            instance=args.instance,
            verify=verify,
            max_retries=2,
        )
    except (ValueError, OSError) as exc:
        return fail(str(exc), EXIT_USAGE)
    with client:
        try:
            token = client.acquire_token_sync(args.scope)
        except ValueError as exc:
            return fail(str(exc), EXIT_USAGE)
        except TokenRequestError as exc:
            code = EXIT_UNREACHABLE if exc.status_code is None else EXIT_FAILED
            details = f" [{exc.aadsts}]" if exc.aadsts else ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                details += "; the server's certificate is not trusted: give --ca-bundle PEM"
            return fail(f"{exc}{details}", code)
    if args.json:
        answer = {
            "token_type": token.token_type,
            "expires_in": max(0, round(token.expires_at - time.time())),
            "expires_on": round(token.expires_at),
            "scope": args.scope,
            "access_token": token.token,
        }
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    else:
        sys.stdout.write(token.token + "\n")  # the command's whole purpose: stdout, nowhere else
    return EXIT_OK


def _credential(args: argparse.Namespace) -> ClientSecret | ClientCertificate:
    secret = args.client_secret or os.environ.get("ENTRA_CLIENT_SECRET")
    if args.certificate:
        if secret and args.client_secret:
            raise ValueError("give --client-secret or --certificate, not both")
        return ClientCertificate.from_files(args.private_key or args.certificate, args.certificate)
    if not secret:
        raise ValueError("no credential: set ENTRA_CLIENT_SECRET, or give --certificate")
    return ClientSecret(secret)
