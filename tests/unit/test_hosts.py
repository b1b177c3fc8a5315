from __future__ import annotations

import pathlib

import pytest

from images.errors import RegistryError
from images.hosts import (
    ALL_CAPABILITIES,
    MIRRORED_REGISTRIES,
    RegistryHost,
    default_server,
    load_hosts,
    parse_hosts_toml,
    render_mirror_config,
    write_mirror_config,
)


def test_empty_file_means_the_default_server() -> None:
    assert parse_hosts_toml("", "quay.io") == [RegistryHost("https://quay.io")]


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("docker.io", "https://registry-1.docker.io"),
        ("registry.k8s.io", "https://registry.k8s.io"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("localhost:5000", "http://localhost:5000"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("10.0.0.1:5000", "https://10.0.0.1:5000"),
    ],
)
def test_default_server(host: str, server: str) -> None:
    assert default_server(host) == server


def test_mirrors_come_first_in_file_order_then_the_server() -> None:
    text = """
server = "https://registry-1.docker.io"

[host."http://127.0.0.1:5000"]
capabilities = ["pull", "resolve"]

[host."https://mirror.example"]
capabilities = ["pull"]
skip_verify = true
"""
    hosts = parse_hosts_toml(text, "docker.io")
    assert [h.url for h in hosts] == [
        "http://127.0.0.1:5000",
        "https://mirror.example",
        "https://registry-1.docker.io",
    ]
    assert hosts[0].capabilities == {"pull", "resolve"}
    assert hosts[0].plain_http
    assert hosts[1].skip_verify
    assert hosts[2].capabilities == ALL_CAPABILITIES


def test_top_level_keys_configure_the_server() -> None:
    text = """
server = "https://registry.example/"
capabilities = ["pull", "resolve"]
skip_verify = true
[header]
x-one = "1"
x-many = ["a", "b"]
"""
    (server,) = parse_hosts_toml(text, "registry.example")
    assert server == RegistryHost(
        url="https://registry.example",
        capabilities=frozenset({"pull", "resolve"}),
        skip_verify=True,
        headers=(("x-one", "1"), ("x-many", "a"), ("x-many", "b")),
    )


def test_host_without_scheme_is_https() -> None:
    hosts = parse_hosts_toml('[host."mirror.example:8443"]\n', "quay.io")
    assert hosts[0].url == "https://mirror.example:8443"


@pytest.mark.parametrize(
    ("url", "override_path", "api_root"),
    [
        ("https://r.example", False, "https://r.example/v2"),
        ("https://r.example/v2", False, "https://r.example/v2"),
        ("https://r.example/mirror", False, "https://r.example/mirror/v2"),
        ("https://r.example/v2/upstream", True, "https://r.example/v2/upstream"),
        ("https://r.example/api/", True, "https://r.example/api"),
    ],
)
def test_api_root(url: str, override_path: bool, api_root: str) -> None:
    assert RegistryHost(url, override_path=override_path).api_root == api_root


def test_override_path_is_read_per_host() -> None:
    text = '[host."https://m.example/v2/up"]\noverride_path = true\n'
    assert parse_hosts_toml(text, "quay.io")[0].api_root == "https://m.example/v2/up"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server = ", "invalid TOML"),
        ("server = 5", "server must be a string"),
        ('ca = "/x.pem"', "unsupported key"),
        ('[host."https://m"]\nproxy = "http://p"', "unsupported key"),
        ('[host."https://m"]\ncapabilities = ["fly"]', "unknown capabilities"),
        ('[host."https://m"]\ncapabilities = "pull"', "list of strings"),
        ('[host."https://m"]\nskip_verify = "yes"', "true or false"),
        ('[host."ftp://m"]', "http:// or https://"),
        ('[host."https://m"]\nheader = {x = 1}', "string or a list"),
        ('host = "x"', "must be a table"),
    ],
)
def test_invalid_files_are_registry_errors(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_hosts_toml(text, "quay.io")


def test_load_hosts_prefers_the_hosts_own_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "quay.io").mkdir()
    (tmp_path / "quay.io" / "hosts.toml").write_text('[host."http://own:1"]\n')
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('[host."http://default:1"]\n')
    assert [h.url for h in load_hosts(str(tmp_path), "quay.io")] == [
        "http://own:1",
        "https://quay.io",
    ]
    # _default keeps each registry's own server as the fallback.
    assert [h.url for h in load_hosts(str(tmp_path), "gcr.io")] == [
        "http://default:1",
        "https://gcr.io",
    ]


def test_load_hosts_with_port_in_directory_name(tmp_path: pathlib.Path) -> None:
    (tmp_path / "127.0.0.1:5000").mkdir()
    (tmp_path / "127.0.0.1:5000" / "hosts.toml").write_text("skip_verify = true\n")
    assert load_hosts(str(tmp_path), "127.0.0.1:5000") == [
        RegistryHost("http://127.0.0.1:5000", skip_verify=True)
    ]


def test_load_hosts_without_configuration(tmp_path: pathlib.Path) -> None:
    assert load_hosts(str(tmp_path / "missing"), "docker.io") == [
        RegistryHost("https://registry-1.docker.io")
    ]


def test_load_hosts_error_names_the_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "quay.io").mkdir()
    path = tmp_path / "quay.io" / "hosts.toml"
    path.write_text("server = [")
    with pytest.raises(RegistryError, match=str(path)):
        load_hosts(str(tmp_path), "quay.io")


def test_mirror_config_replaces_the_server_by_default(tmp_path: pathlib.Path) -> None:
    write_mirror_config(str(tmp_path), mirror_url="http://127.0.0.1:5000")
    for registry in MIRRORED_REGISTRIES:
        hosts = load_hosts(str(tmp_path), registry)
        assert [h.url for h in hosts] == ["http://127.0.0.1:5000"]
        assert hosts[0].capabilities == {"pull", "resolve"}


def test_mirror_config_can_keep_the_upstream() -> None:
    texts = render_mirror_config(["docker.io"], "http://127.0.0.1:5000", keep_upstream=True)
    hosts = parse_hosts_toml(texts["docker.io"], "docker.io")
    assert [h.url for h in hosts] == ["http://127.0.0.1:5000", "https://registry-1.docker.io"]
    assert hosts[0].capabilities == {"pull", "resolve"}
