"""The suite's own guards: it cannot pass in CI by skipping, and SECURITY.md's table of attacks
points at tests that exist.

With ``CI`` set, a test whose shared real-token fixtures are missing errors instead of skipping:
each case runs pytest in a subprocess on a copy of the real-token tests placed where no
``../shared`` lies beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_without_shared(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    clone = tmp_path / "clone"  # tmp_path / "shared" does not exist
    (clone / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", clone)
    for name in ("__init__.py", "conftest.py", "test_real_tokens.py"):
        shutil.copy(ROOT / "tests" / name, clone / "tests")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("ci", [True, False], ids=["CI", "no-CI"])
def test_missing_real_token_fixtures_error_in_ci_and_skip_elsewhere(
    tmp_path: Path, ci: bool
) -> None:
    result = run_without_shared(tmp_path, ci=ci)
    summary = result.stdout.strip().splitlines()[-1]
    if ci:
        assert result.returncode == 1, result.stdout[-2000:]
        assert " error" in summary
        assert "skipped" not in summary
        assert "CI is set, so this is an error, not a skip" in result.stdout
    else:
        assert result.returncode == 0, result.stdout[-2000:]
        assert " skipped" in summary
        assert "error" not in summary


def test_every_row_of_securitys_attack_table_names_a_test_that_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    table = text[text.index("| attack | what stops it |") :].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]
    assert len(rows) >= 20
    for row in rows:
        named = re.findall(r"`(tests/[a-z_]+\.py)::([a-z_0-9]+)`", row.rsplit("|", 2)[-2])
        assert named, f"no test named for: {row[:60]}"
        for path, test in named:
            source = (ROOT / path).read_text(encoding="utf-8")
            assert f"def {test}(" in source, f"{path}::{test} does not exist"
