"""The test images critest v1.36.0 and our own tests pull, and how each one is made.

Pure data: each entry names the upstream reference and a `Recipe` that `build.py` turns into
an image. Entries with equal recipes become the same image (same config digest), which is how
"one image under three tags" and "the same pause image in two registries" are expressed.
Where an image is pushed: its upstream path without the host (`local_repository`), since the
mirror configuration maps every host in `MIRRORED_HOSTS` to the one local registry.

Sources: cri-tools pkg/validate/consts.go, image.go, security_context_linux.go,
multi_container_linux.go, networking.go; pkg/framework/util.go; pkg/benchmark/image.go; and
the Dockerfiles in cri-tools/images/ for what the upstream images contain.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tests.images.rootfs import Group, User

__all__ = [
    "MIRRORED_HOSTS",
    "Base",
    "CatalogEntry",
    "Recipe",
    "catalog",
    "local_repository",
    "split_reference",
]

MIRRORED_HOSTS = ("registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws")

_E2E = "registry.k8s.io/e2e-test-images/"
_CRI_TOOLS = "gcr.io/k8s-staging-cri-tools/"
_ECR_LIBRARY = "public.ecr.aws/docker/library/"
_UPSTREAM_DIGEST = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"


class Base(enum.Enum):
    BUSYBOX = "busybox"
    NGINX = "nginx"
    HTTPD = "httpd"
    PAUSE = "pause"
    NONEWPRIVS = "nonewprivs"


@dataclass(frozen=True)
class Recipe:
    """What to put on top of a base image. Equal recipes build byte-identical images."""

    base: Base
    user: str = ""
    # A file "/<marker>" holding its own name, like upstream image-test's `ADD ${TEST} ${TEST}`;
    # it is what makes otherwise identical busybox images distinct.
    marker: str = ""
    port: int = 80  # nginx only
    stop_signal: str = ""
    extra_users: tuple[User, ...] = ()
    extra_groups: tuple[Group, ...] = ()


@dataclass(frozen=True)
class CatalogEntry:
    """An upstream reference; `recipe` is None when it cannot be built (see `unbuildable`)."""

    ref: str
    recipe: Recipe | None
    unbuildable: str = ""

    @property
    def host(self) -> str:
        return split_reference(self.ref)[0]

    @property
    def repository(self) -> str:
        """Path in the local registry: the upstream path without its host."""
        return split_reference(self.ref)[1]

    @property
    def tag(self) -> str:
        return split_reference(self.ref)[2]


def split_reference(ref: str) -> tuple[str, str, str]:
    """host, path, tag-or-digest of a fully qualified reference; the tag defaults to latest."""
    host, _, rest = ref.partition("/")
    if not rest or ("." not in host and ":" not in host):
        raise ValueError(f"reference needs an explicit registry host: {ref!r}")
    if "@" in rest:
        path, _, digest = rest.partition("@")
        return host, path, digest
    path, _, tag = rest.rpartition(":")
    if not path or "/" in tag:
        return host, rest, "latest"
    return host, path, tag


def local_repository(ref: str) -> str:
    return split_reference(ref)[1]


_BUSYBOX = Recipe(Base.BUSYBOX)

# image-predefined-group: `adduser -u 1000 -D default-user`, group 50000 with it as a member.
_PREDEFINED_GROUP = Recipe(
    Base.BUSYBOX,
    user="1000",
    extra_users=(User("default-user", 1000, 1000, "/home/default-user", "/bin/sh", "Linux User"),),
    extra_groups=(
        Group("default-user", 1000),
        Group("group-defined-in-image", 50000, ("default-user",)),
    ),
)


def catalog() -> list[CatalogEntry]:
    """Every image the conformance run pulls, in a stable order."""
    entries = [
        # framework.DefaultLinuxContainerImage: the image nearly every test runs.
        CatalogEntry(_E2E + "busybox:1.29-2", _BUSYBOX),
        CatalogEntry(_E2E + "nginx:1.14-2", Recipe(Base.NGINX, port=80)),
        CatalogEntry(_E2E + "httpd:2.4.39-4", Recipe(Base.HTTPD)),
        CatalogEntry(_E2E + "nonewprivs:1.3", Recipe(Base.NONEWPRIVS)),
        # testSameImageDifferentRegistries: must be one image id.
        CatalogEntry("registry.k8s.io/pause:3.9", Recipe(Base.PAUSE)),
        CatalogEntry("k8s.gcr.io/pause:3.9", Recipe(Base.PAUSE)),
        # hostnet-nginx: upstream is nginx:1.25.0 (STOPSIGNAL SIGQUIT) listening on 12003.
        CatalogEntry(
            _CRI_TOOLS + "hostnet-nginx-amd64",
            Recipe(Base.NGINX, port=12003, stop_signal="SIGQUIT"),
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-latest", Recipe(Base.BUSYBOX, marker="test-image-latest")
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-tag:test", Recipe(Base.BUSYBOX, marker="test-image-tag-test")
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-tag:all", Recipe(Base.BUSYBOX, marker="test-image-tag-all")
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-digest@" + _UPSTREAM_DIGEST,
            None,
            unbuildable="pulled by upstream's manifest digest, which no local build can reproduce",
        ),
        *(
            CatalogEntry(
                _CRI_TOOLS + f"test-image-{n}:latest",
                Recipe(Base.BUSYBOX, marker=f"test-image-{n}"),
            )
            for n in (1, 2, 3)
        ),
        *(
            CatalogEntry(
                _CRI_TOOLS + f"test-image-tags:{n}", Recipe(Base.BUSYBOX, marker="test-image-tags")
            )
            for n in (1, 2, 3)
        ),
        CatalogEntry(_CRI_TOOLS + "test-image-user-uid", Recipe(Base.BUSYBOX, user="1002")),
        CatalogEntry(
            _CRI_TOOLS + "test-image-user-username", Recipe(Base.BUSYBOX, user="www-data")
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-user-uid-group", Recipe(Base.BUSYBOX, user="1003:1004")
        ),
        CatalogEntry(
            _CRI_TOOLS + "test-image-user-username-group",
            Recipe(Base.BUSYBOX, user="www-data:1004"),
        ),
        CatalogEntry(_CRI_TOOLS + "test-image-predefined-group", _PREDEFINED_GROUP),
        # pkg/benchmark/image.go: image listing benchmark, five different images.
        *(
            CatalogEntry(
                _ECR_LIBRARY + f"busybox:{tag}", Recipe(Base.BUSYBOX, marker=f"busybox-{tag}")
            )
            for tag in ("1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl")
        ),
    ]
    return entries
