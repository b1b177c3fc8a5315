from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri_shim.containers import _image_file


def _layer(root: Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


@pytest.mark.root
def test_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("whiteouts are device nodes: root only")
    low = _layer(tmp_path / "low", {"etc/passwd": "low\n", "etc/group": "g\n"})
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    os.mknod(top / "etc" / "passwd", 0o600 | 0o020000, os.makedev(0, 0))
    assert _image_file([str(top), low], "etc/passwd") is None
    assert _image_file([str(top), low], "etc/group") == "g\n"
    os.setxattr(top / "etc", "trusted.overlay.opaque", b"y")
    assert _image_file([str(top), low], "etc/group") is None
