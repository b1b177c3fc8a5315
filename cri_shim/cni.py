"""Pod networking through CNI plugins, with libcni's semantics (as containerd and CRI-O use it).

- The network is the first ``.conflist``/``.conf``/``.json`` file in the config directory by
  name; a ``.conf`` holds a single plugin and is wrapped into a list.
- Plugins are executables found in the bin directories (``CNI_PATH``); ADD runs the list in
  order, each getting the previous result as ``prevResult``; DEL runs it in reverse.
- ``runtimeConfig`` carries only the capabilities a plugin declares (``portMappings``, ...).
- Every ADD result is cached with the exact config it was made with, so DEL and CHECK use what
  ADD used, even if the config directory changed since.
- Loopback is brought up in every pod namespace: by the ``loopback`` plugin, or (stowage's
  pods) by the pod set-up helper itself, which saves a plugin process per pod.

Pure parts (config selection and parsing, request building) are separate functions; ``Cni``
is the thin shell that executes plugins and owns the cache.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from images.atomic import atomic_write

__all__ = [
    "TEMPLATE_CONF_NAME",
    "Cni",
    "CniError",
    "NetworkConfig",
    "PodNetworkArgs",
    "load_network",
    "pod_ips",
    "render_conf_template",
]

TEMPLATE_CONF_NAME = "10-stowage-net.conflist"
_TEMPLATE_ACTION = re.compile(r"\{\{(.*?)\}\}")

_LOOPBACK = {"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


class CniError(Exception):
    pass


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    raw: bytes
    source: str = ""


@dataclass(frozen=True)
class PodNetworkArgs:
    container_id: str  # the sandbox id
    netns: str
    pod_name: str
    pod_namespace: str
    pod_uid: str
    ifname: str = "eth0"
    capabilities: dict[str, Any] = field(default_factory=dict)  # portMappings, ...


def parse_network(raw: bytes, source: str = "") -> NetworkConfig:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CniError(f"CNI config {source} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CniError(f"CNI config {source} is not an object")
    if "plugins" not in data:  # a single-plugin .conf
        single = dict(data)
        data = {
            "cniVersion": data.get("cniVersion", "0.4.0"),
            "name": data.get("name", ""),
            "plugins": [single],
        }
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise CniError(f"CNI config {source} has no plugins")
    for p in plugins:
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise CniError(f"CNI config {source}: every plugin needs a type")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(f"CNI config {source} has no network name")
    raw_list = json.dumps(data).encode()
    return NetworkConfig(
        name, str(data.get("cniVersion", "0.4.0")), tuple(plugins), raw_list, source
    )


def load_network(conf_dir: str) -> NetworkConfig | None:
    """The first network config in ``conf_dir`` by name, or None if there is none."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return None
    for name in names:
        if name.endswith((".conflist", ".conf", ".json")):
            path = os.path.join(conf_dir, name)
            with open(path, "rb") as f:
                return parse_network(f.read(), path)
    return None


def plugin_request(
    net: NetworkConfig, plugin: dict[str, Any], prev: dict[str, Any] | None, caps: dict[str, Any]
) -> bytes:
    conf = dict(plugin)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    if prev is not None:
        conf["prevResult"] = prev
    declared = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in caps.items() if declared.get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    conf.pop("capabilities", None)
    return json.dumps(conf).encode()


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


def cni_args(args: PodNetworkArgs) -> str:
    return ";".join(
        [
            "IgnoreUnknown=1",
            f"K8S_POD_NAMESPACE={args.pod_namespace}",
            f"K8S_POD_NAME={args.pod_name}",
            f"K8S_POD_INFRA_CONTAINER_ID={args.container_id}",
            f"K8S_POD_UID={args.pod_uid}",
        ]
    )


def pod_ips(result: dict[str, Any]) -> list[str]:
    """The pod's addresses from a result: on its container-side interface, IPv4 first."""
    ips = []
    for ip in result.get("ips") or []:
        address = str(ip.get("address", "")).split("/")[0]
        if address:
            ips.append(address)
    return sorted(ips, key=lambda a: ":" in a)


