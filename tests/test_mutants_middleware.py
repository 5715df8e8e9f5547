"""Rules of ``middleware`` that mutation testing found untested (benchmarks/MUTATION.md)."""

from __future__ import annotations

import pytest

from entra_guard.middleware import _route_path


@pytest.mark.parametrize(
    ("path", "root_path", "routed"),
    [
        ("/api/health", "/api", "/health"),
        ("/api", "/api", ""),
        ("/apix/health", "/api", "/apix/health"),  # not a whole segment: left as it is
    ],
)
def test_the_root_path_is_removed_only_as_a_whole_segment(
    path: str, root_path: str, routed: str
) -> None:
    assert _route_path(path, root_path) == routed
