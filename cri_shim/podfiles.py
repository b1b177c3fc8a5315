"""The files a pod gives its containers: /etc/hostname, /etc/hosts, /etc/resolv.conf (pure)."""

from __future__ import annotations

__all__ = ["hosts_file", "resolv_conf"]

_DEFAULT_HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts_file(host_hosts: str | None, hostname: str, ips: list[str]) -> str:
    """A host-network pod sees the node's hosts file; others get localhost and their own name."""
    if host_hosts is not None:
        return host_hosts
    lines = [_DEFAULT_HOSTS]
    for ip in ips:
        lines.append(f"{ip}\t{hostname}\n")
    return "".join(lines)


def resolv_conf(
    servers: list[str], searches: list[str], options: list[str], host_resolv: str | None
) -> str:
    """From the pod's DNSConfig; with none given, the node's own resolv.conf (as the kubelet
    expects of a runtime for pods with dnsPolicy Default)."""
    if not servers and not searches and not options:
        return host_resolv or ""
    out = []
    if searches:
        out.append("search " + " ".join(searches))
    out += [f"nameserver {s}" for s in servers]
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"
