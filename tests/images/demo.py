"""The demo image ``make run`` imports so a fresh node works with no registry: the test
busybox, written as an OCI image-layout tarball named ``docker.io/library/busybox:latest``.

    python -m tests.images.demo OUT.tar
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
from pathlib import Path

from tests.images.build import ImageBuilder
from tests.images.catalog import Base, Recipe
from tests.images.oci_layout import build_layout
from tests.images.rootfs import DEFAULT_CACHE

__all__ = ["DEMO_NAME", "write_demo_archive"]

DEMO_NAME = "docker.io/library/busybox:latest"


def write_demo_archive(out: Path, cache_dir: Path = DEFAULT_CACHE) -> None:
    spec = ImageBuilder(cache_dir).spec(Recipe(Base.BUSYBOX))
    with tempfile.TemporaryDirectory(prefix="stowage-demo-") as tmp:
        layout = Path(tmp) / "layout"
        build_layout(spec, layout, tags=("latest",), cache_dir=cache_dir / "layers")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for entry in sorted(layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        partial.replace(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.images.demo OUT.tar", file=sys.stderr)
        return 2
    write_demo_archive(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
