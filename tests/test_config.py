from __future__ import annotations

import copy
import dataclasses
import pickle
import ssl
from pathlib import Path
from typing import Any

import pytest

from entra_guard import EntraConfig
from entra_guard.config import DEFAULT_INSTANCE, ENV_VARIABLES, MSA_TENANT_ID
from entra_guard.testing.tls import TLSMaterial

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "add29489-7269-41f4-8841-b63c95564420"
CLIENT = "6514a8ca-d9e4-4155-b292-65258398f3aa"


def make(**overrides: Any) -> EntraConfig:
    values: dict[str, Any] = {"tenant_id": TENANT, "audiences": ["api://orders"]}
    values.update(overrides)
    return EntraConfig(**values)


def test_defaults_are_the_safe_ones() -> None:
    config = make()
    assert config.instance == DEFAULT_INSTANCE
    assert config.algorithms == ("RS256",)
    assert config.token_versions == ("1.0", "2.0")
    assert config.leeway == 60
    assert config.refresh_interval == 12 * 3600
    assert config.min_refresh_interval == 300
    assert config.last_known_good_lifetime == 24 * 3600
    assert not config.allow_any_tenant
    assert not config.allow_tokens_without_permissions
    assert not config.is_multi_tenant


def test_frozen_and_keyword_only() -> None:
    config = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.leeway = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        EntraConfig(TENANT, ["api://orders"])  # type: ignore[call-arg]


@pytest.mark.parametrize("tenant", [TENANT, TENANT.upper(), "consumers"])
def test_single_tenant_kinds_are_accepted(tenant: str) -> None:
    assert make(tenant_id=tenant).tenant_id == tenant.lower()


@pytest.mark.parametrize("tenant", ["organizations", "common", "Common"])
def test_multi_tenant_needs_an_allow_list(tenant: str) -> None:
    with pytest.raises(ValueError, match="allowed_tenants"):
        make(tenant_id=tenant)
    assert make(tenant_id=tenant, allowed_tenants=[TENANT]).is_multi_tenant
    assert make(tenant_id=tenant, allow_any_tenant=True).allow_any_tenant


def test_allow_list_and_any_tenant_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        make(tenant_id="common", allowed_tenants=[TENANT], allow_any_tenant=True)


def test_allow_list_is_refused_for_a_single_tenant() -> None:
    with pytest.raises(ValueError, match="apply only"):
        make(allowed_tenants=[OTHER])
    with pytest.raises(ValueError, match="apply only"):
        make(allow_any_tenant=True)


@pytest.mark.parametrize("tenant", ["", "contoso.onmicrosoft.com", "not-a-guid", "72f988bf"])
def test_bad_tenant_ids_are_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        make(tenant_id=tenant)


def test_accepts_tenant() -> None:
    assert make().accepts_tenant(TENANT)
    assert not make().accepts_tenant(OTHER)
    listed = make(tenant_id="organizations", allowed_tenants=[TENANT.upper()])
    assert listed.accepts_tenant(TENANT)
    assert not listed.accepts_tenant(OTHER)
    anyone = make(tenant_id="common", allow_any_tenant=True)
    assert anyone.accepts_tenant(OTHER)
    assert not anyone.accepts_tenant("not-a-guid")
    consumers = make(tenant_id="consumers")
    assert consumers.accepts_tenant(MSA_TENANT_ID)
    assert not consumers.accepts_tenant(TENANT)


def test_audiences_compare_exactly_but_ignore_one_trailing_slash() -> None:
    config = make(audiences=["api://orders/", CLIENT])
    assert config.accepts_audience("api://orders")
    assert config.accepts_audience("api://orders/")
    assert config.accepts_audience(CLIENT)
    assert not config.accepts_audience("API://orders")
    assert not config.accepts_audience("api://orders//")
    assert not config.accepts_audience("api://order")


def test_a_single_audience_string_is_one_audience() -> None:
    assert make(audiences="api://orders").audiences == ("api://orders",)


@pytest.mark.parametrize("audiences", [[], [""], [" api://x"], "", [42]])
def test_bad_audiences_are_refused(audiences: Any) -> None:
    with pytest.raises(ValueError, match="audiences"):
        make(audiences=audiences)


