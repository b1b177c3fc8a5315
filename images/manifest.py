"""OCI and Docker schema 2 manifests, indexes and image configs; platform selection; chain ids.

Everything here is pure (bytes in, records out) except ``host_platform``. Parsers validate what
the rest of the library relies on (digests, sizes, media types) and raise ManifestError naming the
offending field; fields we do not use are ignored, as the specs ask of readers.

Docker schema 1 manifests are refused: they carry no content-addressed config, Docker removed
support for pushing them, and registries convert on request when schema 2 is in the Accept header.
"""

from __future__ import annotations

import enum
import hashlib
import json
import platform as _host
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from images.digest import parse_digest
from images.errors import InvalidReferenceError, ManifestError

__all__ = [
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_LAYER_ZSTD",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_DOCKER_SCHEMA1",
    "MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_EMPTY",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_NONDIST",
    "MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP",
    "MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_MANIFEST",
    "Compression",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "chain_ids",
    "config_json",
    "detect_media_type",
    "host_platform",
    "is_index",
    "is_manifest",
    "layer_compression",
    "normalize_platform",
    "parse_descriptor",
    "parse_image_config",
    "parse_index",
    "parse_manifest",
    "parse_platform",
    "platform_for_machine",
    "select_platform",
]

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
_SCHEMA1_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED})
_DOCUMENT_MEDIA_TYPES = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES | _SCHEMA1_MEDIA_TYPES


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


LAYER_MEDIA_TYPES: Mapping[str, Compression] = {
    MEDIA_TYPE_OCI_LAYER: Compression.NONE,
    MEDIA_TYPE_OCI_LAYER_GZIP: Compression.GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD: Compression.ZSTD,
    MEDIA_TYPE_OCI_LAYER_NONDIST: Compression.NONE,
    MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP: Compression.GZIP,
    MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD: Compression.ZSTD,
    MEDIA_TYPE_DOCKER_LAYER: Compression.NONE,
    MEDIA_TYPE_DOCKER_LAYER_GZIP: Compression.GZIP,
    MEDIA_TYPE_DOCKER_LAYER_ZSTD: Compression.ZSTD,
    MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP: Compression.GZIP,
}


