"""``python -m cni_bridge.install [--bin-dir DIR] [--conf-dir DIR] [--agent-socket PATH]``:
write the plugin executables and, when the config directory has none, a default conflist.

The executables name this interpreter by absolute path and run it with ``-I -S`` (see
``cni_bridge.entry``); they never take the reference plugins' names. Files are written to a
temporary name and renamed, so a runtime never executes a half-written plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["DEFAULT_CONFLIST", "PLUGINS", "install", "main"]

PLUGINS = {"stowage-bridge": "bridge", "stowage-host-local": "host-local"}
CONFLIST_NAME = "10-stowage.conflist"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_conflist(ipv6_subnet: str = "") -> dict[str, object]:
    ranges: list[list[dict[str, str]]] = [[{"subnet": "10.88.0.0/16"}]]
    routes = [{"dst": "0.0.0.0/0"}]
    if ipv6_subnet:
        ranges.append([{"subnet": ipv6_subnet}])
        routes.append({"dst": "::/0"})
    return {
        "cniVersion": "1.1.0",
        "name": "stowage",
        "plugins": [
            {
                "type": "stowage-bridge",
                "bridge": "stowage0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "capabilities": {"portMappings": True, "ips": True, "mac": True},
                "ipam": {"type": "stowage-host-local", "ranges": ranges, "routes": routes},
            }
        ],
    }


DEFAULT_CONFLIST = default_conflist()


def script(plugin: str, python: str, agent_socket: str) -> str:
    return (
        f"#!{python} -IS\n"
        "# Written by python -m cni_bridge.install; see cni_bridge/entry.py.\n"
        "import sys\n"
        f"sys.path.insert(0, {PACKAGE_ROOT!r})\n"
        "from cni_bridge.entry import main\n"
        f"main({plugin!r}, {agent_socket!r})\n"
    )


def _write(path: str, data: str, mode: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(bin_dir: str, conf_dir: str | None, python: str = "",
            agent_socket: str = "/run/stowage/cni-agent.sock",
            ipv6_subnet: str = "") -> list[str]:
    """Write the executables (always) and the conflist (only into a config dir with no
    ``.conf``/``.conflist``/``.json`` yet). Returns the paths written."""
    python = python or sys.executable
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for name, plugin in PLUGINS.items():
        path = os.path.join(bin_dir, name)
        _write(path, script(plugin, python, agent_socket), 0o755)
        written.append(path)
    if conf_dir is not None:
        os.makedirs(conf_dir, exist_ok=True)
        existing = [n for n in os.listdir(conf_dir)
                    if n.endswith((".conf", ".conflist", ".json"))]
        if not existing:
            path = os.path.join(conf_dir, CONFLIST_NAME)
            _write(path, json.dumps(default_conflist(ipv6_subnet), indent=2) + "\n", 0o644)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cni_bridge.install", description=__doc__)
    p.add_argument("--bin-dir", default="/opt/cni/bin")
    p.add_argument("--conf-dir", default="/etc/cni/net.d")
    p.add_argument("--no-conf", action="store_true", help="write no conflist")
    p.add_argument("--agent-socket", default="/run/stowage/cni-agent.sock",
                   help="where the plugins look for a resident agent ('' for never)")
    p.add_argument("--ipv6-subnet", default="", help="add an IPv6 range to the default conflist")
    args = p.parse_args(argv)
    for path in install(args.bin_dir, None if args.no_conf else args.conf_dir,
                        agent_socket=args.agent_socket, ipv6_subnet=args.ipv6_subnet):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
