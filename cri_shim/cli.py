"""``stowage``: the node CLI. ``stowage images import FILE`` loads an image archive into the
store that stowage-cri serves (it works whether or not the daemon is running)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from cri_shim.config import ConfigError, load_config
from cri_shim.convert import image_user
from cri_shim.server import open_store
from images.errors import ImageError

__all__ = ["main"]


def _images(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.root:
        from dataclasses import replace

        cfg = replace(cfg, cri=replace(cfg.cri, root=args.root))
    store = open_store(cfg)
    try:
        if args.action == "import":
            from images.importer import import_archive

            for path in args.files:
                for rec in import_archive(store, path, base_name=args.base_name):
                    names = ", ".join(rec.repo_tags or rec.repo_digests) or "(no name)"
                    print(f"imported {rec.id} {names}")
        elif args.action == "ls":
            print(f"{'IMAGE':60} {'ID':20} {'SIZE':>10} USER")
            for rec in store.list():
                uid, name = image_user(rec.config)
                user = name or ("" if uid is None else str(uid))
                for tag in rec.repo_tags or ("<none>",):
                    print(f"{tag:60} {rec.id[7:20]:20} {rec.size:>10} {user}")
        elif args.action == "rm":
            for name in args.files:
                store.remove(name)
        elif args.action == "pull":
            for name in args.files:
                rec = store.pull(name)
                print(f"pulled {rec.id}")
    finally:
        store.close()
    return 0


def _cni_install(args: argparse.Namespace) -> int:
    # The CRI side reaches cni_bridge only by executing it (the plugins stand alone).
    cmd = [sys.executable, "-m", "cni_bridge.install", "--bin-dir", args.bin_dir,
           "--conf-dir", args.conf_dir]  # fmt: skip
    if args.ipv6_subnet:
        cmd += ["--ipv6-subnet", args.ipv6_subnet]
    return subprocess.run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stowage", description="Stowage node CLI")
    parser.add_argument("--config", help="config file (default /etc/stowage/config.toml)")
    parser.add_argument("--root", help="override cri.root")
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="manage the node's images")
    actions = images.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="load OCI layout or docker-archive tarballs")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--base-name", help="name images whose archive gives only a tag as BASE:TAG")
    actions.add_parser("ls", help="list images")
    rm = actions.add_parser("rm", help="remove images by name or id")
    rm.add_argument("files", nargs="+")
    pull = actions.add_parser("pull", help="pull images from their registries")
    pull.add_argument("files", nargs="+")
    cni = sub.add_parser("cni", help="manage the node's CNI plugins")
    cni_actions = cni.add_subparsers(dest="action", required=True)
    cni_install = cni_actions.add_parser(
        "install", help="install stowage-bridge and stowage-host-local (and a default network)"
    )
    cni_install.add_argument("--bin-dir", default="/opt/cni/bin")
    cni_install.add_argument("--conf-dir", default="/etc/cni/net.d")
    cni_install.add_argument("--ipv6-subnet", default="")
    args = parser.parse_args(argv)
    if args.command == "cni":
        return _cni_install(args)
    try:
        return _images(args)
    except (ConfigError, ImageError) as exc:
        print(f"stowage: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
