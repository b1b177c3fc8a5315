"""Stowage's CSI host-path driver (``stowage-csi``): volumes as directories or loop-backed
files under one root, published into pods by bind mount. Imports no sibling package."""

from csi_hostpath.config import DriverConfig
from csi_hostpath.driver import Driver, open_driver
from csi_hostpath.errors import CsiError

__all__ = ["CsiError", "Driver", "DriverConfig", "open_driver"]