@pytest.mark.parametrize(
    "instance",
    [
        "http://login.microsoftonline.com",
        "ftp://login.microsoftonline.com",
        "login.microsoftonline.com",
        "https://login.microsoftonline.com?x=1",
        "https://user:pw@login.microsoftonline.com",
        "http://10.0.0.1:8080",
    ],
)
def test_bad_instances_are_refused(instance: str) -> None:
    with pytest.raises(ValueError, match="instance"):
        make(instance=instance)


@pytest.mark.parametrize(
    "instance",
    [
        "https://login.microsoftonline.us/",
        "https://login.partner.microsoftonline.cn",
        "http://127.0.0.1:8123",
        "http://[::1]:8123",
        "http://localhost:8123",
    ],
)
def test_sovereign_clouds_and_loopback_emulators_are_accepted(instance: str) -> None:
    assert make(instance=instance).instance == instance.rstrip("/")


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["ES256"], [], ["RS256", "HS512"]])
def test_only_rsa_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        make(algorithms=algorithms)


def test_token_versions() -> None:
    assert make(token_versions=["2.0"]).token_versions == ("2.0",)
    with pytest.raises(ValueError, match="token_versions"):
        make(token_versions=["3.0"])
    with pytest.raises(ValueError, match="token_versions"):
        make(token_versions=[])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("leeway", -1),
        ("leeway", 301),
        ("leeway", float("nan")),
        ("leeway", "60"),
        ("leeway", True),
        ("min_refresh_interval", 0),
        ("refresh_interval", 10),  # below min_refresh_interval
        ("last_known_good_lifetime", 60),  # below refresh_interval
        ("fetch_timeout", 0),
        ("max_token_bytes", 10),
    ],
)
def test_bad_numbers_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        make(**{name: value})


def test_client_allow_list() -> None:
    assert make(allowed_client_ids=[CLIENT.upper()]).allowed_client_ids == (CLIENT,)
    with pytest.raises(ValueError, match="allowed_client_ids"):
        make(allowed_client_ids=["my-app"])


def test_tokens_without_permissions_need_a_client_allow_list() -> None:
    with pytest.raises(ValueError, match="allowed_client_ids"):
        make(allow_tokens_without_permissions=True)
    config = make(allow_tokens_without_permissions=True, allowed_client_ids=[CLIENT])
    assert config.allow_tokens_without_permissions


def test_from_env_reads_every_variable() -> None:
    config = EntraConfig.from_env(
        {
            "ENTRA_TENANT_ID": "organizations",
            "ENTRA_AUDIENCES": "api://orders, " + CLIENT,
            "ENTRA_INSTANCE": "https://login.microsoftonline.us",
            "ENTRA_ALLOWED_TENANTS": f"{TENANT},{OTHER}",
            "ENTRA_ALLOWED_CLIENT_IDS": CLIENT,
            "ENTRA_LEEWAY_SECONDS": "30",
            "ENTRA_TOKEN_VERSIONS": "2.0",
            "ENTRA_REFRESH_INTERVAL_SECONDS": "3600",
            "ENTRA_FETCH_TIMEOUT_SECONDS": "2.5",
            "ENTRA_TOKEN_CACHE_SIZE": "0",
            "ENTRA_MAX_TOKEN_BYTES": "20000",
            "ENTRA_MAX_DOCUMENT_BYTES": "65536",
            "ENTRA_ALLOW_TOKENS_WITHOUT_PERMISSIONS": "false",
            "ENTRA_ALGORITHMS": "RS256,PS256",
            "ENTRA_MIN_REFRESH_INTERVAL_SECONDS": "60",
            "ENTRA_LAST_KNOWN_GOOD_SECONDS": "7200",
        }
    )
    assert config.tenant_id == "organizations"
    assert config.audiences == ("api://orders", CLIENT)
    assert config.instance == "https://login.microsoftonline.us"
    assert config.allowed_tenants == (TENANT, OTHER)
    assert config.allowed_client_ids == (CLIENT,)
    assert config.leeway == 30
    assert config.token_versions == ("2.0",)
    assert config.refresh_interval == 3600
    assert config.fetch_timeout == 2.5
    assert config.token_cache_size == 0
    assert (config.max_token_bytes, config.max_document_bytes) == (20000, 65536)
    assert not config.allow_tokens_without_permissions
    assert config.algorithms == ("RS256", "PS256")
    assert (config.min_refresh_interval, config.last_known_good_lifetime) == (60, 7200)


