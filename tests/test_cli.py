"""The entra-guard command line, in process and as a real subprocess, against the emulator."""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import io
import itertools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

import entra_guard
from entra_guard.cli import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
)
from entra_guard.cli.demo import EXAMPLE_MODULE
from entra_guard.cli.emulator import DEMO_API, register_demo, run_emulator
from entra_guard.testing import EntraEmulator
from entra_guard.validation import TokenValidator
from tests.processes import CLEAN_ENV, Output, example_api_shell_line, stop, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "entra_guard.cli"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_demo_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty directory: nothing of the checkout in reach
    assert main(["demo"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "[FAIL]" not in out
    assert "All 15 outcomes were the expected ones." in out
    assert re.search(
        r"\[ok\] GET /me/profile, Graph on behalf of the user +-> 200 \(expected 200\), "
        r"adele@contoso.test from Graph",
        out,
    )
    assert re.search(r"\[ok\] token: a user signs in \(code \+ PKCE\) +adele@contoso.test", out)
    assert re.search(r"GET /orders, user with scope Orders.Read +-> 200 \(expected 200\)", out)
    assert re.search(
        r"POST /orders, user lacking role Orders.Write +-> 403 \(expected 403\) "
        r"insufficient_scope: This operation requires app role Orders.Write",
        out,
    )
    assert "-> 403 (expected 403)" in out
    assert "-> 401 (expected 401) invalid_token" in out


def test_the_example_api_ships_inside_the_package() -> None:
    # The wheel holds the package and nothing beside it: the demo's example must be inside.
    spec = importlib.util.find_spec(EXAMPLE_MODULE)
    assert spec is not None
    assert spec.origin is not None
    package = Path(entra_guard.__file__).resolve().parent
    assert Path(spec.origin).resolve().is_relative_to(package)


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"entra-guard {metadata.version('entra-guard')}\n"
    printed = subprocess.run(  # noqa: S603
        [*CLI, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert printed == f"entra-guard {declared.group(1)}\n"


@pytest.mark.parametrize("command", [[], ["emulator"], ["token"], ["inspect"], ["demo"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: entra-guard" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--tenant-id", "x"])
    assert exit_.value.code == EXIT_USAGE
    assert "required" in capsys.readouterr().err


def test_token_with_a_secret(
    entra_emulator: EntraEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, daemon = register_demo(entra_emulator)
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", daemon.secret or "")
    base = ["token", "--instance", entra_emulator.instance, "--tenant-id", entra_emulator.tenant_id,
            "--client-id", daemon.client_id, "--scope", f"{DEMO_API}/.default"]  # fmt: skip
    assert main(base) == EXIT_OK
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2
    assert main([*base, "--json"]) == EXIT_OK
    answer = json.loads(capsys.readouterr().out)
    assert answer["token_type"] == "Bearer"
    assert 3000 < answer["expires_in"] <= 3600
    assert answer["access_token"].count(".") == 2  # each run is a new client: a new token

    async def check() -> set[str]:
        async with TokenValidator(entra_emulator.config(audiences=[api.client_id])) as validator:
            return set((await validator.validate(token)).roles)

    assert asyncio.run(check()) == {"Orders.Read", "Orders.Write"}


def test_token_errors(
    entra_emulator: EntraEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, daemon = register_demo(entra_emulator)
    args = ["token", "--instance", entra_emulator.instance, "--tenant-id", entra_emulator.tenant_id,
            "--client-id", daemon.client_id, "--scope", f"{DEMO_API}/.default"]  # fmt: skip
    monkeypatch.delenv("ENTRA_CLIENT_SECRET", raising=False)
    assert main(args) == EXIT_USAGE
    assert "ENTRA_CLIENT_SECRET" in capsys.readouterr().err

    assert main([*args, "--client-secret", "wrong"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "AADSTS7000215" in err
    assert "wrong" not in err.replace("wrong secret", "")  # the secret is never echoed

    assert main([*args, "--scope", DEMO_API, "--client-secret", "x"]) == EXIT_USAGE
    assert "/.default" in capsys.readouterr().err

    unreachable = [*args, "--client-secret", "x", "--instance", f"http://127.0.0.1:{closed_port()}"]
    assert main(unreachable) == EXIT_UNREACHABLE


def test_token_scope_hints_name_the_resource_meant(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _, daemon = register_demo(entra_emulator)
    args = ["token", "--instance", entra_emulator.instance, "--tenant-id", entra_emulator.tenant_id,
            "--client-id", daemon.client_id, "--client-secret", daemon.secret or ""]  # fmt: skip
    assert main([*args, "--scope", DEMO_API]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"ask for '{DEMO_API}/.default'" in err
    assert "api://.default" not in err
    assert main([*args, "--scope", "Orders.Read"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "does not say which API it is for" in err
    assert "'<resource>/.default'" in err
    assert "Orders.Read/.default" not in err
    assert entra_emulator.token_request_count() == 0  # refused before any request
    assert daemon.secret
    assert daemon.secret not in err


def test_token_with_a_certificate_over_https(
    entra_emulator_https: EntraEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idp = entra_emulator_https
    idp.register_api(app_id_uri=DEMO_API, roles=["Orders.Read"])
    client = idp.register_client(name="c", roles={DEMO_API: ["Orders.Read"]}, secret=False,
                                 certificate=True)  # fmt: skip
    pem = tmp_path / "client.pem"
    pem.write_bytes((client.private_key_pem or b"") + (client.certificate_pem or b""))
    args = [
        "token",
        "--instance",
        idp.instance,
        "--tenant-id",
        idp.tenant_id,
        "--client-id",
        client.client_id,
        "--scope",
        f"{DEMO_API}/.default",
        "--certificate",
        str(pem),
    ]
    assert main(args) == EXIT_UNREACHABLE  # the emulator's CA is not trusted by default
    assert "certificate is not trusted: give --ca-bundle" in capsys.readouterr().err
    assert main([*args, "--ca-bundle", str(idp.ca_bundle)]) == EXIT_OK
    assert capsys.readouterr().out.count(".") == 2
    # what `entra-guard emulator --https` prints to export is enough, as for the API
    monkeypatch.setenv("ENTRA_CA_BUNDLE", str(idp.ca_bundle))
    assert main(args) == EXIT_OK
    assert capsys.readouterr().out.count(".") == 2


def test_inspect_explains_keys_it_cannot_have(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --tenant-id: what the identity provider said and the token's tenant, not a bare
    "try again later" and a stray "retrying in 1 s" log line on stderr."""
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    wrong = "11111111-1111-1111-1111-111111111111"
    args = ["inspect", token, "--tenant-id", wrong, "--audience", "api://x",
            "--instance", entra_emulator.instance]  # fmt: skip
    assert main(args) == EXIT_UNREACHABLE
    out, err = capsys.readouterr()
    assert "[FAIL] signing key" in out
    assert "AADSTS90002" in out
    assert "check tenant_id (ENTRA_TENANT_ID)" in out
    assert f"tid {json.dumps(entra_emulator.tenant_id)}" in out
    assert f"keys of tenant {wrong}" in out
    assert "retrying" not in err


def test_inspect_says_a_usage_error_before_any_output(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert main(["inspect", token, "--tenant-id", entra_emulator.tenant_id]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert "checking needs --tenant-id and --audience" in err


def test_inspect_decodes_and_checks(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = entra_emulator.issue_token(roles=["Orders.Read"])
    assert main(["inspect", token]) == EXIT_OK
    out = capsys.readouterr().out
    assert "client application id (v2)" in out
    assert "expires at:" in out
    assert "(in 60 min)" in out or "(in 59 min)" in out

    check = [
        "inspect",
        token,
        "--tenant-id",
        entra_emulator.tenant_id,
        "--audience",
        entra_emulator.config().audiences[0],
        "--instance",
        entra_emulator.instance,
    ]
    assert main(check) == EXIT_OK
    out = capsys.readouterr().out
    for name in ("header", "signing key", "signature", "lifetime", "issuer", "audience", "client"):
        assert f"[pass] {name}" in out
    assert "Result: valid" in out


def test_inspect_with_config_trusts_the_configured_ca_bundle(
    entra_emulator_https: EntraEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``inspect --config`` follows ENTRA_CA_BUNDLE, as the API it explains does."""
    idp = entra_emulator_https
    token = idp.issue_token(roles=["Orders.Read"])
    monkeypatch.setenv("ENTRA_TENANT_ID", idp.tenant_id)
    monkeypatch.setenv("ENTRA_AUDIENCES", idp.config().audiences[0])
    monkeypatch.setenv("ENTRA_INSTANCE", idp.instance)
    assert main(["inspect", token, "--config"]) == EXIT_UNREACHABLE  # the CA is not trusted
    capsys.readouterr()
    monkeypatch.setenv("ENTRA_CA_BUNDLE", str(idp.ca_bundle))
    assert main(["inspect", token, "--config"]) == EXIT_OK
    assert "Result: valid" in capsys.readouterr().out


def test_inspect_shows_every_failed_check(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    now = 1_800_000_000  # 2027-01-15 08:00:00 UTC
    token = entra_emulator.issue_token(roles=[], audience="api://other", now=now - 7200)
    check = ["inspect", token, "--tenant-id", entra_emulator.tenant_id, "--audience",
             "api://mine", "--audience", "api://mine2", "--instance", entra_emulator.instance,
             "--now", str(now)]  # fmt: skip
    assert main(check) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "[pass] signature" in out
    assert "Result: refused with 401 (token_expired)" in out
    # each failure: what the token says against what this API expects
    lifetime = section(out, "[FAIL] lifetime")
    assert "exp 2027-01-15 07:00:00 UTC (1 h ago)" in lifetime
    assert "now 2027-01-15 08:00:00 UTC, leeway 60 s" in lifetime
    assert "before exp + leeway = 2027-01-15 07:01:00 UTC" in lifetime
    audience = section(out, "[FAIL] audience")
    assert 'token     aud "api://other"' in audience
    assert "expected  one of api://mine, api://mine2" in audience
    permissions = section(out, "[FAIL] permissions")
    assert "roles absent, scp absent" in permissions
    assert "at least one app role (roles) or scope (scp)" in permissions


def test_inspect_shows_the_tenant_and_issuer_expected(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    token = entra_emulator.issue_token(roles=["r"], tenant_id=other)  # genuinely signed
    audience = entra_emulator.config().audiences[0]
    single = ["inspect", token, "--tenant-id", entra_emulator.tenant_id, "--audience", audience,
              "--instance", entra_emulator.instance]  # fmt: skip
    assert main(single) == EXIT_FAILED
    issuer = section(capsys.readouterr().out, "[FAIL] issuer")
    assert f'tid "{other}"' in issuer
    assert f'expected  iss "{entra_emulator.instance}/{entra_emulator.tenant_id}/v2.0"' in issuer
    assert f"tid {entra_emulator.tenant_id}" in issuer

    allowed = "66666666-7777-8888-9999-000000000000"
    multi = ["inspect", token, "--tenant-id", "organizations", "--allowed-tenant", allowed,
             "--audience", audience, "--instance", entra_emulator.instance]  # fmt: skip
    assert main(multi) == EXIT_FAILED
    out = capsys.readouterr().out
    issuer = section(out, "[FAIL] issuer")
    assert "(tenant_not_allowed)" in issuer
    assert f'token     iss "{entra_emulator.instance}/{other}/v2.0", tid "{other}"' in issuer
    assert f"tid one of {allowed}" in issuer


def test_inspect_after_a_failed_signature_marks_the_claims_unverified(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    header, payload, signature = entra_emulator.issue_token(roles=["Orders.Read"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["Orders.Write"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    check = ["inspect", f"{header}.{forged}.{signature}", "--tenant-id", entra_emulator.tenant_id,
             "--audience", claims["aud"], "--instance", entra_emulator.instance]  # fmt: skip
    assert main(check) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "[FAIL] signature" in out
    for name in ("lifetime", "issuer", "audience", "client", "permissions"):
        assert f"[unverified] {name:<12} would pass" in out
        assert f"[pass] {name}" not in out
    assert "Result: refused with 401 (invalid_signature)" in out

    unknown_key = entra_emulator.issue_token(roles=["r"], key=EntraEmulator.generate_key())
    assert main([*check[:1], unknown_key, *check[2:]]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "[FAIL] signing key" in out
    assert "[unverified] issuer       not checked without the signing key" in out
    assert "[pass]" not in out.split("[FAIL] signing key", 1)[1]


def test_inspect_into_a_closed_pipe_exits_quietly(entra_emulator: EntraEmulator) -> None:
    # `entra-guard inspect ... | head -1` where head has gone before the output arrives
    token = entra_emulator.issue_token(roles=["r"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(  # noqa: S603
            [*CLI, "inspect", token, "--tenant-id", entra_emulator.tenant_id, "--audience",
             entra_emulator.config().audiences[0], "--instance", entra_emulator.instance],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == EXIT_BROKEN_PIPE


def section(out: str, start: str) -> str:
    """The line of ``out`` that contains ``start``, and the evidence lines under it."""
    lines = out[out.index(start) :].splitlines()
    evidence = itertools.takewhile(lambda line: line.startswith("      "), lines[1:])
    return "\n".join([lines[0], *evidence])


def test_inspect_explains_times_no_clock_can_hold(
    entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = entra_emulator.issue_token(roles=["r"], claims={"exp": 10**400, "nbf": 1e308})
    audience = entra_emulator.config().audiences[0]
    check = ["inspect", token, "--tenant-id", entra_emulator.tenant_id, "--audience", audience,
             "--instance", entra_emulator.instance]  # fmt: skip
    assert main(check) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "expires at: not a time from 1970 to 9999" in out
    assert "not valid before: not a time from 1970 to 9999" in out
    assert "[FAIL] lifetime" in out
    assert "(invalid_claim)" in out


def test_inspect_errors(entra_emulator: EntraEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "not-a-token"]) == EXIT_FAILED
    assert "not a JWT" in capsys.readouterr().err
    token = entra_emulator.issue_token(roles=["r"])
    assert main(["inspect", token, "--tenant-id", entra_emulator.tenant_id]) == EXIT_USAGE
    down = ["inspect", token, "--tenant-id", entra_emulator.tenant_id, "--audience", "x",
            "--instance", f"http://127.0.0.1:{closed_port()}"]  # fmt: skip
    assert main(down) == EXIT_UNREACHABLE
    assert "keys_unavailable" in capsys.readouterr().out


def test_inspect_reads_stdin_and_a_bearer_prefix(
    entra_emulator: EntraEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = entra_emulator.issue_token(roles=["r"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Bearer {token}\n"))
    assert main(["inspect", "-"]) == EXIT_OK
    assert entra_emulator.tenant_id in capsys.readouterr().out


def test_emulator_command_prints_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    args = argparse.Namespace(host="127.0.0.1", port=0, https=False, tenant_id=None,
                              registrations=None)  # fmt: skip
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_emulator(args, stop=stop)))
    thread.start()
    out = ""
    for _ in range(500):  # bounded: at most 10 s
        out += capsys.readouterr().out
        if "Press Ctrl-C" in out:
            break
        time.sleep(0.02)
    stop.set()
    thread.join(10)
    assert result == [EXIT_OK]
    assert "API     api://entra-guard-demo" in out
    assert "client  orders-daemon" in out
    assert "export ENTRA_INSTANCE=http://127.0.0.1:" in out
    # Beside the daemon: who signs in, and the clients they sign in with.
    assert re.search(r"client  orders-docs \(spa\)  client id [0-9a-f-]{36}", out)
    assert "redirect URIs http://localhost:8000/docs/oauth2-redirect" in out
    assert "client  orders-cli (public)" in out
    assert re.search(r"user    adele@contoso\.test  password \S{16,}", out)
    assert "/oauth2/v2.0/authorize" in out


def _ignoring_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background"])
@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_emulator_command_as_a_process(stop_with: signal.Signals, sigint_ignored: bool) -> None:
    """Ctrl-C and SIGTERM alike stop it cleanly: its CA and server key do not stay behind;
    SIGINT too when started as a shell's background job (SIGINT ignored on entry)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lines = []
    with subprocess.Popen(  # noqa: S603
        [*CLI, "emulator", "--https"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=_ignoring_sigint if sigint_ignored else None,  # noqa: PLW1509
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.append(line)
                if line.startswith("Press Ctrl-C"):
                    break
        finally:
            process.send_signal(stop_with)
            try:
                status = process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()  # or leaving the with block would wait for it for ever
                raise
            assert status == 0
    text = "".join(lines)
    ca_bundle = Path(text.split("export ENTRA_CA_BUNDLE=", 1)[1].split()[0])
    assert ca_bundle.name == "ca.pem"
    assert not ca_bundle.parent.exists()
    assert "instance     https://127.0.0.1:" in text
    assert "CA bundle" in text
    assert "export ENTRA_TENANT_ID=" in text
    assert "export ENTRA_CA_BUNDLE=/" in text
    assert re.search(r"export ENTRA_SWAGGER_CLIENT_ID=[0-9a-f-]{36}\n", text)
    assert re.search(r"  Graph        https://127\.0\.0\.1:\d+/v1\.0 ", text)
    assert "entra-guard token --instance https://127.0.0.1:" in text


def test_an_api_run_with_the_printed_https_exports_accepts_the_emulators_tokens() -> None:
    """What a user does: start the emulator, paste its export lines, run the example API."""
    with subprocess.Popen(  # noqa: S603
        [*CLI, "emulator", "--https"], stdout=subprocess.PIPE, text=True, env=CLEAN_ENV, cwd=ROOT
    ) as emulator:
        try:
            assert emulator.stdout is not None
            printed = Output(emulator.stdout).until("Press Ctrl-C").splitlines()
            exports = [line.strip() for line in printed if line.strip().startswith("export ")]
            assert any(line.startswith("export ENTRA_CA_BUNDLE=") for line in exports)
            get_a_token = printed[printed.index("Get a token:") + 1].strip()
            log = _call_the_example_api(exports, get_a_token)
        finally:
            assert stop(emulator, signal.SIGINT) == 0
    assert "CERTIFICATE_VERIFY_FAILED" not in log


def _call_the_example_api(exports: list[str], get_a_token: str) -> str:
    """Run the example API under uvicorn after ``exports``; GET /orders with the token that
    ``get_a_token`` (a shell line) prints must be answered 200. Returns the API's log."""
    port = closed_port()
    with subprocess.Popen(  # noqa: S603
        ["/bin/sh", "-c", "\n".join([*exports, example_api_shell_line(port)])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
        cwd=ROOT,
    ) as api:
        assert api.stderr is not None
        log = Output(api.stderr)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/health", api)
            token = subprocess.run(  # noqa: S603
                ["/bin/sh", "-c", get_a_token],
                capture_output=True,
                text=True,
                env=CLEAN_ENV,
                timeout=30,
                check=True,
            ).stdout.strip()
            answer = httpx.get(
                f"http://127.0.0.1:{port}/orders", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200, (answer.text, stop(api), log.rest())
            assert answer.json()[0]["item"] == "coffee beans"
        finally:
            stop(api)
        return log.rest()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])  # noqa: S104
def test_the_emulator_listens_on_loopback_only(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It hands out secrets and passwords to whoever asks: never beyond this machine."""
    assert main(["emulator", "--host", host]) == EXIT_USAGE
    assert "host must be a loopback address" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "extra"), [("emulator", "testing"), ("demo", "demo")])
def test_a_command_whose_extra_is_missing_says_which_to_install(command: str, extra: str) -> None:
    """``pip install entra-guard`` is the library alone: no uvicorn, so no emulator or demo."""
    without_uvicorn = (
        "import sys; sys.modules['uvicorn'] = None; "  # what an install without the extra has
        f"from entra_guard.cli import main; sys.exit(main([{command!r}]))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", without_uvicorn],
        capture_output=True, text=True, env=CLEAN_ENV, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.strip() == (
        f"entra-guard: 'entra-guard {command}' needs uvicorn: pip install 'entra-guard[{extra}]'"
    )
    assert "Traceback" not in done.stderr


def test_emulator_json_describes_everything_and_a_user_signs_in_with_it() -> None:
    """What a script does: read the one JSON line, sign the printed user in, redeem the code."""
    with subprocess.Popen(  # noqa: S603
        [*CLI, "emulator", "--https", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
        cwd=ROOT,
    ) as process:
        try:
            assert process.stdout is not None
            first = Output(process.stdout).until("}")
            described = json.loads(first)
            ca = described["ca_bundle"]
            verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
            user = described["users"][0]
            cli = next(c for c in described["clients"] if c["type"] == "public")
            query = {
                "client_id": cli["client_id"],
                "response_type": "code",
                "redirect_uri": "http://localhost:8765",  # the port of a loopback URI is free
                "scope": "api://entra-guard-demo/Orders.Read openid",
                "code_challenge": verifier,
                "code_challenge_method": "plain",
            }
            trust = ssl.create_default_context(cafile=ca)
            with httpx.Client(verify=trust) as browser:
                url = f"{described['authorization_endpoint']}?{urlencode(query)}"
                assert browser.get(url).status_code == 200
                answer = browser.post(url, data={"login": user["upn"], "passwd": user["password"]})
                code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
                tokens = browser.post(
                    described["token_endpoint"],
                    data={
                        "grant_type": "authorization_code",
                        "client_id": cli["client_id"],
                        "code": code,
                        "redirect_uri": "http://localhost:8765",
                        "code_verifier": verifier,
                    },
                ).json()
        finally:
            assert stop(process, signal.SIGINT) == 0
    assert first.count("\n") == 1  # one line, nothing else
    assert set(described) >= {
        "instance", "tenant_id", "ca_bundle", "metadata", "authorization_endpoint",
        "token_endpoint", "graph_url", "apis", "clients", "users",
    }  # fmt: skip
    assert described["metadata"].endswith(
        f"/{described['tenant_id']}/v2.0/.well-known/openid-configuration"
    )
    (api,) = described["apis"]
    assert (api["app_id_uri"], api["scopes"]) == (DEMO_API, ["Orders.Read", "Orders.Write"])
    daemon, spa = described["clients"][0], described["clients"][1]
    assert daemon["type"] == "confidential"
    assert daemon["secrets"]
    assert (spa["type"], spa["secrets"]) == ("spa", [])
    assert spa["scopes"] == {DEMO_API: ["Orders.Read"]}
    assert user["upn"] == "adele@contoso.test"
    assert user["object_id"]
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    assert (claims["oid"], claims["scp"], claims["aud"]) == (
        user["object_id"],
        "Orders.Read",
        api["client_id"],
    )
