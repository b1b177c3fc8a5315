"""``pull-100mb``: pull and unpack a ~100 MB multi-layer image from a local registry, stowage-cri
against Debian's containerd 1.6, both driven by ``crictl pull`` in the same run.

Each round removes the image first (containerd's CRI removal collects content and snapshots
synchronously; stowage's too), so every pull downloads and unpacks all layers. The figure is
the median wall time of ``crictl pull`` over the rounds.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.containerd import containerd
from images.hosts import write_mirror_config
from tests.harness import TOP, registry, stowage_daemon, wait_for
from tests.images.oci_layout import ImageConfig, ImageSpec, Layer, file_entry
from tests.images.push import push_layout

__all__ = ["bench_pull"]

CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")
REPO = "bench/pull-100mb"


def _layers(total_mb: int = 100, n_layers: int = 5) -> tuple[Layer, ...]:
    """Layers of many files, half random (incompressible) and half text-like, as real images are."""
    rng = random.Random(42)  # noqa: S311 - reproducible test data, not secrets
    per_layer = total_mb * (1 << 20) // n_layers
    words = [bytes(rng.choice(b"abcdefghij klmnop\n") for _ in range(64)) for _ in range(512)]
    layers = []
    for i in range(n_layers):
        entries = []
        size = 0
        j = 0
        while size < per_layer:
            n = rng.choice((4096, 65536, 1 << 20))
            if j % 2:
                data = rng.randbytes(n)
            else:
                data = b"".join(rng.choice(words) for _ in range(n // 64))
            entries.append(file_entry(f"layer{i}/dir{j % 16}/file{j}", data))
            size += len(data)
            j += 1
        layers.append(Layer.from_entries(entries, created_by=f"bench layer {i}"))
    return tuple(layers)


def _build_image(out: Path) -> None:
    from tests.images.oci_layout import build_layout

    spec = ImageSpec(layers=_layers(), config=ImageConfig(cmd=("/bin/sh",)))
    build_layout(spec, out, tags=("1",))


def _crictl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CRICTL,
            "--image-endpoint",
            endpoint,
            "--runtime-endpoint",
            endpoint,
            "--timeout",
            "300s",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _time_pulls(endpoint: str, image: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        _crictl(endpoint, "rmi", image)
        subprocess.run(["sync"], check=False)
        start = time.monotonic()
        res = _crictl(endpoint, "pull", image)
        elapsed = time.monotonic() - start
        if res.returncode != 0:
            raise RuntimeError(f"crictl pull {image} on {endpoint} failed: {res.stderr}")
        times.append(elapsed)
    _crictl(endpoint, "rmi", image)
    return statistics.median(times)


def bench_pull(rounds: int = 3) -> tuple[float, float]:
    """Median seconds of (stowage, containerd) for one pull of the image."""
    with tempfile.TemporaryDirectory(prefix="stowage-bench-") as tmp:
        layout = Path(tmp) / "layout"
        _build_image(layout)
        with registry() as reg:
            push_layout(layout, reg.url, REPO)
            image = f"{reg.host}/{REPO}:1"
            with stowage_daemon() as daemon:
                write_mirror_config(daemon.registry_config_dir, [reg.host], reg.url)
                ours = _time_pulls(daemon.endpoint, image, rounds)
            certs = os.path.join(tmp, "certs.d")
            write_mirror_config(certs, [reg.host], reg.url)
            with containerd(certs) as ref:
                wait_for(
                    lambda: _crictl(ref.endpoint, "images").returncode == 0, 30, "containerd CRI"
                )
                theirs = _time_pulls(ref.endpoint, image, rounds)
    return ours, theirs
