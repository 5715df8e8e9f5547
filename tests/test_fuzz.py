"""A brief run of the parser's fuzz target (fuzz/fuzz_parser.py), as CI's share of fuzzing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_the_parser_survives_a_short_fuzzing_run(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "fuzz" / "fuzz_parser.py"), str(tmp_path),
         str(ROOT / "fuzz" / "corpus" / "parser"), "-max_total_time=5", "-timeout=5"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DONE" in result.stderr
