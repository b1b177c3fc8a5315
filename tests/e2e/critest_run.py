"""``make conformance-cri``: critest against a freshly started stowage-cri.

Builds the test images (cached), serves them from a local docker-registry under their upstream
paths, points stowage's mirror config at it, starts stowage-cri on a private socket and runs
the critest binary. critest's own summary is printed; the exit status is critest's.

Specs run: every spec of the groups stowage serves today (the image service). One spec is
skipped by name because no runtime can pass it here: it pulls an upstream image by its exact
digest, and content with that digest cannot be built offline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tests.harness import TOP, registry, stowage_daemon
from tests.images.publish import publish_catalog

__all__ = ["main"]

# Groups whose specs need only the image service; widened as the runtime service lands.
FOCUS = r"\[k8s.io\] (Image Manager|Image Consistency)"
# Cannot pass offline, for any runtime: the upstream digest cannot be reproduced.
SKIP = r"public image with digest should be pulled and removed"


def run(focus: str, skip: str, extra: list[str]) -> int:
    critest = os.path.join(TOP, ".tools", "bin", "critest")
    with registry() as reg:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url) as daemon:
            cmd = [
                critest,
                f"--runtime-endpoint={daemon.endpoint}",
                f"--image-endpoint={daemon.endpoint}",
                f"--ginkgo.focus={focus}",
                f"--ginkgo.skip={skip}",
                "--ginkgo.no-color",
                *extra,
            ]
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
