"""Fuzz target: the token parser and the claim rules must only ever raise ``InvalidToken``.

Run on demand (atheris, libFuzzer under the hood)::

    .venv/bin/python fuzz/fuzz_parser.py fuzz/corpus/parser -max_total_time=60

The corpus beside this file seeds it with real-shaped tokens; CI runs it briefly
(tests/test_fuzz.py). Any other exception, or a hang, is a finding.
"""

from __future__ import annotations

import sys
from types import MappingProxyType

import atheris

with atheris.instrument_imports(include=["entra_guard"]):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from entra_guard.claims import check_claims
    from entra_guard.config import EntraConfig
    from entra_guard.discovery import KeySet, SigningKey
    from entra_guard.errors import EntraGuardError
    from entra_guard.parsing import parse_token
    from entra_guard.validation import TokenValidator

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONFIG = EntraConfig(tenant_id=TENANT, audiences=["api://orders"])
VALIDATOR = TokenValidator(CONFIG)
KEY = SigningKey(
    kid="k", x5t="k", issuer=None, alg=None,
    public_key=rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
)  # fmt: skip
KEYSET = KeySet(
    version="2.0",
    issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
    jwks_uri="https://login.microsoftonline.com/keys",
    by_kid=MappingProxyType({"k": KEY}),
    by_x5t=MappingProxyType({"k": KEY}),
)


def test_one(data: bytes) -> None:
    token = data.decode("latin-1")
    try:
        parsed = parse_token(token, max_bytes=CONFIG.max_token_bytes)
        VALIDATOR.check_header(parsed.header)
        version = VALIDATOR.token_version(parsed.payload)
        check_claims(
            parsed.payload, config=CONFIG, keyset=KEYSET, key=KEY, version=version, now=1.8e9
        )
    except EntraGuardError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
