"""Build every catalog image as an OCI layout, and optionally push them to a registry.

    python -m tests.images.build --out DIR [--push http://127.0.0.1:PORT] [--cache DIR]

Layouts go to DIR/<repository>/ (the upstream path without its host), one layout per
repository with one `index.json` entry per tag. Base trees (busybox, nginx) are assembled once
per run; downloaded packages, compiled helpers and compressed layers are kept in the cache
directory (default: .cache/ in the repository), so a warm rebuild mostly hashes files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.images.catalog import Base, CatalogEntry, Recipe, catalog
from tests.images.oci_layout import (
    ImageConfig,
    ImageSpec,
    Layer,
    blob_path,
    build_layout,
    dir_entry,
    file_entry,
    read_layout,
)
from tests.images.rootfs import (
    BASE_GROUPS,
    BASE_USERS,
    DEFAULT_CACHE,
    PATH_ENV,
    DebCache,
    build_busybox_rootfs,
    build_nginx_tree,
    compile_static,
    group_text,
    nginx_conf,
    passwd_text,
)

__all__ = ["BuiltImage", "ImageBuilder", "build_all", "build_images", "main"]

_HERE = Path(__file__).resolve().parent
_ENV = (f"PATH={PATH_ENV}",)

# busybox httpd as pid 1 would ignore SIGTERM (pid 1 gets no default actions), so a shell
# forwards it. The banner is what critest looks for in the container log ("httpd").
_HTTPD_FOREGROUND = """\
#!/bin/sh
echo "httpd: serving /usr/local/apache2/htdocs on port 80"
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
pid=$!
trap 'kill -TERM "$pid"; wait "$pid"; exit 0' TERM INT
wait "$pid"
"""
_HTTPD_INDEX = "<html><body><h1>It works!</h1></body></html>\n"


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    layout: Path
    config_digest: str
    size: int  # compressed layers + config, as a registry would store them


class ImageBuilder:
    """Turns recipes into `ImageSpec`s, assembling each base tree at most once.

    The trees are assembled under `work_dir`, which must outlive the specs: their layers read
    file contents from it when the layout is written. Each run uses its own `work_dir`, so two
    builds sharing a cache (make and pytest, say) do not trample each other's trees.
    """

    def __init__(self, work_dir: Path, cache_dir: Path = DEFAULT_CACHE) -> None:
        self.work_dir = work_dir
        self.cache_dir = cache_dir
        self.debs = DebCache(cache_dir)
        self._layers: dict[str, Layer] = {}

    def _busybox_layer(self) -> Layer:
        if "busybox" not in self._layers:
            root = self.work_dir / "busybox"
            build_busybox_rootfs(root, self.debs)
            self._layers["busybox"] = Layer.from_dir(root, "busybox userland from Debian packages")
        return self._layers["busybox"]

    def _nginx_layer(self) -> Layer:
        if "nginx" not in self._layers:
            self._busybox_layer()
            root = self.work_dir / "nginx"
            build_nginx_tree(root, self.debs, lower=self.work_dir / "busybox")
            self._layers["nginx"] = Layer.from_dir(root, "nginx from Debian packages")
        return self._layers["nginx"]

    def _static_binary_layer(self, source: str, dest: str, mode: int) -> Layer:
        binary = compile_static(_HERE / source, self.cache_dir)
        entries = [file_entry(dest, binary.read_bytes(), mode)]
        parents = dest.split("/")[:-1]
        entries += [dir_entry("/".join(parents[: i + 1])) for i in range(len(parents))]
        return Layer.from_entries(entries, f"{source} compiled with gcc -static")

    def spec(self, recipe: Recipe) -> ImageSpec:
        if recipe.base is Base.PAUSE:
            # As upstream pause: a single static binary, run as 65535:65535.
            return ImageSpec(
                (self._static_binary_layer("pause.c", "pause", 0o755),),
                ImageConfig(user=recipe.user or "65535:65535", entrypoint=("/pause",), env=_ENV),
            )
        layers: list[Layer] = [self._busybox_layer()]
        config = ImageConfig(
            user=recipe.user, env=_ENV, cmd=("sh",), stop_signal=recipe.stop_signal
        )
        if recipe.base is Base.NGINX:
            layers.append(self._nginx_layer())
            layers.append(
                Layer.from_entries(
                    [
                        dir_entry("etc"),
                        dir_entry("etc/nginx"),
                        file_entry("etc/nginx/nginx.conf", nginx_conf(recipe.port)),
                    ],
                    f"nginx.conf listening on {recipe.port}",
                )
            )
            config = ImageConfig(
                user=recipe.user,
                env=_ENV,
                cmd=("nginx", "-g", "daemon off;"),
                exposed_ports=(f"{recipe.port}/tcp",),
                stop_signal=recipe.stop_signal,
            )
        elif recipe.base is Base.HTTPD:
            layers.append(
                Layer.from_entries(
                    [
                        dir_entry("usr"),
                        dir_entry("usr/local"),
                        dir_entry("usr/local/bin"),
                        file_entry("usr/local/bin/httpd-foreground", _HTTPD_FOREGROUND, 0o755),
                        dir_entry("usr/local/apache2"),
                        dir_entry("usr/local/apache2/htdocs"),
                        file_entry("usr/local/apache2/htdocs/index.html", _HTTPD_INDEX),
                    ],
                    "busybox httpd serving on port 80",
                )
            )
            config = ImageConfig(
                user=recipe.user,
                env=_ENV,
                cmd=("httpd-foreground",),
                exposed_ports=("80/tcp",),
                working_dir="/usr/local/apache2",
            )
        elif recipe.base is Base.NONEWPRIVS:
            # Setuid root: critest runs it as uid 1000 and expects euid 0 unless no_new_privs.
            layers.append(self._static_binary_layer("nonewprivs.c", "usr/local/bin/nnp", 0o4755))
            config = ImageConfig(user=recipe.user, env=_ENV, entrypoint=("/usr/local/bin/nnp",))
        if recipe.marker:
            layers.append(
                Layer.from_entries(
                    [file_entry(recipe.marker, recipe.marker + "\n")], f"ADD {recipe.marker}"
                )
            )
        if recipe.extra_users or recipe.extra_groups:
            layers.append(self._accounts_layer(recipe))
        return ImageSpec(tuple(layers), config)

    @staticmethod
    def _accounts_layer(recipe: Recipe) -> Layer:
        entries = [
            dir_entry("etc"),
            file_entry("etc/passwd", passwd_text((*BASE_USERS, *recipe.extra_users))),
            file_entry("etc/group", group_text((*BASE_GROUPS, *recipe.extra_groups))),
        ]
        homes = [u for u in recipe.extra_users if u.home.startswith("/home/")]
        if homes:
            entries.append(dir_entry("home"))
        entries += [dir_entry(u.home, 0o755, u.uid, u.gid) for u in homes]
        names = ", ".join(u.name for u in recipe.extra_users)
        return Layer.from_entries(entries, f"add users {names}")


def _image_size(layout: Path, config_digest: str) -> int:
    # The manifest is the index entry naming this config; sum what it references.
    for ref in read_layout(layout):
        manifest = json.loads(blob_path(layout, ref.digest).read_text())
        if manifest["config"]["digest"] == config_digest:
            return int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])
    return 0


def build_images(
    out_dir: Path,
    cache_dir: Path = DEFAULT_CACHE,
    entries: Sequence[CatalogEntry] | None = None,
) -> list[BuiltImage]:
    """Build `entries` (default: the whole catalog) into layouts under `out_dir`.

    Each repository's layout is rewritten from scratch, so no stale tags or blobs survive.
    Unbuildable entries are skipped.
    """
    todo = [e for e in (catalog() if entries is None else entries) if e.recipe is not None]
    for repo in sorted({e.repository for e in todo}):
        shutil.rmtree(out_dir / repo, ignore_errors=True)
    (cache_dir / "work").mkdir(parents=True, exist_ok=True)
    built: list[BuiltImage] = []
    with tempfile.TemporaryDirectory(dir=cache_dir / "work") as work:
        builder = ImageBuilder(Path(work), cache_dir)
        specs: dict[Recipe, ImageSpec] = {}
        for entry in todo:
            assert entry.recipe is not None
            spec = specs.get(entry.recipe)
            if spec is None:
                spec = specs[entry.recipe] = builder.spec(entry.recipe)
            layout = out_dir / entry.repository
            digest = build_layout(spec, layout, tags=(entry.tag,), cache_dir=cache_dir / "layers")
            built.append(BuiltImage(entry.ref, layout, digest, _image_size(layout, digest)))
    return built


def build_all(out_dir: Path, cache_dir: Path = DEFAULT_CACHE) -> dict[str, str]:
    """Upstream reference -> layout directory, for every buildable catalog image."""
    return {b.ref: str(b.layout) for b in build_images(out_dir, cache_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the OCI layouts")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="download/build cache")
    parser.add_argument(
        "--push", metavar="URL", help="registry to push to, e.g. http://127.0.0.1:5000"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    built = build_images(args.out, args.cache)
    for image in built:
        print(f"{image.ref:<75} {image.config_digest[:19]} {image.size / 1e6:6.2f} MB")
    for entry in catalog():
        if entry.recipe is None:
            print(f"{entry.ref}: not built: {entry.unbuildable}", file=sys.stderr)
    print(f"built {len(built)} references in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if args.push:
        from tests.images.push import push_all

        pushed = push_all({b.ref: str(b.layout) for b in built}, args.push)
        print(f"pushed {len(pushed)} tags to {args.push}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
