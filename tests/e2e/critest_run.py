"""``make conformance-cri``: critest against a freshly started stowage-cri.

Builds the test images (cached), serves them from a local docker-registry under their upstream
paths, points stowage's mirror config at it, starts stowage-cri on a private socket and runs
the critest binary. critest's own summary is printed; the exit status is critest's.

Specs run: all of them, but those skipped by name in ``SKIPS``, each with its reason; critest
itself skips what the host lacks (AppArmor) or what we do not advertise (user namespaces).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tests.harness import TOP, cni_network, registry, stowage_daemon
from tests.images.publish import publish_catalog

__all__ = ["main"]

# Every spec runs, but for these, each skipped by name with its reason (printed with the run).
SKIPS = {
    "public image with digest should be pulled and removed": (
        "pulls an upstream image by its exact digest: no content with that digest can be built "
        "offline, for any runtime"
    ),
}
FOCUS = ""
SKIP = "|".join(SKIPS)


def run(focus: str, skip: str, extra: list[str]) -> int:
    critest = os.path.join(TOP, ".tools", "bin", "critest")
    with registry() as reg, cni_network() as net:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url, net) as daemon:
            cmd = [
                critest,
                f"--runtime-endpoint={daemon.endpoint}",
                f"--image-endpoint={daemon.endpoint}",
                f"--ginkgo.focus={focus}",
                f"--ginkgo.skip={skip}",
                "--ginkgo.no-color",
                *extra,
            ]
            for spec, reason in SKIPS.items():
                if spec in skip:
                    print(f"critest: skipping '{spec}': {reason}", flush=True)
            print("+", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, check=False).returncode
            if rc != 0:
                with open(daemon.log_path) as f:
                    print("---- stowage-cri log (tail) ----\n" + f.read()[-6000:], flush=True)
            return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--focus", default=FOCUS)
    parser.add_argument("--skip", default=SKIP)
    args, extra = parser.parse_known_args(argv)
    return run(args.focus, args.skip, extra)


if __name__ == "__main__":
    sys.exit(main())
