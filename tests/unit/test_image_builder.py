"""The deterministic test-image builder (tests/images): layouts, catalog, rootfs, push.

Pure tests build small in-memory images. Tests marked by the `built` fixture build the whole
catalog (fast with a warm .cache/, needs `apt-get download` when cold). `root` tests run the
assembled trees in a chroot.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images import build as image_build
from tests.images.catalog import Base, Recipe, catalog, split_reference
from tests.images.oci_layout import (
    CONFIG_MEDIA_TYPE,
    FIXED_MTIME,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    ImageConfig,
    ImageSpec,
    Layer,
    blob_path,
    build_layout,
    dir_entry,
    file_entry,
    hardlink_entry,
    layer_tar,
    read_layout,
    symlink_entry,
)
from tests.images.push import push_layout
from tests.images.rootfs import (
    DEFAULT_CACHE,
    DebCache,
    RootfsError,
    build_busybox_rootfs,
    build_nginx_tree,
    nginx_conf,
)

_CRI_TOOLS_SRC = Path("/root/go/pkg/mod/sigs.k8s.io/cri-tools@v1.36.0/pkg")


def _small_spec(user: str = "") -> ImageSpec:
    layer = Layer.from_entries(
        [
            dir_entry("bin"),
            file_entry("bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
            hardlink_entry("bin/hi", "bin/hello"),
            symlink_entry("bin/sh", "hello"),
            dir_entry("tmp", 0o1777),
            dir_entry("home"),
            dir_entry("home/u", 0o700, uid=1000, gid=1000),
        ],
        "test layer",
    )
    return ImageSpec(
        (layer,),
        ImageConfig(
            user=user,
            env=("PATH=/bin",),
            entrypoint=("/bin/hello",),
            cmd=("x",),
            working_dir="/tmp",
            stop_signal="SIGQUIT",
            exposed_ports=("80/tcp",),
            labels={"a": "b"},
        ),
    )


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load(layout: Path, digest: str) -> Any:
    return json.loads(blob_path(layout, digest).read_bytes())


def _check_layout(layout: Path) -> None:
    """Every descriptor reachable from index.json names a blob with that digest and size."""
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    refs = read_layout(layout)
    assert refs
    for ref in refs:
        assert ref.tag
        assert ref.media_type == MANIFEST_MEDIA_TYPE
        manifest_bytes = blob_path(layout, ref.digest).read_bytes()
        assert _sha256(manifest_bytes) == ref.digest
        assert len(manifest_bytes) == ref.size
        manifest = json.loads(manifest_bytes)
        assert manifest["schemaVersion"] == 2
        assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
        descriptors = [manifest["config"], *manifest["layers"]]
        for desc in descriptors:
            data = blob_path(layout, desc["digest"]).read_bytes()
            assert _sha256(data) == desc["digest"]
            assert len(data) == desc["size"]
        config = _load(layout, manifest["config"]["digest"])
        assert config["architecture"] == "amd64"
        assert config["os"] == "linux"
        diff_ids = []
        for desc in manifest["layers"]:
            assert desc["mediaType"] == LAYER_MEDIA_TYPE
            raw = gzip.decompress(blob_path(layout, desc["digest"]).read_bytes())
            diff_ids.append(_sha256(raw))
        assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}


# --- oci_layout ------------------------------------------------------------------------------


def test_same_spec_gives_same_digests(tmp_path: Path) -> None:
    one = build_layout(_small_spec(), tmp_path / "one", tags=("v1",))
    time.sleep(1.1)  # a leaked timestamp would show up as a different digest
    two = build_layout(_small_spec(), tmp_path / "two", tags=("v1",))
    assert one == two
    assert read_layout(tmp_path / "one") == read_layout(tmp_path / "two")
    assert (tmp_path / "one" / "index.json").read_bytes() == (
        tmp_path / "two" / "index.json"
    ).read_bytes()


def test_layout_is_valid(tmp_path: Path) -> None:
    digest = build_layout(_small_spec(), tmp_path, tags=("a", "b"))
    _check_layout(tmp_path)
    refs = read_layout(tmp_path)
    assert [r.tag for r in refs] == ["a", "b"]
    assert refs[0].digest == refs[1].digest
    manifest = _load(tmp_path, refs[0].digest)
    assert manifest["config"]["digest"] == digest
    config = _load(tmp_path, digest)["config"]
    # Empty fields (User here) are left out.
    assert config == {
        "Env": ["PATH=/bin"],
        "Entrypoint": ["/bin/hello"],
        "Cmd": ["x"],
        "WorkingDir": "/tmp",
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}},
        "Labels": {"a": "b"},
    }
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {REF_NAME_ANNOTATION: "a"}


def test_layout_holds_several_images(tmp_path: Path) -> None:
    first = build_layout(_small_spec(), tmp_path, tags=("one", "two"))
    second = build_layout(_small_spec(user="1002"), tmp_path, tags=("two",))
    assert first != second
    by_tag = {r.tag: _load(tmp_path, r.digest)["config"]["digest"] for r in read_layout(tmp_path)}
    assert by_tag == {"one": first, "two": second}
    _check_layout(tmp_path)


def test_layer_tar_is_normalised(tmp_path: Path) -> None:
    blob = gzip.compress(b"")  # reference header layout
    assert blob[:3] == b"\x1f\x8b\x08"
    build_layout(_small_spec(), tmp_path)
    manifest = _load(tmp_path, read_layout(tmp_path)[0].digest)
    gz = blob_path(tmp_path, manifest["layers"][0]["digest"]).read_bytes()
    assert gz[3] == 0  # FLG: no file name, no comment
    assert gz[4:8] == b"\0\0\0\0"  # MTIME
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(gz))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    by_name = {m.name: m for m in members}
    assert all(m.mtime == FIXED_MTIME for m in members)
    assert by_name["tmp"].mode == 0o1777
    assert by_name["home/u"].uid == 1000
    assert by_name["bin/hello"].uid == 0
    assert by_name["bin/hello"].uname == ""
    assert by_name["bin/hi"].islnk()
    assert by_name["bin/hi"].linkname == "bin/hello"
    assert by_name["bin/sh"].issym()


def test_layer_from_dir_ignores_disk_owner_and_mtime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("x")
    os.link(root / "d" / "f", root / "d" / "g")
    (root / "s").symlink_to("d/f")
    os.utime(root / "d" / "f", (12345, 12345))
    first = layer_tar(Layer.from_dir(root))
    os.utime(root / "d" / "f", (99999, 99999))
    assert layer_tar(Layer.from_dir(root)) == first
    layer = Layer.from_dir(root, owners={"d/f": (7, 8)})
    kinds = {e.path: (e.kind.value, e.uid, e.target) for e in layer.entries}
    assert kinds == {
        "d": ("dir", 0, ""),
        "d/f": ("file", 7, ""),
        "d/g": ("hardlink", 0, "d/f"),
        "s": ("symlink", 0, "d/f"),
    }


def test_bad_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="precedes"):
        layer_tar(Layer.from_entries([hardlink_entry("a", "b"), file_entry("b", "x")]))
    with pytest.raises(ValueError, match="duplicate"):
        layer_tar(Layer.from_entries([file_entry("a", "x"), file_entry("a", "y")]))
    with pytest.raises(ValueError, match="relative"):
        file_entry("../etc/passwd", "x")


# --- catalog ---------------------------------------------------------------------------------

# From cri-tools v1.36.0 pkg/validate, pkg/framework and pkg/benchmark (Linux, amd64).
_CRITEST_IMAGES = {
    "registry.k8s.io/e2e-test-images/busybox:1.29-2",
    "registry.k8s.io/e2e-test-images/nginx:1.14-2",
    "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
    "registry.k8s.io/e2e-test-images/nonewprivs:1.3",
    "registry.k8s.io/pause:3.9",
    "k8s.gcr.io/pause:3.9",
    "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64",
    "gcr.io/k8s-staging-cri-tools/test-image-latest",
    "gcr.io/k8s-staging-cri-tools/test-image-tag:test",
    "gcr.io/k8s-staging-cri-tools/test-image-tag:all",
    "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:"
    "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf",
    "gcr.io/k8s-staging-cri-tools/test-image-1:latest",
    "gcr.io/k8s-staging-cri-tools/test-image-2:latest",
    "gcr.io/k8s-staging-cri-tools/test-image-3:latest",
    "gcr.io/k8s-staging-cri-tools/test-image-tags:1",
    "gcr.io/k8s-staging-cri-tools/test-image-tags:2",
    "gcr.io/k8s-staging-cri-tools/test-image-tags:3",
    "gcr.io/k8s-staging-cri-tools/test-image-user-uid",
    "gcr.io/k8s-staging-cri-tools/test-image-user-username",
    "gcr.io/k8s-staging-cri-tools/test-image-user-uid-group",
    "gcr.io/k8s-staging-cri-tools/test-image-user-username-group",
    "gcr.io/k8s-staging-cri-tools/test-image-predefined-group",
    "public.ecr.aws/docker/library/busybox:1.35.0-glibc",
    "public.ecr.aws/docker/library/busybox:1-uclibc",
    "public.ecr.aws/docker/library/busybox:1",
    "public.ecr.aws/docker/library/busybox:1-glibc",
    "public.ecr.aws/docker/library/busybox:1-musl",
}


def _normalise(ref: str) -> tuple[str, str, str]:
    return split_reference(ref)


def test_catalog_covers_critest() -> None:
    ours = {_normalise(e.ref) for e in catalog()}
    assert {_normalise(r) for r in _CRITEST_IMAGES} <= ours
    refs = [e.ref for e in catalog()]
    assert len(refs) == len(set(refs))


@pytest.mark.skipif(not _CRI_TOOLS_SRC.is_dir(), reason="cri-tools v1.36.0 source not present")
def test_catalog_covers_images_named_in_critest_source() -> None:
    prefixes = {
        "registry": "gcr.io/k8s-staging-cri-tools/",
        "DefaultRegistryE2ETestImagesPrefix": "registry.k8s.io/e2e-test-images/",
        "defaultImageListingPrefix": "public.ecr.aws/docker/library/",
    }
    pattern = re.compile(r"\b(" + "|".join(prefixes) + r')\s*\+\s*"([^"]+)"')
    found: set[str] = set()
    for path in [
        *_CRI_TOOLS_SRC.glob("validate/*.go"),
        *_CRI_TOOLS_SRC.glob("benchmark/*.go"),
        *_CRI_TOOLS_SRC.glob("framework/*.go"),
    ]:
        if path.name.endswith(("_test.go", "_windows.go")):
            continue
        for prefix, name in pattern.findall(path.read_text()):
            if name.startswith("win-"):
                continue
            if name.endswith("-"):  # "hostnet-nginx-" + runtime.GOARCH
                name += "amd64"
            found.add(prefixes[prefix] + name)
    found |= set(
        re.findall(
            r'"((?:registry\.k8s\.io|k8s\.gcr\.io)/pause:[^"]+)"',
            (_CRI_TOOLS_SRC / "validate" / "consts.go").read_text(),
        )
    )
    assert len(found) > 20
    ours = {_normalise(e.ref) for e in catalog()}
    missing = sorted(r for r in found if _normalise(r) not in ours)
    assert not missing


def test_catalog_recipes() -> None:
    by_ref = {e.ref: e for e in catalog()}
    users = {
        "test-image-user-uid": "1002",
        "test-image-user-username": "www-data",
        "test-image-user-uid-group": "1003:1004",
        "test-image-user-username-group": "www-data:1004",
        "test-image-predefined-group": "1000",
    }
    for name, user in users.items():
        recipe = by_ref[f"gcr.io/k8s-staging-cri-tools/{name}"].recipe
        assert recipe is not None
        assert recipe.user == user
    unbuildable = [e for e in catalog() if e.recipe is None]
    assert [e.repository for e in unbuildable] == ["k8s-staging-cri-tools/test-image-digest"]
    assert unbuildable[0].unbuildable
    pauses = {e.recipe for e in catalog() if e.repository == "pause"}
    assert pauses == {Recipe(Base.PAUSE)}
    assert {e.host for e in catalog()} == {
        "registry.k8s.io",
        "k8s.gcr.io",
        "gcr.io",
        "public.ecr.aws",
    }


def test_split_reference() -> None:
    assert split_reference("gcr.io/a/b") == ("gcr.io", "a/b", "latest")
    assert split_reference("gcr.io/a/b:1") == ("gcr.io", "a/b", "1")
    assert split_reference("h:5000/a@sha256:00") == ("h:5000", "a", "sha256:00")
    with pytest.raises(ValueError, match="host"):
        split_reference("busybox:1")


# --- the whole catalog -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[image_build.BuiltImage]:
    if shutil.which("apt-get") is None or shutil.which("gcc") is None:
        pytest.skip("needs apt-get and gcc")
    out = tmp_path_factory.mktemp("layouts")
    try:
        return image_build.build_images(out, DEFAULT_CACHE)
    except RootfsError as exc:
        pytest.skip(f"cannot assemble root filesystems here: {exc}")


def test_whole_catalog_builds_valid_layouts(built: list[image_build.BuiltImage]) -> None:
    for layout in {b.layout for b in built}:
        _check_layout(layout)
    buildable = [e for e in catalog() if e.recipe is not None]
    assert [b.ref for b in built] == [e.ref for e in buildable]


def test_image_identity_matches_critest_expectations(
    built: list[image_build.BuiltImage],
) -> None:
    ids = {b.ref: b.config_digest for b in built}
    cri = "gcr.io/k8s-staging-cri-tools/"
    assert len({ids[cri + f"test-image-{n}:latest"] for n in (1, 2, 3)}) == 3
    assert len({ids[cri + f"test-image-tags:{n}"] for n in (1, 2, 3)}) == 1
    assert ids["registry.k8s.io/pause:3.9"] == ids["k8s.gcr.io/pause:3.9"]
    ecr = [v for k, v in ids.items() if k.startswith("public.ecr.aws/")]
    assert len(set(ecr)) == 5
    assert ids[cri + "test-image-tag:test"] != ids[cri + "test-image-tag:all"]


def _config_of(image: image_build.BuiltImage) -> Any:
    return _load(image.layout, image.config_digest)["config"]


def test_image_configs(built: list[image_build.BuiltImage]) -> None:
    by_ref = {b.ref: b for b in built}
    cri = "gcr.io/k8s-staging-cri-tools/"
    assert _config_of(by_ref[cri + "test-image-user-uid"])["User"] == "1002"
    assert _config_of(by_ref[cri + "test-image-user-username-group"])["User"] == "www-data:1004"
    nginx = _config_of(by_ref["registry.k8s.io/e2e-test-images/nginx:1.14-2"])
    assert nginx["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert _config_of(by_ref["registry.k8s.io/pause:3.9"])["Entrypoint"] == ["/pause"]
    hostnet = _config_of(by_ref[cri + "hostnet-nginx-amd64"])
    assert hostnet["ExposedPorts"] == {"12003/tcp": {}}


def test_whole_build_is_reproducible(built: list[image_build.BuiltImage], tmp_path: Path) -> None:
    again = image_build.build_images(tmp_path, DEFAULT_CACHE)
    assert [(b.ref, b.config_digest) for b in again] == [(b.ref, b.config_digest) for b in built]
    for first, second in zip(built, again, strict=True):
        assert read_layout(first.layout) == read_layout(second.layout)


def _extract(image: image_build.BuiltImage, dest: Path) -> None:
    tag = split_reference(image.ref)[2]
    ref = next(r for r in read_layout(image.layout) if r.tag == tag)
    for desc in _load(image.layout, ref.digest)["layers"]:
        with tarfile.open(blob_path(image.layout, desc["digest"])) as tar:
            tar.extractall(dest, filter="fully_trusted")  # noqa: S202 - our own layers


def test_image_contents(built: list[image_build.BuiltImage], tmp_path: Path) -> None:
    by_ref = {b.ref: b for b in built}
    group = tmp_path / "group"
    _extract(by_ref["gcr.io/k8s-staging-cri-tools/test-image-predefined-group"], group)
    assert "group-defined-in-image:x:50000:default-user\n" in (group / "etc/group").read_text()
    assert "default-user:x:1000:1000:" in (group / "etc/passwd").read_text()
    assert (group / "bin/ls").stat().st_ino == (group / "bin/busybox").stat().st_ino
    nnp = tmp_path / "nnp"
    _extract(by_ref["registry.k8s.io/e2e-test-images/nonewprivs:1.3"], nnp)
    assert (nnp / "usr/local/bin/nnp").stat().st_mode & 0o4000
    passwd = (group / "etc/passwd").read_text()
    assert "nobody:x:65534:" in passwd
    assert "www-data:x:33:" in passwd


# --- push ------------------------------------------------------------------------------------


class _FakeRegistry:
    """Just enough of the distribution API for push_layout, kept in memory."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.uploads = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "HEAD" and "/blobs/" in path:
            return httpx.Response(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            return httpx.Response(202, headers={"Location": "u1?_state=abc"})
        if request.method == "PUT" and "/blobs/uploads/" in path:
            assert request.url.params["_state"] == "abc"
            digest = request.url.params["digest"]
            assert _sha256(request.content) == digest
            self.blobs[digest] = request.content
            self.uploads += 1
            return httpx.Response(201)
        if request.method == "PUT" and "/manifests/" in path:
            manifest = json.loads(request.content)
            for desc in [manifest["config"], *manifest["layers"]]:
                assert desc["digest"] in self.blobs
            self.manifests[path] = (request.headers["Content-Type"], request.content)
            return httpx.Response(201)
        return httpx.Response(405)


def test_push_layout(tmp_path: Path) -> None:
    build_layout(_small_spec(), tmp_path, tags=("a", "b"))
    fake = _FakeRegistry()
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        assert push_layout(tmp_path, "http://reg", "x/y", client=client) == ["a", "b"]
        uploads = fake.uploads
        assert uploads == 2  # one layer and the config, once
        assert push_layout(tmp_path, "http://reg", "x/y", {"b"}, client=client) == ["b"]
    assert fake.uploads == uploads
    assert set(fake.manifests) == {"/v2/x/y/manifests/a", "/v2/x/y/manifests/b"}
    media_type, body = fake.manifests["/v2/x/y/manifests/a"]
    assert media_type == MANIFEST_MEDIA_TYPE
    assert _sha256(body) == read_layout(tmp_path)[0].digest


# --- root: run the trees ---------------------------------------------------------------------

_needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootfs") / "busybox"
    try:
        build_busybox_rootfs(root, DebCache(DEFAULT_CACHE))
    except RootfsError as exc:
        pytest.skip(f"cannot assemble root filesystems here: {exc}")
    return root


@pytest.mark.root
@_needs_root
def test_busybox_rootfs_runs(busybox_root: Path) -> None:
    done = subprocess.run(
        [
            "chroot",
            str(busybox_root),
            "/bin/sh",
            "-c",
            "ls / && pgrep --version && ipcs -V && id -u www-data",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "bin" in done.stdout.split()
    assert "procps-ng" in done.stdout
    assert "util-linux" in done.stdout
    assert done.stdout.rstrip().endswith("\n33")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx_root(busybox_root: Path, tmp_path: Path) -> tuple[Path, int]:
    nginx_tree = tmp_path / "nginx-layer"
    build_nginx_tree(nginx_tree, DebCache(DEFAULT_CACHE), lower=busybox_root)
    root = tmp_path / "root"
    shutil.copytree(busybox_root, root, symlinks=True)
    shutil.copytree(nginx_tree, root, symlinks=True, dirs_exist_ok=True)
    port = _free_port()
    (root / "etc/nginx/nginx.conf").write_text(nginx_conf(port))
    return root, port


@pytest.mark.root
@_needs_root
def test_nginx_serves_in_chroot(nginx_root: tuple[Path, int]) -> None:
    root, port = nginx_root
    # The /dev and /proc mounts live only in the private mount namespace of the unshare'd
    # process, so they vanish with it and cleanup of `root` can never reach the host's /dev.
    script = (
        f'mount --bind /dev "{root}/dev" && mount -t proc proc "{root}/proc" && '
        f'exec chroot "{root}" nginx -g "daemon off;"'
    )
    with (root.parent / "nginx.log").open("wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        status = 0
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/"
                status = httpx.get(url, timeout=2, trust_env=False).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200
        pid = int((root / "var/run/nginx.pid").read_text())
        assert pid == proc.pid  # unshare, sh and chroot all exec: nginx is the master
        assert b"master process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
