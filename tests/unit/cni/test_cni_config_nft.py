from __future__ import annotations

import pytest

from cni_bridge import nft
from cni_bridge.config import PortMapping, VlanRange, parse_netconf
from cni_bridge.errors import InvalidConfig, UnsupportedField

BASE = {"name": "n", "type": "stowage-bridge"}


def test_defaults_match_the_reference_bridge() -> None:
    nc = parse_netconf(BASE, "1.0.0")
    assert nc.bridge == "cni0"
    assert not nc.is_gateway
    assert nc.preserve_default_vlan
    assert nc.ipam_type == ""
    assert not nc.in_process_ipam


def test_keys_are_read() -> None:
    nc = parse_netconf(
        {
            **BASE,
            "bridge": "stwtestbr",
            "isDefaultGateway": True,
            "forceAddress": True,
            "ipMasq": True,
            "mtu": 1400,
            "hairpinMode": True,
            "promiscMode": True,
            "vlanTrunk": [{"id": 5}, {"minID": 10, "maxID": 20}],
            "preserveDefaultVlan": False,
            "macspoofchk": True,
            "enabledad": True,
            "ipam": {"type": "stowage-host-local"},
            "runtimeConfig": {
                "mac": "02:AA:00:00:00:01",
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "TCP",
                     "hostIP": "0.0.0.0"},  # noqa: S104 - "any host address", not a bind
                ],
            },
        },
        "1.1.0",
    )
    assert nc.is_gateway
    assert nc.is_default_gateway
    assert nc.force_address
    assert nc.ip_masq
    assert nc.mtu == 1400
    assert nc.hairpin_mode
    assert nc.promisc_mode
    assert nc.vlan_trunk == (VlanRange(5, 5), VlanRange(10, 20))
    assert nc.vlan_filtering
    assert nc.mac == "02:aa:00:00:00:01"
    assert nc.in_process_ipam
    assert nc.port_mappings == (PortMapping(8080, 80, "tcp", ""),)


@pytest.mark.parametrize(
    "extra",
    [
        {"vlan": 5000},
        {"vlan": 3, "vlanTrunk": [{"id": 4}]},
        {"vlanTrunk": [{"minID": 9}]},
        {"mtu": "big"},
        {"bridge": "x" * 16},
        {"hairpinMode": "yes"},
        {"disableContainerInterface": True, "ipam": {"type": "host-local"}},
        {"runtimeConfig": {"mac": "01:00:00:00:00:01"}},
        {"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}},
        {
            "runtimeConfig": {
                "portMappings": [{"hostPort": 1, "containerPort": 80, "protocol": "icmp"}]
            }
        },
    ],
)
def test_bad_configs(extra: dict[str, object]) -> None:
    with pytest.raises(InvalidConfig):
        parse_netconf({**BASE, **extra}, "1.0.0")


def test_vlan_with_gateway_is_reported_unsupported() -> None:
    with pytest.raises(UnsupportedField):
        parse_netconf({**BASE, "vlan": 3, "isGateway": True}, "1.0.0")


def test_elements_of_an_attachment() -> None:
    els = nft.elements(
        ["10.199.0.5/24", "fd00::5/64"],
        True,
        [PortMapping(8080, 80, "tcp"), PortMapping(53, 53, "udp", "10.0.0.1")],
        "vethx",
        "02:00:00:00:00:01",
    )
    got = {(e.set, e.text) for e in els.items}
    assert ("masq4", "10.199.0.5") in got
    assert ("local6", "fd00::5 . fd00::/64") in got
    assert ("hp4", "tcp . 8080 : 10.199.0.5 . 80") in got
    assert ("hp6", "tcp . 8080 : fd00::5 . 80") in got
    assert ("hp4ip", "10.0.0.1 . udp . 53 : 10.199.0.5 . 53") in got
    assert not any(s == "hp6ip" for s, _ in got), "an IPv4 hostIP maps only IPv4"
    assert ("macs", '"vethx" . 02:00:00:00:00:01') in got
    assert not nft.elements(["10.199.0.5/24"], False, [])


def test_delete_batch_is_idempotent_by_construction() -> None:
    els = nft.elements(["10.199.0.5/24"], True, [PortMapping(8080, 80, "tcp")])
    lines = nft.delete_batch(els).splitlines()
    deletes = [i for i, line in enumerate(lines) if line.startswith("delete element")]
    assert deletes
    assert all(lines[i - 1].startswith("add element") for i in deletes)
    assert "delete element inet stowage_cni hp4 { tcp . 8080 }" in lines
    assert not any(line.startswith(("flush", "delete chain", "delete table")) for line in lines)
    add = nft.add_batch(els)
    assert "flush chain inet stowage_cni postrouting" in add
    assert "add element inet stowage_cni masq4 { 10.199.0.5 }" in add


def test_batches_skip_declarations_once_the_schema_exists() -> None:
    els = nft.elements(["10.199.0.5/24"], True, [])
    assert nft.SCHEMA_MARKER in nft.add_batch(els)
    quick = nft.add_batch(els, declared=True)
    assert quick.splitlines() == [
        "add element inet stowage_cni masq4 { 10.199.0.5 }",
        "add element inet stowage_cni local4 { 10.199.0.5 . 10.199.0.0/24 }",
    ]
    assert "add table" not in nft.delete_batch(els, declared=True)
    assert "add table" in nft.delete_batch(els)
