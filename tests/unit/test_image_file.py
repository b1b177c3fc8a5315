from __future__ import annotations

import os
from pathlib import Path

from cri_shim.containers import _image_file


def _layer(root: Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_topmost_layer_wins(tmp_path: Path) -> None:
    low = _layer(tmp_path / "low", {"etc/passwd": "low\n", "etc/group": "g\n"})
    top = _layer(tmp_path / "top", {"etc/passwd": "top\n"})
    assert _image_file([top, low], "etc/passwd") == "top\n"
    assert _image_file([top, low], "etc/group") == "g\n"
    assert _image_file([top, low], "etc/shadow") is None


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", top / "etc" / "passwd")
    low = _layer(tmp_path / "low", {"etc/passwd": "low\n"})
    assert _image_file([str(top), low], "etc/passwd") is None
