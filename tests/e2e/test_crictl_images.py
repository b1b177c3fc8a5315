"""crictl against stowage-cri, end to end: pull, images, inspecti, rmi, imagefsinfo, and an
archive import, with a real registry on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TOP, Registry, StowageDaemon, registry, stowage_daemon
from tests.images.oci_layout import ImageConfig, ImageSpec, Layer, file_entry
from tests.images.push import push_layout

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]

CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")


def _spec(text: str, user: str = "") -> ImageSpec:
    layers = (
        Layer.from_entries([file_entry("etc/hello", text), file_entry("bin/tool", b"x", 0o755)]),
        Layer.from_entries([file_entry("etc/second", text * 2)]),
    )
    return ImageSpec(layers=layers, config=ImageConfig(user=user, cmd=("/bin/tool",)))


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from tests.images.oci_layout import build_layout

    work = tmp_path_factory.mktemp("layouts")
    with registry() as r:
        build_layout(_spec("one", "1002"), work / "one", tags=("1",))
        push_layout(work / "one", r.url, "e2e/one")
        build_layout(_spec("two", "www-data:33"), work / "two", tags=("latest",))
        push_layout(work / "two", r.url, "library/two")
        yield r


@pytest.fixture
def daemon(reg: Registry) -> Iterator[StowageDaemon]:
    with stowage_daemon(reg.url) as d:
        yield d


def crictl(d: StowageDaemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [CRICTL, "--image-endpoint", d.endpoint, "--runtime-endpoint", d.endpoint, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"crictl {args} failed: {res.stderr}")
    return res


def test_socket_is_root_only(daemon: StowageDaemon) -> None:
    mode = os.stat(daemon.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_pull_images_inspect_rmi(daemon: StowageDaemon) -> None:
    out = crictl(daemon, "pull", "registry.k8s.io/e2e/one:1").stdout
    assert "Image is up to date for sha256:" in out
    image_id = out.strip().rsplit(" ", 1)[-1]

    listed = json.loads(crictl(daemon, "images", "-o", "json").stdout)["images"]
    assert [i["id"] for i in listed] == [image_id]
    assert listed[0]["repoTags"] == ["registry.k8s.io/e2e/one:1"]
    assert listed[0]["repoDigests"][0].startswith("registry.k8s.io/e2e/one@sha256:")
    assert listed[0]["uid"]["value"] == "1002"

    info = json.loads(crictl(daemon, "inspecti", "-o", "json", "registry.k8s.io/e2e/one:1").stdout)
    assert info["status"]["id"] == image_id
    assert info["info"]["imageSpec"]["config"]["User"] == "1002"
    assert int(info["status"]["size"]) > 0

    # docker.io names normalise to library/ and keep the username from "name:group"
    crictl(daemon, "pull", "two")
    two = json.loads(crictl(daemon, "inspecti", "-o", "json", "docker.io/library/two").stdout)
    assert two["status"]["username"] == "www-data"

    fs = json.loads(crictl(daemon, "imagefsinfo", "-o", "json").stdout)
    used = int(fs["status"]["imageFilesystems"][0]["usedBytes"]["value"])
    assert used > 0

    crictl(daemon, "rmi", image_id)
    crictl(daemon, "rmi", "docker.io/library/two:latest")
    assert json.loads(crictl(daemon, "images", "-o", "json").stdout)["images"] == []
    fs = json.loads(crictl(daemon, "imagefsinfo", "-o", "json").stdout)
    assert int(fs["status"]["imageFilesystems"][0]["usedBytes"]["value"]) < used


def test_errors_are_clear(daemon: StowageDaemon) -> None:
    res = crictl(daemon, "pull", "Invalid:Reference:x", check=False)
    assert res.returncode != 0
    assert "InvalidArgument" in res.stderr
    res = crictl(daemon, "pull", "registry.k8s.io/e2e/missing:1", check=False)
    assert res.returncode != 0
    assert "NotFound" in res.stderr
    res = crictl(daemon, "inspecti", "registry.k8s.io/e2e/missing:1", check=False)
    assert res.returncode != 0
    assert "no such image" in res.stderr.lower() or "not found" in res.stderr.lower()


def test_unreachable_registry_is_unavailable(tmp_path: Path) -> None:
    with stowage_daemon() as d:
        res = crictl(d, "pull", "127.0.0.1:9/nothing/here:1", check=False)
        assert res.returncode != 0
        assert "Unavailable" in res.stderr
        assert "127.0.0.1:9" in res.stderr


def test_import_oci_archive_without_registry(tmp_path: Path) -> None:
    from tests.images.oci_layout import build_layout

    layout = tmp_path / "layout"
    build_layout(_spec("imported"), layout, tags=("v1",))
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, arcname=entry.name)
    with stowage_daemon() as d:
        res = subprocess.run(
            [
                os.path.join(TOP, ".venv", "bin", "stowage"),
                "--root",
                d.root,
                "images",
                "import",
                "--base-name",
                "docker.io/library/imported",
                str(archive),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        listed = json.loads(crictl(d, "images", "-o", "json").stdout)["images"]
        assert listed[0]["repoTags"] == ["docker.io/library/imported:v1"]


def test_import_docker_archive(tmp_path: Path) -> None:
    """What `docker save` writes: manifest.json, a config file and uncompressed layer tars."""
    import hashlib
    import io

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        data = b"from a docker archive\n"
        info = tarfile.TarInfo("etc/docker-archive")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "1234", "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = [
        {"Config": "config.json", "RepoTags": ["dock:1", "dock:2"], "Layers": ["abc/layer.tar"]}
    ]
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tar:
        for name, body in (
            ("manifest.json", json.dumps(manifest).encode()),
            ("config.json", config),
            ("abc/layer.tar", layer_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with stowage_daemon() as d:
        res = subprocess.run(
            [os.path.join(TOP, ".venv", "bin", "stowage"), "--root", d.root, "images", "import",
             str(archive)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        listed = json.loads(crictl(d, "images", "-o", "json").stdout)["images"]
        assert len(listed) == 1
        assert sorted(listed[0]["repoTags"]) == [
            "docker.io/library/dock:1",
            "docker.io/library/dock:2",
        ]
        assert listed[0]["uid"]["value"] == "1234"
        res = subprocess.run(
            [os.path.join(TOP, ".venv", "bin", "stowage"), "--root", d.root, "images", "import",
             str(tmp_path / "missing.tar")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert res.returncode == 1
        assert "cannot read image archive" in res.stderr
        assert "Traceback" not in res.stderr
