from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cni_bridge import agent, entry
from cni_bridge.install import install
from cni_bridge.netlink import netns_inode

PKG = Path(__file__).resolve().parents[3] / "cni_bridge"


def test_install_writes_executables_and_conflist_once(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    written = install(str(bin_dir), str(conf_dir), agent_socket="")
    assert sorted(os.path.basename(p) for p in written) == [
        "10-stowage.conflist",
        "stowage-bridge",
        "stowage-host-local",
    ]
    exe = bin_dir / "stowage-bridge"
    assert os.access(exe, os.X_OK)
    assert exe.read_text().splitlines()[0] == f"#!{sys.executable} -IS"
    conflist = json.loads((conf_dir / "10-stowage.conflist").read_text())
    assert conflist["plugins"][0]["bridge"] == "stowage0"
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16"}]]
    (conf_dir / "10-stowage.conflist").write_text("{}")
    assert len(install(str(bin_dir), str(conf_dir))) == 2, "an existing config is kept"
    assert not (bin_dir / "bridge").exists()
    assert not (bin_dir / "host-local").exists()


def test_installed_plugin_answers_version_without_site(tmp_path: Path) -> None:
    install(str(tmp_path), None, agent_socket="")
    out = subprocess.run(
        [str(tmp_path / "stowage-host-local")],
        input=b"",
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.1.0"


def _ask(env: dict[str, str], stdin: bytes, netns: tuple[int, int]) -> bytes:
    a, b = socket.socketpair()

    def serve() -> None:
        with b:  # the agent's child closes its end by exiting
            agent.handle(b, netns_inode())

    with a:
        t = threading.Thread(target=serve)
        t.start()
        benv = {k.encode(): v.encode() for k, v in env.items()}
        a.sendall(entry.encode("host-local", netns, benv, stdin))
        a.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := a.recv(65536):
            data += chunk
        t.join()
    return data


def test_agent_answers_like_the_plugin_and_declines_other_namespaces() -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the agent serves root callers only")
    data = _ask({"CNI_COMMAND": "VERSION"}, b"", netns_inode())
    assert data[:2] == b"\x00\x00"
    assert json.loads(data[2:])["cniVersion"] == "1.1.0"
    assert _ask({"CNI_COMMAND": "VERSION"}, b"", (0, 1)) == b"\x01"


def test_dependencies_point_one_way() -> None:
    """cni_bridge imports no sibling package and no pyroute2; the entry path is stdlib."""
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                top = name.split(".")[0]
                assert top not in ("pyroute2", "cri_shim", "images", "csi_hostpath"), path


def test_the_entry_path_imports_nothing_but_itself() -> None:
    """What the installed executable imports before it reaches the agent is paid on every
    CNI call: only built-in modules (``os`` alone would be ~1 ms under ``-S``)."""
    code = (
        "import sys; before = set(sys.modules); "
        f"sys.path.insert(0, {str(PKG.parent)!r}); import cni_bridge.entry; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         check=True, text=True)
    assert out.stdout.split() == ["cni_bridge", "cni_bridge.entry"]


def test_request_encoding_round_trip_and_other_protocols() -> None:
    env = {b"CNI_COMMAND": b"ADD", b"CNI_ARGS": b"IP=10.0.0.2;K=a=b", b"PATH": b"/bin",
           b"HOME": b"/root"}
    data = entry.encode("bridge", (5, 77), env, b"{}")
    n = int.from_bytes(data[:4], "big")
    plugin, netns, got = agent.parse_request(data[4 : 4 + n])  # type: ignore[misc]
    assert (plugin, netns) == ("bridge", (5, 77))
    assert got == {"CNI_COMMAND": "ADD", "CNI_ARGS": "IP=10.0.0.2;K=a=b", "PATH": "/bin"}
    assert data[4 + n :] == (2).to_bytes(4, "big") + b"{}"
    assert agent.parse_request(b"1\0bridge\x005\x0077") is None, "another protocol: declined"
    assert agent.parse_request(b"") is None


def test_a_worker_that_left_the_agents_namespace_serves_no_more() -> None:
    assert agent._fit(netns_inode())
    assert not agent._fit((0, 1))


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def test_workers_live_for_many_requests_and_stop_with_the_agent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the agent serves root callers only")
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen([sys.executable, "-m", "cni_bridge.agent", "--socket", sock,
                             "--workers", "1"], cwd=PKG.parent)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while not _children(proc.pid):
            time.sleep(0.01)
        workers = _children(proc.pid)
        for _ in range(5):
            answered = entry.via_agent("host-local", sock, b"", {b"CNI_COMMAND": b"VERSION"})
            assert answered is not None, "the agent answered"
            out, code = answered
            assert code == 0
            assert json.loads(out)["cniVersion"] == "1.1.0"
        assert _children(proc.pid) == workers, "one warm worker served every request"
        assert entry.via_agent("host-local", str(tmp_path / "none"), b"", {}) is None
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert not os.path.exists(sock)
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), "no worker outlives the agent"


def test_workers_do_not_outlive_a_killed_agent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the agent serves root callers only")
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen([sys.executable, "-m", "cni_bridge.agent", "--socket", sock,
                             "--workers", "2"], cwd=PKG.parent)
    try:
        deadline = time.monotonic() + 20
        while len(_children(proc.pid)) < 2:
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        workers = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}/status") for pid in workers):
        assert time.monotonic() < deadline, "a worker survived its supervisor"
        time.sleep(0.02)
    assert entry.via_agent("host-local", sock, b"", {b"CNI_COMMAND": b"VERSION"}) is None