def render_conf_template(template: str, pod_cidrs: list[str]) -> bytes:
    """A network config from containerd-style template text and the node's pod CIDRs
    (pure). ``{{.PodCIDR}}`` is the first CIDR; Go template logic (range, if) is not
    supported and is refused rather than written out half-rendered."""
    if not pod_cidrs:
        raise CniError("no pod CIDR to render the CNI config template with")
    for cidr in pod_cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise CniError(f"pod CIDR {cidr!r} is not a CIDR") from exc

    def action(m: re.Match[str]) -> str:
        if m.group(1).strip() != ".PodCIDR":
            raise CniError(f"unsupported CNI config template action {m.group(0)!r}")
        return pod_cidrs[0]

    rendered = _TEMPLATE_ACTION.sub(action, template).encode()
    parse_network(rendered, "conf_template")  # a clear error now, not at the first pod
    return rendered


class Cni:
    def __init__(
        self, conf_dir: str, bin_dirs: list[str], cache_dir: str, loopback: bool = True
    ) -> None:
        # loopback=False when the caller brings lo up itself (stowage's pod set-up does).
        self.loopback = loopback
        self.conf_dir = conf_dir
        self.bin_dirs = bin_dirs
        self.cache_dir = cache_dir
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)

    def network(self) -> NetworkConfig | None:
        return load_network(self.conf_dir)

    def write_from_template(self, template_path: str, pod_cidrs: list[str]) -> str | None:
        """UpdateRuntimeConfig's pod CIDR, as containerd applies it: while no network config
        exists, the template rendered with it becomes one. Returns the file written, if any
        (a network the admin or a network add-on already put in place is left alone)."""
        if self.network() is not None:
            return None
        try:
            with open(template_path) as f:
                template = f.read()
        except OSError as exc:
            raise CniError(f"CNI config template {template_path}: {exc.strerror}") from exc
        rendered = render_conf_template(template, pod_cidrs)
        os.makedirs(self.conf_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self.conf_dir, TEMPLATE_CONF_NAME)
        atomic_write(path, rendered, 0o644)
        return path

    def _find(self, plugin_type: str) -> str:
        if "/" in plugin_type:
            raise CniError(f"invalid CNI plugin type {plugin_type!r}")
        for d in self.bin_dirs:
            path = os.path.join(d, plugin_type)
            if os.access(path, os.X_OK):
                return path
        raise CniError(f"CNI plugin {plugin_type} not found in {':'.join(self.bin_dirs)}")

    def _exec(
        self, command: str, plugin: str, stdin: bytes, args: PodNetworkArgs, ifname: str
    ) -> dict[str, Any] | None:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": args.container_id,
            "CNI_NETNS": args.netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args(args),
            "CNI_PATH": ":".join(self.bin_dirs),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        try:
            res = subprocess.run(
                [self._find(plugin)],
                input=stdin,
                env=env,
                capture_output=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CniError(f"CNI plugin {plugin} {command} timed out") from exc
        if res.returncode != 0:
            detail = res.stderr.decode(errors="replace").strip()
            with contextlib.suppress(ValueError, AttributeError):
                err = json.loads(res.stdout)
                detail = f"{err.get('msg', '')} {err.get('details', '')} (code {err.get('code')})"
            raise CniError(f"CNI plugin {plugin} {command} failed: {detail.strip()}")
        if command != "ADD" or not res.stdout.strip():
            return None
        try:
            out: dict[str, Any] = json.loads(res.stdout)
        except json.JSONDecodeError as exc:
            raise CniError(f"CNI plugin {plugin} returned invalid JSON") from exc
        return out

    def _cache_path(self, net_name: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, f"{net_name}-{container_id}-{ifname}")

    def _run_list(
        self,
        command: str,
        net: NetworkConfig,
        args: PodNetworkArgs,
        ifname: str,
        prev: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        plugins = net.plugins if command != "DEL" else tuple(reversed(net.plugins))
        result = prev
        for plugin in plugins:
            stdin = plugin_request(net, plugin, result, args.capabilities)
            out = self._exec(command, str(plugin["type"]), stdin, args, ifname)
            if command == "ADD":
                result = out
        return result

    def setup(self, args: PodNetworkArgs) -> dict[str, Any]:
        """Loopback, then the pod network; returns the network's result. Undoes on failure."""
        net = self.network()
        if net is None:
            raise CniError(f"no CNI network config in {self.conf_dir}")
        if self.loopback:
            lo = parse_network(json.dumps(_LOOPBACK).encode())
            self._run_list("ADD", lo, args, "lo")
        cache: dict[str, Any] = {
            "kind": "cniCacheV1",
            "config": json.loads(net.raw),
            "ifName": args.ifname,
            "networkName": net.name,
            "cniArgs": cni_args(args),
            "capabilityArgs": args.capabilities,
            "result": None,
        }
        path = self._cache_path(net.name, args.container_id, args.ifname)
        # Recorded before ADD, so that a crash during ADD still leaves what DEL needs.
        atomic_write(path, json.dumps(cache).encode(), 0o600)
        try:
            result = self._run_list("ADD", net, args, args.ifname) or {}
        except CniError:
            with contextlib.suppress(CniError):
                self._run_list("DEL", net, args, args.ifname)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        cache["result"] = result
        atomic_write(path, json.dumps(cache).encode(), 0o600)
        return result

    def teardown(self, args: PodNetworkArgs) -> None:
        """DEL with the config ADD used (from the cache) or the current one; idempotent."""
        cached = self._cached(args.container_id)
        if cached is not None:
            path, data = cached
            net = parse_network(json.dumps(data["config"]).encode())
            args = PodNetworkArgs(
                **{**args.__dict__, "capabilities": data.get("capabilityArgs") or {}}
            )
            self._run_list(
                "DEL", net, args, str(data.get("ifName", args.ifname)), data.get("result")
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        current = self.network()
        if current is not None:
            self._run_list("DEL", current, args, args.ifname)

    def check(self, args: PodNetworkArgs) -> None:
        cached = self._cached(args.container_id)
        if cached is None:
            raise CniError(f"no CNI attachment recorded for {args.container_id}")
        _, data = cached
        net = parse_network(json.dumps(data["config"]).encode())
        if _version(net.cni_version) < (0, 4, 0):
            return  # CHECK exists from 0.4.0 on
        for plugin in net.plugins:
            stdin = plugin_request(
                net, plugin, data.get("result"), data.get("capabilityArgs") or {}
            )
            self._exec("CHECK", str(plugin["type"]), stdin, args, str(data.get("ifName")))

    def gc(self, valid: list[tuple[str, str]]) -> None:
        """The CNI GC verb (spec 1.1.0): each plugin of the network frees what belongs to no
        attachment in ``valid`` ((container id, ifname) pairs). Older networks have no GC."""
        net = self.network()
        if net is None or _version(net.cni_version) < (1, 1, 0):
            return
        attachments = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
        args = PodNetworkArgs("", "", "", "", "")
        for plugin in net.plugins:
            request = json.loads(plugin_request(net, plugin, None, {}))
            request["cni.dev/valid-attachments"] = attachments
            self._exec("GC", str(plugin["type"]), json.dumps(request).encode(), args, "")

    def _cached(self, container_id: str) -> tuple[str, dict[str, Any]] | None:
        suffix = f"-{container_id}-"
        for name in os.listdir(self.cache_dir):
            if suffix in name:
                path = os.path.join(self.cache_dir, name)
                try:
                    with open(path) as f:
                        return path, json.load(f)
                except (OSError, ValueError):
                    continue
        return None

    def attached_ids(self) -> set[str]:
        """Sandbox ids with a cached attachment (for the start-up GC pass)."""
        out = set()
        for name in os.listdir(self.cache_dir):
            try:
                with open(os.path.join(self.cache_dir, name)) as f:
                    data = json.load(f)
                cid = [
                    p
                    for p in str(data.get("cniArgs", "")).split(";")
                    if p.startswith("K8S_POD_INFRA_CONTAINER_ID=")
                ]
                if cid:
                    out.add(cid[0].split("=", 1)[1])
            except (OSError, ValueError):
                continue
        return out
