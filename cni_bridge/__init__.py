"""Stowage's CNI plugins: ``stowage-bridge`` (veth pairs on a Linux bridge) and
``stowage-host-local`` (file-backed IPAM, also used in-process by the bridge).

The package ``__init__`` imports nothing on purpose: the installed plugin executables start a
fresh interpreter for every CNI call, and every module imported here would be paid on each one.
Import the modules you need (``cni_bridge.bridge``, ``cni_bridge.ipam.hostlocal``, ...).
"""

__all__: list[str] = []