def test_from_env_booleans_and_defaults() -> None:
    config = EntraConfig.from_env(
        {
            "ENTRA_TENANT_ID": "common",
            "ENTRA_AUDIENCES": "api://orders",
            "ENTRA_ALLOW_ANY_TENANT": "true",
        }
    )
    assert config.allow_any_tenant
    assert config.leeway == 60
    assert config.instance == DEFAULT_INSTANCE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENTRA_AUDIENCES": "api://x"}, "ENTRA_TENANT_ID"),
        ({"ENTRA_TENANT_ID": TENANT}, "ENTRA_AUDIENCES"),
        (
            {"ENTRA_TENANT_ID": TENANT, "ENTRA_AUDIENCES": "x", "ENTRA_LEEWAY_SECONDS": "soon"},
            "LEEWAY",
        ),
        (
            {
                "ENTRA_TENANT_ID": "common",
                "ENTRA_AUDIENCES": "x",
                "ENTRA_ALLOW_ANY_TENANT": "maybe",
            },
            "ALLOW_ANY_TENANT",
        ),
    ],
)
def test_from_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EntraConfig.from_env(env)


def env(**variables: str) -> dict[str, str]:
    """A valid environment, changed by ``variables`` (names without the ``ENTRA_`` prefix)."""
    values = {"TENANT_ID": TENANT, "AUDIENCES": "api://orders", **variables}
    return {f"ENTRA_{name}": value for name, value in values.items()}


@pytest.mark.parametrize(
    "instance",
    [
        f"https://login.microsoftonline.com/{TENANT}/v2.0",
        f"https://login.microsoftonline.com/{TENANT}",
        "https://login.microsoftonline.com/common/",
        "https://login.microsoftonline.com/v2.0",
        "http://127.0.0.1:8123/prefix",
        "https://login.microsoftonline.com:99999",
        "https://login.microsoftonline.com#frag",
    ],
)
def test_instance_is_scheme_host_and_port_only(instance: str) -> None:
    with pytest.raises(ValueError, match=r"^instance .* (must|has an invalid port)"):
        make(instance=instance)
    with pytest.raises(ValueError, match=r"^ENTRA_INSTANCE: instance"):
        EntraConfig.from_env(env(INSTANCE=instance))