def layer_compression(media_type: str) -> Compression | None:
    """The compression a layer media type announces; None if it is not a layer type we know."""
    return LAYER_MEDIA_TYPES.get(media_type)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_MEDIA_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_MEDIA_TYPES


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    # Excluded from the hash so descriptors can live in sets; still compared by ``==``.
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime uses. Empty means "not set by the image"."""

    os: str
    architecture: str
    variant: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()
    created: str | None = None


# ---------------------------------------------------------------------------------------------
# parsing

_T = TypeVar("_T")


def detect_media_type(body: bytes, content_type_header: str | None = None) -> str:
    """The media type of a manifest-like document.

    The body's own ``mediaType`` wins (it is covered by the digest, the header is not); then a
    specific Content-Type; then the document's shape. Schema 1 is reported as such so the caller
    can refuse it by name.
    """
    obj = _load_object(body, "manifest")
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    header = (content_type_header or "").partition(";")[0].strip().lower()
    if header in _DOCUMENT_MEDIA_TYPES:
        return header
    if obj.get("schemaVersion") == 1 or "fsLayers" in obj:
        return MEDIA_TYPE_DOCKER_SCHEMA1
    if "manifests" in obj:
        return MEDIA_TYPE_OCI_INDEX
    if "config" in obj and "layers" in obj:
        return MEDIA_TYPE_OCI_MANIFEST
    raise ManifestError("cannot tell the media type: neither a manifest nor an index")


def parse_manifest(body: bytes, media_type: str | None = None) -> Manifest:
    """Parses an image manifest; ``media_type`` is what the registry or a descriptor said."""
    obj = _load_object(body, "manifest")
    kind = _document_type(obj, media_type, MANIFEST_MEDIA_TYPES, "manifest")
    config = parse_descriptor(_require(obj, "config", dict, "manifest"), "manifest config")
    layers = _require(obj, "layers", list, "manifest")
    return Manifest(
        media_type=kind,
        config=config,
        layers=tuple(parse_descriptor(d, f"manifest layer {i}") for i, d in enumerate(layers)),
    )


def parse_index(body: bytes, media_type: str | None = None) -> Index:
    """Parses an OCI index or a Docker manifest list."""
    obj = _load_object(body, "index")
    kind = _document_type(obj, media_type, INDEX_MEDIA_TYPES, "index")
    entries = _require(obj, "manifests", list, "index")
    return Index(
        media_type=kind,
        manifests=tuple(parse_descriptor(d, f"index entry {i}") for i, d in enumerate(entries)),
    )


def parse_descriptor(obj: object, where: str = "descriptor") -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected an object")
    media_type = _require(obj, "mediaType", str, where)
    digest = _require(obj, "digest", str, where)
    try:
        parse_digest(digest)
    except InvalidReferenceError as exc:
        raise ManifestError(f"{where}: {exc}") from exc
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: 'size' must be a non-negative integer, got {size!r}")
    plat = obj.get("platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=None if plat is None else _parse_platform_object(plat, where),
        annotations=_string_map(obj.get("annotations"), f"{where} annotations"),
    )


def parse_image_config(body: bytes) -> ImageConfig:
    obj = _load_object(body, "image config")
    run = obj.get("config")
    if run is None:
        run = {}
    if not isinstance(run, dict):
        raise ManifestError("image config: 'config' must be an object")
    rootfs = _require(obj, "rootfs", dict, "image config")
    if rootfs.get("type") != "layers":
        raise ManifestError(f"image config: rootfs type {rootfs.get('type')!r} is not 'layers'")
    diff_ids = _string_list(rootfs.get("diff_ids"), "image config rootfs.diff_ids")
    for d in diff_ids:
        try:
            parse_digest(d)
        except InvalidReferenceError as exc:
            raise ManifestError(f"image config rootfs.diff_ids: {exc}") from exc
    created = obj.get("created")
    return ImageConfig(
        os=_optional_str(obj, "os", "image config"),
        architecture=_optional_str(obj, "architecture", "image config"),
        variant=_optional_str(obj, "variant", "image config"),
        user=_optional_str(run, "User", "image config"),
        env=_string_list(run.get("Env"), "image config Env"),
        entrypoint=_string_list(run.get("Entrypoint"), "image config Entrypoint"),
        cmd=_string_list(run.get("Cmd"), "image config Cmd"),
        working_dir=_optional_str(run, "WorkingDir", "image config"),
        labels=_string_map(run.get("Labels"), "image config Labels"),
        stop_signal=_optional_str(run, "StopSignal", "image config"),
        exposed_ports=tuple(_object_keys(run.get("ExposedPorts"), "image config ExposedPorts")),
        volumes=tuple(_object_keys(run.get("Volumes"), "image config Volumes")),
        diff_ids=diff_ids,
        created=created if isinstance(created, str) else None,
    )


def config_json(body: bytes) -> dict[str, object]:
    """The image config as a JSON object, after checking it parses as an ImageConfig."""
    parse_image_config(body)
    return _load_object(body, "image config")


def _load_object(body: bytes, what: str) -> dict[str, object]:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ManifestError(f"{what} must be a JSON object")
    return obj


def _document_type(
    obj: dict[str, object], media_type: str | None, allowed: frozenset[str], what: str
) -> str:
    # A generic Content-Type (application/json, octet-stream) says nothing; only known ones count.
    hint = media_type if media_type in _DOCUMENT_MEDIA_TYPES else None
    if obj.get("schemaVersion") == 1 or hint in _SCHEMA1_MEDIA_TYPES:
        raise ManifestError(
            "Docker schema 1 manifests are not supported; push the image again with a current "
            "docker or buildkit (schema 2 or OCI)"
        )
    if obj.get("schemaVersion") != 2:
        raise ManifestError(f"{what}: schemaVersion must be 2, got {obj.get('schemaVersion')!r}")
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"{what}: 'mediaType' must be a string")
    if declared and hint and declared != hint:
        raise ManifestError(
            f"{what}: body says mediaType {declared!r}, but it was served as {hint!r}"
        )
    default = MEDIA_TYPE_OCI_INDEX if what == "index" else MEDIA_TYPE_OCI_MANIFEST
    kind = declared or hint or default
    if kind not in allowed:
        raise ManifestError(f"expected an image {what}, got media type {kind!r}")
    return kind


def _require(obj: dict[str, object], key: str, kind: type[_T], where: str) -> _T:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ManifestError(f"{where}: '{key}' must be {_JSON_NAMES[kind]}, got {value!r:.80}")
    return value


_JSON_NAMES: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}


def _optional_str(obj: dict[str, object], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{where}: '{key}' must be a string")
    return value


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: expected a list of strings")
    return tuple(value)


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestError(f"{where}: expected an object of strings")
    return dict(value)


def _object_keys(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: expected an object")
    return sorted(value)


def _parse_platform_object(obj: object, where: str) -> Platform:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: 'platform' must be an object")
    return Platform(
        os=_require(obj, "os", str, f"{where} platform"),
        architecture=_require(obj, "architecture", str, f"{where} platform"),
        variant=_optional_str(obj, "variant", f"{where} platform"),
    )


# ---------------------------------------------------------------------------------------------
# platforms


# Names other tools (uname, Debian) use for what Go calls GOARCH, with the variant they imply.
_ARCH_ALIASES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "ppc64el": ("ppc64le", ""),
    "loongarch64": ("loong64", ""),
}


def normalize_platform(p: Platform) -> Platform:
    """Canonical spelling, as containerd compares them: ``arm64/v8`` == ``arm64``, ``arm`` ==
    ``arm/v7``, ``amd64/v1`` == ``amd64``, ``aarch64`` == ``arm64``."""
    os_name = p.os.lower()
    arch, variant = p.architecture.lower(), p.variant.lower()
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if variant.isdigit():
        variant = "v" + variant
    if (arch == "amd64" and variant == "v1") or (arch == "arm64" and variant == "v8"):
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    return Platform("darwin" if os_name == "macos" else os_name, arch, variant)


def parse_platform(s: str) -> Platform:
    """``"linux/arm64/v8"`` -> Platform (normalised)."""
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ManifestError(f"invalid platform {s!r}: expected os/arch[/variant]")
    return normalize_platform(Platform(*parts))


def platform_for_machine(machine: str, os_name: str = "linux") -> Platform:
    """Maps ``uname -m`` output to the OCI (GOARCH) platform."""
    return normalize_platform(Platform(os_name, machine))


def host_platform() -> Platform:
    return platform_for_machine(_host.machine())


def _variant_level(variant: str) -> int | None:
    digits = variant.removeprefix("v")
    return int(digits) if variant.startswith("v") and digits.isdigit() else None


def _acceptable(want: Platform) -> list[Platform]:
    """Platforms ``want`` can run, best first: a CPU level runs images built for lower levels."""
    level = _variant_level(want.variant)
    if want.architecture == "amd64":
        top = level or 1
        return [Platform(want.os, "amd64", f"v{n}" if n > 1 else "") for n in range(top, 0, -1)]
    if want.architecture == "arm" and level is not None:
        return [Platform(want.os, "arm", f"v{n}") for n in range(level, 4, -1)]
    if want.architecture == "arm64" and want.variant:
        return [want, Platform(want.os, "arm64", "")]
    return [want]


def select_platform(index: Index, want: Platform) -> Descriptor:
    """The index entry to run on ``want``: the best acceptable platform, first in index order.

    Entries without a platform (or with ``unknown/unknown``, e.g. attestations) never match.
    """
    ranking = _acceptable(normalize_platform(want))
    best: tuple[int, Descriptor] | None = None
    for desc in index.manifests:
        if desc.platform is None:
            continue
        have = normalize_platform(desc.platform)
        if have in ranking and (best is None or ranking.index(have) < best[0]):
            best = (ranking.index(have), desc)
    if best is None:
        offered = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
        raise ManifestError(
            f"no manifest for platform {normalize_platform(want)} in the index "
            f"(it offers: {', '.join(offered) or 'no platforms'})"
        )
    return best[1]


# ---------------------------------------------------------------------------------------------
# chain ids


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain ids, one per layer: ChainID(L0) = DiffID(L0) and
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).

    The chain id names a stack of layers, so it is what a snapshot of that stack is keyed by.
    """
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            joined = f"{out[-1]} {diff_id}".encode()
            out.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return out
