"""Image references (``[domain/]path[:tag][@digest]``), normalised the way docker and containerd do.

Normalisation makes one image have one name: ``busybox``, ``library/busybox``,
``index.docker.io/library/busybox:latest`` and ``docker.io/library/busybox:latest`` are the same
reference, and ``str()`` always gives the last, fully-qualified form (what the kubelet and
``crictl images`` show).

The first path component is a domain only if it looks like one (has a ``.`` or ``:``, is
``localhost``, or has uppercase letters, which repository paths never do); otherwise the whole
name is a Docker Hub repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from images.digest import DIGEST_ALGORITHMS, parse_digest
from images.errors import InvalidReferenceError

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "Reference",
    "is_image_id",
    "normalize_image_id",
    "parse_reference",
]

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_NAME_MAX = 255
_TAG_MAX = 128

# The distribution grammar, spelled out with ASCII classes (``\w`` would admit Unicode).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalised reference; build it with ``parse_reference``, not by hand."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short form docker prints, e.g. ``busybox`` (for messages only)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(_OFFICIAL_PREFIX)

    def __str__(self) -> str:
        s = self.name
        if self.tag is not None:
            s += ":" + self.tag
        if self.digest is not None:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (any digest is dropped): a repo tag."""
        return Reference(self.domain, self.path, _check_tag(tag), None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository at ``digest`` (any tag is dropped): a repo digest."""
        return Reference(self.domain, self.path, None, _check_digest(digest))


def parse_reference(s: str) -> Reference:
    """Parses and normalises ``s``; raises InvalidReferenceError saying what is wrong."""
    if not s:
        raise InvalidReferenceError("invalid image reference: empty")
    if _SHA256_HEX.fullmatch(s):
        raise InvalidReferenceError(
            f"invalid image reference {s!r}: a 64-digit hex string is an image id, not a name"
        )
    remainder, at, digest_part = s.partition("@")
    digest = _check_digest(digest_part, s) if at else None
    name, tag = _split_tag(remainder, s)
    domain, path = _split_domain(name)
    _check_name(domain, path, s)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def is_image_id(s: str) -> bool:
    """True for ``sha256:<64 hex>`` and bare ``<64 hex>`` (CRI clients send both)."""
    return normalize_image_id(s) is not None


def normalize_image_id(s: str) -> str | None:
    """The ``sha256:<hex>`` form of an image id, or None if ``s`` is not a full image id."""
    hexpart = s.removeprefix("sha256:")
    return "sha256:" + hexpart if _SHA256_HEX.fullmatch(hexpart) else None


def _split_tag(remainder: str, original: str) -> tuple[str, str | None]:
    # A colon before the last slash belongs to a registry port (localhost:5000/app).
    colon = remainder.rfind(":")
    if colon <= remainder.rfind("/"):
        return remainder, None
    return remainder[:colon], _check_tag(remainder[colon + 1 :], original)


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def _check_name(domain: str, path: str, original: str) -> None:
    if not _DOMAIN.fullmatch(domain):
        raise InvalidReferenceError(f"invalid image reference {original!r}: bad domain {domain!r}")
    if path != path.lower():
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: repository name must be lowercase"
        )
    if not _PATH.fullmatch(path):
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: bad repository name {path!r} (components are "
            "lowercase letters and digits, separated by '.', '_', '__' or dashes)"
        )
    if len(domain) + 1 + len(path) > _NAME_MAX:
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: name longer than {_NAME_MAX} characters"
        )


def _check_tag(tag: str, original: str | None = None) -> str:
    where = f"image reference {original!r}" if original is not None else "tag"
    if len(tag) > _TAG_MAX:
        raise InvalidReferenceError(f"invalid {where}: tag longer than {_TAG_MAX} characters")
    if not _TAG.fullmatch(tag):
        raise InvalidReferenceError(
            f"invalid {where}: bad tag {tag!r} (letters, digits, '_', '.', '-'; "
            "not starting with '.' or '-')"
        )
    return tag


def _check_digest(digest: str, original: str | None = None) -> str:
    try:
        return parse_digest(digest)
    except InvalidReferenceError as exc:
        if original is None:
            raise
        known = "/".join(DIGEST_ALGORITHMS)
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: bad digest {digest!r} (want {known}:<hex>)"
        ) from exc
