"""The package's one exception tree. Each class carries the CNI error code the spec assigns to
it; ``cni_bridge.main`` turns any of them into the spec's error JSON at the one edge. Codes
0-99 are the spec's well-known ones, 100+ are ours (documented in ``cni_bridge/README.md``)."""

from __future__ import annotations

__all__ = [
    "AddressExhausted",
    "AddressInUse",
    "CNIError",
    "DecodeFailure",
    "IOFailure",
    "IncompatibleVersion",
    "InvalidConfig",
    "InvalidEnvironment",
    "KernelError",
    "LimitedConnectivity",
    "NetnsGone",
    "PluginNotAvailable",
    "TryAgainLater",
    "UnknownContainer",
    "UnsupportedField",
]


class CNIError(Exception):
    """Base class: ``code`` is what the runtime sees; ``details`` is the long message."""

    code = 999

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class IncompatibleVersion(CNIError):
    code = 1


class UnsupportedField(CNIError):
    code = 2


class UnknownContainer(CNIError):
    code = 3


class InvalidEnvironment(CNIError):
    code = 4


class IOFailure(CNIError):
    code = 5


class DecodeFailure(CNIError):
    code = 6


class InvalidConfig(CNIError):
    code = 7


class TryAgainLater(CNIError):
    code = 11


class PluginNotAvailable(CNIError):
    code = 50


class LimitedConnectivity(CNIError):
    code = 51


class AddressExhausted(CNIError):
    """No free address left in a range set (plugin-specific code)."""

    code = 100


class AddressInUse(CNIError):
    """A requested address is held by another attachment, or the attachment already has one."""

    code = 101


class KernelError(CNIError):
    """A netlink or nftables request the kernel refused."""

    code = 102


class NetnsGone(CNIError):
    """The network namespace path does not exist (ADD/CHECK fail with it; DEL tolerates it)."""

    code = 103
