from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .harness import Lab, lab


@pytest.fixture
def cni_lab() -> Iterator[Lab]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs root, iproute2 and nftables")
    with lab() as the_lab:
        yield the_lab