def test_instance_with_a_path_says_what_to_drop() -> None:
    authority = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    with pytest.raises(ValueError, match="path") as refused:
        EntraConfig.from_env(env(INSTANCE=authority))
    message = str(refused.value)
    assert message.startswith("ENTRA_INSTANCE: ")
    assert f"'/{TENANT}/v2.0'" in message
    assert DEFAULT_INSTANCE in message


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"TENANT_ID": "contoso.onmicrosoft.com"}, "ENTRA_TENANT_ID"),
        ({"TENANT_ID": " "}, "ENTRA_TENANT_ID"),
        ({"AUDIENCES": " , "}, "ENTRA_AUDIENCES"),
        ({"ALLOWED_TENANTS": TENANT}, "ENTRA_ALLOWED_TENANTS, ENTRA_ALLOW_ANY_TENANT"),
        ({"TENANT_ID": "common", "ALLOWED_TENANTS": "contoso"}, "ENTRA_ALLOWED_TENANTS"),
        ({"TENANT_ID": "common"}, "ENTRA_ALLOWED_TENANTS, ENTRA_ALLOW_ANY_TENANT"),
        ({"ALLOWED_CLIENT_IDS": "daemon"}, "ENTRA_ALLOWED_CLIENT_IDS"),
        (
            {"ALLOW_TOKENS_WITHOUT_PERMISSIONS": "true"},
            "ENTRA_ALLOW_TOKENS_WITHOUT_PERMISSIONS, ENTRA_ALLOWED_CLIENT_IDS",
        ),
        ({"TOKEN_VERSIONS": "3.0"}, "ENTRA_TOKEN_VERSIONS"),
        ({"ALGORITHMS": "HS256"}, "ENTRA_ALGORITHMS"),
        ({"LEEWAY_SECONDS": "400"}, "ENTRA_LEEWAY_SECONDS"),
        ({"LEEWAY_SECONDS": "nan"}, "ENTRA_LEEWAY_SECONDS"),
        ({"MAX_TOKEN_BYTES": "10"}, "ENTRA_MAX_TOKEN_BYTES"),
        ({"TOKEN_CACHE_SIZE": "1.5"}, "ENTRA_TOKEN_CACHE_SIZE"),
        ({"TOKEN_CACHE_SIZE": "inf"}, "ENTRA_TOKEN_CACHE_SIZE"),
        ({"REFRESH_INTERVAL_SECONDS": "10"}, "ENTRA_REFRESH_INTERVAL_SECONDS"),
        ({"MIN_REFRESH_INTERVAL_SECONDS": "0"}, "ENTRA_MIN_REFRESH_INTERVAL_SECONDS"),
        ({"LAST_KNOWN_GOOD_SECONDS": "60"}, "ENTRA_LAST_KNOWN_GOOD_SECONDS"),
        ({"FETCH_TIMEOUT_SECONDS": "0"}, "ENTRA_FETCH_TIMEOUT_SECONDS"),
        ({"MAX_DOCUMENT_BYTES": "12"}, "ENTRA_MAX_DOCUMENT_BYTES"),
        ({"CA_BUNDLE": "/nonexistent/ca.pem"}, "ENTRA_CA_BUNDLE"),
    ],
)
def test_every_from_env_error_starts_with_the_variable(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        EntraConfig.from_env(env(**variables))
    assert str(refused.value).startswith(f"{named}: ")


def test_every_field_has_an_environment_variable() -> None:
    fields = {f.name for f in dataclasses.fields(EntraConfig) if f.init}
    # A function cannot come from the environment.
    assert set(ENV_VARIABLES) == fields - {"tenant_allowed"}
    assert all(name.startswith("ENTRA_") for name in ENV_VARIABLES.values())


def test_ca_bundle_is_loaded_at_construction(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(TLSMaterial().ca_pem)
    config = EntraConfig.from_env(env(CA_BUNDLE=str(bundle)))
    assert config.ca_bundle == str(bundle)
    context = config.ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1  # this CA only, not the system's
    bundle.unlink()  # read once: the config keeps working without the file
    again = config.ssl_context
    assert again is not None
    assert again.get_ca_certs() == context.get_ca_certs()
    # Still a plain value: it pickles and copies, and compares by its fields.
    assert pickle.loads(pickle.dumps(config)) == config  # noqa: S301  # our own bytes
    assert copy.deepcopy(config).ssl_context is not None
    assert make().ssl_context is None


def test_ca_bundle_text_around_the_certificates_is_ignored(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    first, second = TLSMaterial().ca_pem, TLSMaterial().ca_pem
    bundle.write_bytes(
        b"# Owner: Fo\xcc\x88tanu\xcc\x81s\xc3\xadtva\xcc\x81ny\n" + first + b"\n" + second
    )
    context = make(ca_bundle=str(bundle)).ssl_context
    assert context is not None
    assert len(context.get_ca_certs()) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "is not a file"), (b"", "holds no usable PEM"), (b"hello\n", "holds no usable PEM")],
)
def test_bad_ca_bundles_are_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^ca_bundle '.*ca\.pem' {message}"):
        make(ca_bundle=str(bundle))
    with pytest.raises(ValueError, match=rf"^ENTRA_CA_BUNDLE: ca_bundle '.*' {message}"):
        EntraConfig.from_env(env(CA_BUNDLE=str(bundle)))
    with pytest.raises(ValueError, match="is not a file"):
        make(ca_bundle=str(tmp_path))
