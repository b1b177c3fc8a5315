"""csi-sanity (every spec) against a fresh stowage-csi, for mount and for block volumes."""

from __future__ import annotations

import os

import pytest

from tests.e2e import csi_sanity_run

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.root,
    pytest.mark.daemon,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, loop devices)"),
    pytest.mark.skipif(
        not os.path.exists(csi_sanity_run.CSI_SANITY), reason="csi-sanity is not built (make setup)"
    ),
]


@pytest.mark.parametrize("access_type", ["mount", "block"])
def test_csi_sanity(access_type: str) -> None:
    assert csi_sanity_run.main(["--access-type", access_type]) == 0
