"""``make bench``: every benchmark, side by side with its reference, one line per figure:
``BENCH <name> stowage=<value> reference=<value> ratio=<stowage/reference>`` (a cost: lower is
better)."""

from __future__ import annotations

import sys

from bench.pull import bench_pull

__all__ = ["main"]


def report(name: str, ours: float, theirs: float) -> None:
    print(
        f"BENCH {name} stowage={ours:.3f} reference={theirs:.3f} ratio={ours / theirs:.3f}",
        flush=True,
    )


def main() -> int:
    ours, theirs = bench_pull()
    report("pull-100mb", ours, theirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
