"""csi_hostpath imports no sibling package, and only the servicers, the conversion module and
the server import the generated stubs."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "csi_hostpath"
SIBLINGS = {"cri_shim", "images", "cni_bridge", "tests", "bench"}
PB_USERS = {
    "convert.py",
    "server.py",
    "service/identity.py",
    "service/controller.py",
    "service/node.py",
    "service/group_controller.py",
}
GRPC_USERS = {"server.py", "interceptors.py"}


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def sources() -> list[Path]:
    return [p for p in PKG.rglob("*.py") if "_pb" not in p.parts]


def test_no_sibling_imports() -> None:
    for path in sources():
        bad = {m for m in imports(path) if m.split(".")[0] in SIBLINGS}
        assert not bad, f"{path} imports {bad}"


def test_generated_code_stays_at_the_edge() -> None:
    for path in sources():
        rel = str(path.relative_to(PKG))
        mods = imports(path)
        if any(m.startswith("csi_hostpath._pb") for m in mods):
            assert rel in PB_USERS, f"{rel} imports the generated stubs"
        if "grpc" in mods:
            assert rel in GRPC_USERS, f"{rel} imports grpc"
