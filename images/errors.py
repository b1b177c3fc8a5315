"""The exception tree of the image library.

Every failure the library raises is an ``ImageError``; the CRI edge maps each class to one gRPC
status code (see ``cri_shim/errors.py``), so callers never classify messages themselves.
"""

from __future__ import annotations

__all__ = [
    "BlobMismatchError",
    "ImageError",
    "ImageInUseError",
    "ImageNotFoundError",
    "InvalidReferenceError",
    "LayerError",
    "ManifestError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "UnsafeLayerError",
]


class ImageError(Exception):
    """Base of every error the image library raises."""


class InvalidReferenceError(ImageError, ValueError):
    """An image reference that does not parse (maps to INVALID_ARGUMENT)."""


class ImageNotFoundError(ImageError, LookupError):
    """No image, manifest or blob by that name (maps to NOT_FOUND)."""


class ImageInUseError(ImageError):
    """The image is used by a container and cannot be removed (maps to FAILED_PRECONDITION)."""


class ManifestError(ImageError):
    """A manifest, index or config that is malformed or has no entry for this platform."""


class RegistryError(ImageError):
    """The registry answered with an error the client cannot recover from."""


class RegistryUnavailableError(RegistryError):
    """No host (mirror or upstream) could be reached (maps to UNAVAILABLE)."""


class RegistryAuthError(RegistryError):
    """Credentials were refused or a token could not be obtained (maps to PERMISSION_DENIED)."""


class BlobMismatchError(ImageError):
    """Content whose digest or size differs from what its descriptor promised."""


class LayerError(ImageError):
    """A layer that cannot be unpacked (corrupt archive, unknown compression)."""


class UnsafeLayerError(LayerError):
    """A layer entry that would write outside its target; nothing of the layer is kept."""
