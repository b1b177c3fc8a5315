"""Pulls that go wrong: a corrupt or truncated blob in the registry, a full disk, a daemon
killed in the middle of a pull, two pulls of one image at once. After each, nothing
half-written is visible and the next pull succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TOP, Registry, StowageDaemon, registry, stowage_daemon, wait_for
from tests.images.oci_layout import (
    ImageConfig,
    ImageSpec,
    Layer,
    blob_path,
    build_layout,
    file_entry,
    read_layout,
)
from tests.images.push import push_layout

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]

CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")
SMALL = "registry.k8s.io/faults/small:1"
BIG = "registry.k8s.io/faults/big:1"


def _big_spec() -> ImageSpec:
    # ~48 MB of incompressible data in 4 layers: slow enough to interrupt, quick to build.
    layers = tuple(
        Layer.from_entries([file_entry(f"data/{i}", os.urandom(12 << 20))]) for i in range(4)
    )
    return ImageSpec(layers=layers, config=ImageConfig(cmd=("/data/0",)))


def _small_spec() -> ImageSpec:
    layers = (Layer.from_entries([file_entry("etc/small", "small image\n")]),)
    return ImageSpec(layers=layers, config=ImageConfig(cmd=("/bin/true",)))


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    work = tmp_path_factory.mktemp("fault-layouts")
    with registry() as r:
        build_layout(_small_spec(), work / "small", tags=("1",))
        push_layout(work / "small", r.url, "faults/small")
        build_layout(_big_spec(), work / "big", tags=("1",))
        push_layout(work / "big", r.url, "faults/big")
        yield r, work


def crictl(d: StowageDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRICTL, "--image-endpoint", d.endpoint, "--runtime-endpoint", d.endpoint, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _images(d: StowageDaemon) -> list[dict[str, object]]:
    res = crictl(d, "images", "-o", "json")
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout)["images"])


def _nothing_half_written(d: StowageDaemon) -> None:
    images = Path(d.root) / "images"
    ingest = [p.name for p in (images / "content" / "ingest").iterdir() if p.suffix != ".lock"]
    assert ingest == []
    assert list((images / "snapshots" / "tmp").iterdir()) == []


def _registry_blob(r: Registry, digest: str) -> Path:
    hexpart = digest.split(":", 1)[1]
    return Path(r.storage) / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def _first_layer(layout: Path) -> str:
    ref = read_layout(layout)[0]
    manifest = json.loads(blob_path(layout, ref.digest).read_text())
    return str(manifest["layers"][0]["digest"])


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_bad_blob_is_refused_and_leaves_nothing(reg: tuple[Registry, Path], damage: str) -> None:
    r, work = reg
    blob = _registry_blob(r, _first_layer(work / "small"))
    original = blob.read_bytes()
    try:
        if damage == "corrupt":
            blob.write_bytes(bytes(b ^ 0xFF for b in original))
        else:
            blob.write_bytes(original[: len(original) // 2])
        with stowage_daemon(r.url) as d:
            res = crictl(d, "pull", SMALL)
            assert res.returncode != 0
            assert "DataLoss" in res.stderr or "Unavailable" in res.stderr
            assert _images(d) == []
            _nothing_half_written(d)
            blob.write_bytes(original)
            res = crictl(d, "pull", SMALL)
            assert res.returncode == 0, res.stderr
            assert len(_images(d)) == 1
    finally:
        blob.write_bytes(original)


def test_full_disk_fails_cleanly(reg: tuple[Registry, Path]) -> None:
    r, _ = reg
    with stowage_daemon(r.url, root_size="40m") as d:
        res = crictl(d, "pull", BIG)
        assert res.returncode != 0
        assert "ResourceExhausted" in res.stderr
        assert "no space left" in res.stderr
        assert _images(d) == []
        _nothing_half_written(d)
        res = crictl(d, "pull", SMALL)  # the store still works once the big pull is gone
        assert res.returncode == 0, res.stderr


def test_kill_during_pull_then_pull_again(reg: tuple[Registry, Path]) -> None:
    r, _ = reg
    with stowage_daemon(r.url) as d:
        puller = subprocess.Popen(
            [CRICTL, "--image-endpoint", d.endpoint, "pull", BIG],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ingest = Path(d.root) / "images" / "content" / "ingest"
        wait_for(lambda: any(p.suffix != ".lock" for p in ingest.iterdir()), 30, "a pull")
        d.kill()
        puller.wait(30)
        d.start()
        assert _images(d) == []
        _nothing_half_written(d)  # the restart swept what the pull left
        res = crictl(d, "pull", BIG)
        assert res.returncode == 0, res.stderr
        assert len(_images(d)) == 1


def test_concurrent_pulls_share_the_work(reg: tuple[Registry, Path]) -> None:
    r, _ = reg
    with stowage_daemon(r.url) as d:
        results: list[subprocess.CompletedProcess[str]] = []
        threads = [
            threading.Thread(target=lambda: results.append(crictl(d, "pull", BIG)))
            for _ in range(3)
        ]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - start < 120
        assert [res.returncode for res in results] == [0, 0, 0], [x.stderr for x in results]
        ids = {res.stdout.strip().rsplit(" ", 1)[-1] for res in results}
        assert len(ids) == 1
        assert len(_images(d)) == 1
        blobs = list((Path(d.root) / "images" / "content" / "blobs" / "sha256").iterdir())
        assert len(blobs) == 6  # manifest, config and four layers, each stored once
        _nothing_half_written(d)
