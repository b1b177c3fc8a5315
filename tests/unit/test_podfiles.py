from __future__ import annotations

from cri_shim.podfiles import hosts_file, resolv_conf


def test_resolv_conf_from_dns_config() -> None:
    text = resolv_conf(["10.10.10.10"], ["google.com"], ["ndots:8"], "nameserver 1.2.3.4\n")
    assert text == "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n"


def test_resolv_conf_defaults_to_the_node() -> None:
    assert resolv_conf([], [], [], "nameserver 1.2.3.4\n") == "nameserver 1.2.3.4\n"


def test_hosts_file() -> None:
    own = hosts_file(None, "web", ["10.203.0.5"])
    assert own.startswith("127.0.0.1\tlocalhost\n")
    assert own.endswith("10.203.0.5\tweb\n")
    assert hosts_file("node hosts\n", "web", []) == "node hosts\n"
