from __future__ import annotations

import json
from pathlib import Path

import pytest

from cri_shim.cni import (
    CniError,
    PodNetworkArgs,
    cni_args,
    load_network,
    parse_network,
    plugin_request,
    pod_ips,
    render_conf_template,
)


def test_first_config_by_name_wins(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "bridge"}]})
    )
    (tmp_path / "10-a.conf").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "a", "type": "bridge", "bridge": "x"})
    )
    (tmp_path / "05-ignored.txt").write_text("nope")
    net = load_network(str(tmp_path))
    assert net is not None
    assert net.name == "a"
    assert net.cni_version == "0.4.0"
    assert net.plugins[0]["bridge"] == "x"


def test_no_config_is_none(tmp_path: Path) -> None:
    assert load_network(str(tmp_path)) is None
    assert load_network(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "not an object"),
        (b'{"name": "x", "plugins": []}', "no plugins"),
        (b'{"name": "x", "plugins": [{"bridge": "b"}]}', "needs a type"),
        (b'{"plugins": [{"type": "bridge"}]}', "no network name"),
    ],
)
def test_bad_configs(raw: bytes, message: str) -> None:
    with pytest.raises(CniError, match=message):
        parse_network(raw, "t")


def test_request_carries_prev_result_and_declared_capabilities_only() -> None:
    net = parse_network(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "n",
                "plugins": [
                    {"type": "bridge"},
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            }
        ).encode()
    )
    caps = {
        "portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 1},
    }
    first = json.loads(plugin_request(net, net.plugins[0], None, caps))
    assert "runtimeConfig" not in first
    assert "prevResult" not in first
    assert first["name"] == "n"
    assert first["cniVersion"] == "1.0.0"
    second = json.loads(plugin_request(net, net.plugins[1], {"ips": []}, caps))
    assert second["prevResult"] == {"ips": []}
    assert second["runtimeConfig"] == {"portMappings": caps["portMappings"]}
    assert "capabilities" not in second


def test_cni_args_and_ips() -> None:
    args = PodNetworkArgs("sb1", "/ns", "web", "default", "uid-1")
    assert cni_args(args) == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
    )
    result = {"ips": [{"address": "fd00::5/64"}, {"address": "10.203.0.5/16"}]}
    assert pod_ips(result) == ["10.203.0.5", "fd00::5"]


def test_gc_sends_valid_attachments_to_each_plugin_of_a_1_1_network(tmp_path: Path) -> None:
    from cri_shim.cni import Cni

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    plugin = bin_dir / "fake"
    plugin.write_text(f'#!/bin/sh\necho "$CNI_COMMAND $(cat)" >> {log}\n')
    plugin.chmod(0o755)
    conf = tmp_path / "net.d"
    conf.mkdir()
    net = {"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "fake"}, {"type": "fake"}]}
    (conf / "10.conflist").write_text(json.dumps(net))
    cni = Cni(str(conf), [str(bin_dir)], str(tmp_path / "cache"))
    cni.gc([("sb1", "eth0")])
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    verb, body = calls[0].split(" ", 1)
    assert verb == "GC"
    assert json.loads(body)["cni.dev/valid-attachments"] == [
        {"containerID": "sb1", "ifname": "eth0"}
    ]
    net["cniVersion"] = "1.0.0"  # before 1.1.0 there is no GC verb
    (conf / "10.conflist").write_text(json.dumps(net))
    cni.gc([])
    assert len(log.read_text().splitlines()) == 2


TEMPLATE = """{
  "cniVersion": "1.0.0", "name": "k8s-pod-network",
  "plugins": [{"type": "bridge", "bridge": "cni0",
               "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}]
}"""


def test_a_template_takes_the_first_pod_cidr() -> None:
    out = json.loads(render_conf_template(TEMPLATE, ["10.244.1.0/24", "fd00:1::/64"]))
    assert out["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert (
        json.loads(
            render_conf_template(
                TEMPLATE.replace("{{.PodCIDR}}", "{{ .PodCIDR }}"), ["10.1.0.0/16"]
            )
        )["name"]
        == "k8s-pod-network"
    )


@pytest.mark.parametrize(
    ("template", "cidrs", "message"),
    [
        (TEMPLATE, [], "no pod CIDR"),
        (TEMPLATE, ["10.244.1.0/33"], "is not a CIDR"),
        (
            TEMPLATE.replace("{{.PodCIDR}}", "{{range .PodCIDRRanges}}x{{end}}"),
            ["10.0.0.0/8"],
            "unsupported CNI config template action",
        ),
        ("{not json {{.PodCIDR}}", ["10.0.0.0/8"], "is not JSON"),
    ],
)
def test_a_template_that_cannot_be_rendered_is_refused(
    template: str, cidrs: list[str], message: str
) -> None:
    with pytest.raises(CniError, match=message):
        render_conf_template(template, cidrs)
