from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from cni_bridge import agent
from cni_bridge.install import install
from cni_bridge.netlink import netns_inode

PKG = Path(__file__).resolve().parents[3] / "cni_bridge"


def test_install_writes_executables_and_conflist_once(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    written = install(str(bin_dir), str(conf_dir), agent_socket="")
    assert sorted(os.path.basename(p) for p in written) == [
        "10-stowage.conflist", "stowage-bridge", "stowage-host-local"]
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
    out = subprocess.run([str(tmp_path / "stowage-host-local")], input=b"",
                         env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True)
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.1.0"


def _ask(env: dict[str, str], stdin: bytes, netns: tuple[int, int]) -> bytes:
    a, b = socket.socketpair()

    def serve() -> None:
        with b:  # the agent's child closes its end by exiting
            agent.handle(b, netns_inode())

    with a:
        t = threading.Thread(target=serve)
        t.start()
        head = repr(("host-local", netns[0], netns[1], env)).encode()
        a.sendall(len(head).to_bytes(4, "big") + head + len(stdin).to_bytes(4, "big") + stdin)
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
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top not in ("pyroute2", "cri_shim", "images", "csi_hostpath"), path
    entry = ast.parse((PKG / "entry.py").read_text())
    tops = {n.names[0].name for n in entry.body if isinstance(n, ast.Import)}
    assert tops <= {"os", "sys"}
