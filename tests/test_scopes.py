"""The scope a client-credentials request needs, and the hint when it is given another one."""

from __future__ import annotations

import re

import pytest

from entra_guard.client.scopes import check_scope, default_scopes_for

API_ID = "6514a8ca-d9e4-4155-b292-65258398f3aa"
GRAPH_ID = "00000003-0000-0000-c000-000000000000"

# (what was asked for, the /.default scopes it may have meant: most likely first; none = unknown)
CASES: list[tuple[str, tuple[str, ...]]] = [
    ("api://orders", ("api://orders/.default",)),
    ("api://orders/", ("api://orders/.default",)),
    ("api://orders/Orders.Read", ("api://orders/.default",)),
    ("api://orders/user_impersonation", ("api://orders/.default",)),
    ("api://contoso.com/orders/Orders.Read.All", ("api://contoso.com/orders/.default",)),
    ("https://graph.microsoft.com", ("https://graph.microsoft.com/.default",)),
    ("https://graph.microsoft.com/User.Read", ("https://graph.microsoft.com/.default",)),
    (API_ID, (f"{API_ID}/.default",)),
    (f"{API_ID}/Orders.Read", (f"{API_ID}/.default",)),
    (f"{GRAPH_ID}/User.Read.All", (f"{GRAPH_ID}/.default",)),
    (f"api://{API_ID}", (f"api://{API_ID}/.default",)),
    (f"api://{API_ID}/Orders.Read", (f"api://{API_ID}/.default",)),
    # a plain last word: the end of the App ID URI, or a permission
    (
        "https://contoso.com/orders",
        ("https://contoso.com/orders/.default", "https://contoso.com/.default"),
    ),
    ("api://orders/Orders.Read api://orders/Orders.Write", ("api://orders/.default",)),
    ("api://orders/.default", ("api://orders/.default",)),
    # the resource cannot be told
    ("Orders.Read", ()),
    ("openid", ()),
    ("orders/Orders.Read", ()),
    ("/.default", ()),
    ("api://", ()),
    ("", ()),
    ("api://a/Orders.Read api://b/Orders.Read", ()),
    ("api://a/.default api://b/.default", ()),
]


@pytest.mark.parametrize(("scope", "meant"), CASES)
def test_default_scopes_for(scope: str, meant: tuple[str, ...]) -> None:
    assert default_scopes_for(scope) == meant


@pytest.mark.parametrize(("scope", "meant"), [c for c in CASES if c[0] != "api://orders/.default"])
def test_the_refusal_names_what_to_ask_for(scope: str, meant: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="cannot be asked for with client credentials") as caught:
        check_scope(scope)
    message = str(caught.value)
    advice = message.split("client credentials", 1)[1]  # after the scope given, echoed
    suggested = re.findall(r"'([^'<> ]+/\.default)'", advice)
    assert tuple(suggested) == meant
    assert "roles" in message
    if not meant and len(scope.split()) <= 1:
        assert "does not say which API it is for" in message
        assert "'<resource>/.default'" in message


@pytest.mark.parametrize(
    "scope", ["api://orders/.default", f" {API_ID}/.default ", "urn:orders/.default"]
)
def test_a_default_scope_passes(scope: str) -> None:
    assert check_scope(scope) == scope.strip()
