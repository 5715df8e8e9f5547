"""A brief run of the parser's fuzz target (fuzz/fuzz_parser.py), as CI's share of fuzzing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def atheris_installs_here() -> bool:
    """Whether the ``dev`` extra installs atheris on this platform: the marker in
    pyproject.toml, read back from the installed package's metadata."""
    for line in importlib.metadata.requires("entra-guard") or []:
        requirement = Requirement(line)
        if requirement.name == "atheris":
            marker = requirement.marker
            return marker is None or marker.evaluate({"extra": "dev"})
    return False


def test_the_parser_survives_a_short_fuzzing_run(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if atheris_installs_here():  # a broken install, not a platform without the fuzzer
            pytest.fail("atheris installs on this platform but is missing: pip install -e '.[dev]'")
        pytest.skip("atheris has no build for this platform (see the dev extra)")
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "fuzz" / "fuzz_parser.py"), str(tmp_path),
         str(ROOT / "fuzz" / "corpus" / "parser"), "-max_total_time=5", "-timeout=5"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DONE" in result.stderr


def test_atheris_is_expected_where_its_wheels_exist() -> None:
    """The check above follows the dev extra's own marker (so it never skips where CI's
    platform installs atheris): on x86-64 Linux with CPython < 3.13 the marker holds."""
    expected = (
        sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 13)
    )
    assert atheris_installs_here() is expected
