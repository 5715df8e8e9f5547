"""``entra-guard``: the command line.

    entra-guard emulator   run a local Entra ID (http or https) and print how to use it
    entra-guard token      get an app token with client credentials (secret or certificate)
    entra-guard inspect    decode a token and explain it; with a tenant and audience, check it
    entra-guard demo       the whole story offline: emulator, example API, token, four calls

Exit codes: 0 success, 1 a failed outcome (invalid token, refused request, demo mismatch),
2 bad arguments, 3 an endpoint that cannot be reached, 141 the output's reader went away
(``... | head -1``; quietly, as after SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
#: The output's reader went away; 128 + SIGPIPE (13), what a shell reports for a killed writer.
EXIT_BROKEN_PIPE = 141


_CA_BUNDLE_HELP = "CA bundle to trust, e.g. the emulator's (default: $ENTRA_CA_BUNDLE)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entra-guard",
        description="Microsoft Entra ID access tokens for ASGI APIs: tools and a local emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    emulator = commands.add_parser(
        "emulator",
        help="run a local Entra ID emulator",
        description="Run a local Entra ID until interrupted.",
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default %(default)s)"
    )
    emulator.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    emulator.add_argument("--https", action="store_true", help="serve https with a generated CA")
    emulator.add_argument("--tenant-id", help="the tenant GUID (default: a new one)")
    emulator.add_argument(
        "--registrations",
        metavar="FILE",
        help="JSON file of APIs, clients and users (default: a demo API, a daemon, an SPA "
        "and a public client, and a test user)",
    )
    emulator.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (endpoints, APIs, clients, users with their secrets and "
        "passwords) on one line instead of the text, then serve",
    )

    token = commands.add_parser(
        "token",
        help="get an app token with client credentials",
        description="Client-credentials grant against a real tenant or the emulator. The secret "
        "is read from ENTRA_CLIENT_SECRET unless --client-secret is given.",
    )
    token.add_argument("--tenant-id", required=True, help="tenant GUID or domain")
    token.add_argument("--client-id", required=True, help="the calling app's client id")
    token.add_argument("--scope", required=True, help="the API's App ID URI + /.default")
    token.add_argument("--client-secret", help="client secret (prefer ENTRA_CLIENT_SECRET)")
    token.add_argument("--certificate", metavar="PEM", help="certificate (PEM; may hold the key)")
    token.add_argument(
        "--private-key", metavar="PEM", help="private key PEM, if not in --certificate"
    )
    token.add_argument(
        "--instance",
        default="https://login.microsoftonline.com",
        help="authority host (default %(default)s)",
    )
    token.add_argument("--ca-bundle", metavar="PEM", default=os.environ.get("ENTRA_CA_BUNDLE"),
                       help=_CA_BUNDLE_HELP)  # fmt: skip
    token.add_argument("--json", action="store_true", help="print the whole answer as JSON")

    inspect = commands.add_parser(
        "inspect",
        help="decode and explain a token; optionally check it",
        description="Decode a token offline. With --tenant-id and --audience (or --config), "
        "also fetch the tenant's keys and show every check with pass or fail.",
    )
    inspect.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    inspect.add_argument("--tenant-id", help="tenant GUID, organizations, common or consumers")
    inspect.add_argument("--audience", action="append", help="accepted aud (repeatable)")
    inspect.add_argument("--allowed-tenant", action="append", help="multi-tenant allow-list")
    inspect.add_argument("--instance", help="authority host (default: the public cloud)")
    inspect.add_argument("--config", action="store_true", help="read ENTRA_* variables instead")
    inspect.add_argument("--ca-bundle", metavar="PEM", default=os.environ.get("ENTRA_CA_BUNDLE"),
                         help=_CA_BUNDLE_HELP)  # fmt: skip
    inspect.add_argument("--now", type=float, help="check as of this Unix time")

    commands.add_parser(
        "demo",
        help="run the offline demo end to end",
        description="Start the emulator and the example API; get tokens with client "
        "credentials (a secret and a certificate) and by a user's sign-in (authorization code + "
        "PKCE); call a public route, protected ones, ones needing a role the caller lacks, one "
        "with a tampered token, and one that reads the user's profile from the emulator's "
        "Microsoft Graph on behalf of the user. Exit 0 only if every answer is the expected one.",
    )
    return parser


def _version() -> str:
    try:
        return metadata.version("entra-guard")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(build_parser().parse_args(argv))
        finally:  # --help and --version end in SystemExit: their output is flushed here too
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except BrokenPipeError:
        # The reader left (`entra-guard inspect ... | head -1`): stop quietly, as a program killed
        # by SIGPIPE would; later flushes go to devnull instead of failing again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:
        # `pip install entra-guard` is the library alone; the emulator and the demo need extras.
        extra = _EXTRA_OF_COMMAND.get(args.command)
        if extra is None or exc.name not in _EXTRA_MODULES:
            raise
        return fail(
            f"'entra-guard {args.command}' needs {exc.name}: pip install 'entra-guard[{extra}]'",
            EXIT_USAGE,
        )


#: The extra each command needs beyond the library, and the modules only extras install.
_EXTRA_OF_COMMAND = {"emulator": "testing", "demo": "demo"}
_EXTRA_MODULES = frozenset({"uvicorn", "fastapi"})


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "emulator":
        from entra_guard.cli.emulator import run_emulator  # noqa: PLC0415  # import on demand

        return run_emulator(args)
    if args.command == "token":
        from entra_guard.cli.acquire import run_token  # noqa: PLC0415

        return run_token(args)
    if args.command == "inspect":
        from entra_guard.cli.explain import run_inspect  # noqa: PLC0415

        return run_inspect(args)
    from entra_guard.cli.demo import run_demo  # noqa: PLC0415

    return run_demo(args)


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print an error to stderr and return the exit code."""
    print(f"entra-guard: {message}", file=sys.stderr)
    return code
