from __future__ import annotations

import json

import pytest

from cni_bridge import skel
from cni_bridge.errors import DecodeFailure, IncompatibleVersion, InvalidEnvironment
from cni_bridge.main import run_bridge, run_hostlocal
from cni_bridge.types import DNS, Interface, IPConfig, Result, Route, parse_result, render

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/a:/b",
    "CNI_ARGS": "K8S_POD=p;IgnoreUnknown=1",
}


def test_parse_env_reads_every_variable() -> None:
    req = skel.parse_env(ADD_ENV)
    assert (req.command, req.container_id, req.netns, req.ifname) == (
        "ADD",
        "c1",
        "/run/netns/x",
        "eth0",
    )
    assert req.path == ("/a", "/b")
    assert req.arg("K8S_POD") == "p"
    assert req.arg("nope") is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"CNI_COMMAND": "FROB"}, "unknown CNI_COMMAND"),
        ({"CNI_NETNS": ""}, "CNI_NETNS is required"),
        ({"CNI_IFNAME": "a/b"}, "invalid CNI_IFNAME"),
        ({"CNI_IFNAME": "x" * 16}, "invalid CNI_IFNAME"),
        ({"CNI_CONTAINERID": "bad id"}, "invalid CNI_CONTAINERID"),
        ({"CNI_ARGS": "novalue"}, "invalid CNI_ARGS"),
    ],
)
def test_parse_env_rejects(change: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidEnvironment, match=match):
        skel.parse_env({**ADD_ENV, **change})


def test_del_needs_no_netns_and_gc_needs_no_container() -> None:
    skel.parse_env({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"})
    skel.parse_env({"CNI_COMMAND": "GC"})
    skel.parse_env({"CNI_COMMAND": "STATUS"})


@pytest.mark.parametrize(
    ("version", "command", "ok"),
    [
        ("0.3.1", "ADD", True),
        ("0.3.1", "CHECK", False),
        ("0.4.0", "CHECK", True),
        ("1.0.0", "GC", False),
        ("1.1.0", "GC", True),
        ("1.1.0", "STATUS", True),
        ("0.2.0", "ADD", False),
        ("2.0.0", "ADD", False),
        (None, "ADD", False),
    ],
)
def test_version_rules(version: str | None, command: str, ok: bool) -> None:
    if ok:
        assert skel.check_version(version, command) == version
    else:
        with pytest.raises(IncompatibleVersion):
            skel.check_version(version, command)


def test_version_reply() -> None:
    assert skel.version_reply(b"") == {
        "cniVersion": "1.1.0",
        "supportedVersions": list(skel.SUPPORTED_VERSIONS),
    }
    assert skel.version_reply(b'{"cniVersion":"0.4.0"}')["cniVersion"] == "0.4.0"


def test_bad_json_is_a_decode_failure() -> None:
    with pytest.raises(DecodeFailure):
        skel.load_config(b"{nope")
    with pytest.raises(DecodeFailure):
        skel.load_config(b"[1]")


RESULT = Result(
    (Interface("br", "02:00:00:00:00:01"), Interface("eth0", "02:00:00:00:00:02", "/ns")),
    (IPConfig("10.199.0.2/24", "10.199.0.1", 1), IPConfig("fd00::2/64", "fd00::1", 1)),
    (Route("0.0.0.0/0", "10.199.0.1", mtu=1400),),
    DNS(nameservers=("10.199.0.1",)),
)


def test_render_per_version() -> None:
    old = render(RESULT, "0.4.0")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"]
    new = render(RESULT, "1.0.0")
    assert "version" not in new["ips"][0]
    assert "mtu" not in new["routes"][0]
    assert render(RESULT, "1.1.0")["routes"][0]["mtu"] == 1400
    assert new["interfaces"][1] == {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/ns"}
    assert new["dns"] == {"nameservers": ["10.199.0.1"]}


@pytest.mark.parametrize("version", skel.SUPPORTED_VERSIONS)
def test_render_parse_round_trip(version: str) -> None:
    back = parse_result(json.loads(json.dumps(render(RESULT, version))))
    assert back.ips == RESULT.ips
    assert back.interfaces == RESULT.interfaces
    assert back.routes[0].dst == "0.0.0.0/0"


def _run(runner: object, env: dict[str, str], stdin: bytes) -> tuple[dict[str, object], int]:
    out, code = runner(env, stdin)  # type: ignore[operator]
    return (json.loads(out) if out else {}), code


@pytest.mark.parametrize("runner", [run_bridge, run_hostlocal])
def test_edge_errors_are_spec_json(runner: object) -> None:
    out, code = _run(runner, {**ADD_ENV, "CNI_COMMAND": "VERSION"}, b"")
    assert code == 0
    assert out["supportedVersions"] == list(skel.SUPPORTED_VERSIONS)
    out, code = _run(runner, ADD_ENV, b"{bad")
    assert code == 1
    assert out["code"] == 6
    assert out["cniVersion"] == "1.1.0"
    out, code = _run(runner, ADD_ENV, b'{"cniVersion":"9.9.9","name":"n"}')
    assert code == 1
    assert out["code"] == 1
    out, code = _run(runner, {"CNI_COMMAND": "ADD"}, b"{}")
    assert code == 1
    assert out["code"] == 4
    out, code = _run(
        runner, {**ADD_ENV, "CNI_COMMAND": "CHECK"}, b'{"cniVersion":"0.3.1","name":"n"}'
    )
    assert (code, out["code"], out["cniVersion"]) == (1, 1, "0.3.1")


def test_hostlocal_executable_verbs(tmp_path: object) -> None:
    conf = {
        "cniVersion": "1.1.0",
        "name": "n",
        "type": "stowage-host-local",
        "ipam": {
            "type": "stowage-host-local",
            "subnet": "10.199.0.0/30",
            "dataDir": str(tmp_path),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    stdin = json.dumps(conf).encode()
    out, code = _run(run_hostlocal, ADD_ENV, stdin)
    assert code == 0, out
    assert out["ips"] == [{"address": "10.199.0.2/30", "gateway": "10.199.0.1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]
    # The /30 has one address: STATUS says so, a second ADD is refused with our code.
    out, code = _run(run_hostlocal, {"CNI_COMMAND": "STATUS"}, stdin)
    assert (code, out["code"]) == (1, 50)
    out, code = _run(run_hostlocal, {**ADD_ENV, "CNI_CONTAINERID": "c2"}, stdin)
    assert (code, out["code"]) == (1, 100)
    assert _run(run_hostlocal, {**ADD_ENV, "CNI_COMMAND": "CHECK"}, stdin)[1] == 0
    gc = json.dumps({**conf, "cni.dev/valid-attachments": []}).encode()
    assert _run(run_hostlocal, {"CNI_COMMAND": "GC"}, gc)[1] == 0
    out, code = _run(run_hostlocal, {**ADD_ENV, "CNI_COMMAND": "CHECK"}, stdin)
    assert (code, out["code"]) == (1, 3)
    for _ in range(2):
        assert _run(run_hostlocal, {**ADD_ENV, "CNI_COMMAND": "DEL"}, stdin)[1] == 0
