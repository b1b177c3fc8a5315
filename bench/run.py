"""``make bench``: every benchmark, side by side with its reference, one line per figure:
``BENCH <name> stowage=<value> reference=<value> ratio=<stowage/reference>`` (a cost: lower is
better)."""

from __future__ import annotations

import sys

from bench.cni import bench_cni
from bench.csi import bench_csi
from bench.pods import bench_pods
from bench.pull import bench_pull

__all__ = ["main", "report"]


def report(name: str, ours: float, theirs: float | None) -> None:
    if theirs is None:
        # The reference could not be installed from the registries: say so, never invent it.
        print(f"BENCH {name} stowage={ours:.3f} reference=unavailable ratio=n/a", flush=True)
        return
    print(
        f"BENCH {name} stowage={ours:.3f} reference={theirs:.3f} ratio={ours / theirs:.3f}",
        flush=True,
    )


def main() -> int:
    ours, theirs = bench_pull()
    report("pull-100mb", ours, theirs)
    for name, a, b in bench_pods():
        report(name, a, b)
    for name, mine, ref in bench_cni():
        report(name, mine, ref)
    for name, ours_csi, ref_csi in bench_csi():
        report(name, ours_csi, ref_csi)
    return 0


if __name__ == "__main__":
    sys.exit(main())
