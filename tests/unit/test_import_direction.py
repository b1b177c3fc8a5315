"""Dependencies point one way: cri_shim may import images; it reaches cni_bridge only by
executing it; images, cni_bridge and csi_hostpath import no sibling package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
PACKAGES = ("cri_shim", "images", "cni_bridge", "csi_hostpath")
ALLOWED = {"cri_shim": {"images"}, "images": set(), "cni_bridge": set(), "csi_hostpath": set()}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    for path in (TOP / package).rglob("*.py"):
        if "_pb" in path.parts:
            continue
        siblings = (_imports(path) & set(PACKAGES)) - {package}
        assert siblings <= ALLOWED[package], f"{path.relative_to(TOP)} imports {siblings}"
