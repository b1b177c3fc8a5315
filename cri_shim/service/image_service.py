"""CRI ImageService: each handler converts the request, makes one call into the image store and
converts the answer back. Errors are raised, and mapped to status codes by the interceptor."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc

from cri_shim._pb import api_pb2 as pb
from cri_shim._pb import api_pb2_grpc as pb_grpc
from cri_shim.convert import image_to_cri, verbose_info
from cri_shim.errors import CriError
from images.auth import credentials_from_auth_config
from images.store import ImageStore

__all__ = ["ImageService"]


def _image_name(spec: pb.ImageSpec) -> str:
    if not spec.image:
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "image spec has no image name")
    return str(spec.image)


class ImageService(pb_grpc.ImageServiceServicer):  # type: ignore[misc]
    def __init__(self, store: ImageStore) -> None:
        self._store = store

    def _list(self, request_filter: pb.ImageFilter) -> list[pb.Image]:
        name = request_filter.image.image if request_filter.HasField("image") else ""
        return [image_to_cri(r) for r in self._store.list(name or None)]

    def ListImages(self, request: pb.ListImagesRequest, context: object) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(images=self._list(request.filter))

    def StreamImages(
        self, request: pb.StreamImagesRequest, context: object
    ) -> Iterator[pb.StreamImagesResponse]:
        images = self._list(request.filter)
        for start in range(0, max(len(images), 1), 100):
            yield pb.StreamImagesResponse(images=images[start : start + 100])

    def ImageStatus(
        self, request: pb.ImageStatusRequest, context: object
    ) -> pb.ImageStatusResponse:
        rec = self._store.status(_image_name(request.image))
        if rec is None:
            # The CRI asks for an empty answer, not NOT_FOUND, for an image that is not there.
            return pb.ImageStatusResponse()
        info = verbose_info(rec) if request.verbose else {}
        return pb.ImageStatusResponse(image=image_to_cri(rec), info=info)

    def PullImage(self, request: pb.PullImageRequest, context: object) -> pb.PullImageResponse:
        auth = request.auth if request.HasField("auth") else None
        creds = None
        if auth is not None:
            creds = credentials_from_auth_config(
                username=auth.username,
                password=auth.password,
                auth=auth.auth,
                identity_token=auth.identity_token,
                registry_token=auth.registry_token,
            )
        rec = self._store.pull(_image_name(request.image), creds)
        return pb.PullImageResponse(image_ref=rec.id)

    def RemoveImage(
        self, request: pb.RemoveImageRequest, context: object
    ) -> pb.RemoveImageResponse:
        self._store.remove(_image_name(request.image))
        return pb.RemoveImageResponse()

    def ImageFsInfo(
        self, request: pb.ImageFsInfoRequest, context: object
    ) -> pb.ImageFsInfoResponse:
        usage = self._store.fs_usage()
        now = time.time_ns()
        image_fs = pb.FilesystemUsage(
            timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=usage.image_mountpoint)
        )
        image_fs.used_bytes.value = usage.image_bytes
        image_fs.inodes_used.value = usage.image_inodes
        container_fs = pb.FilesystemUsage(
            timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=usage.container_mountpoint)
        )
        container_fs.used_bytes.value = usage.container_bytes
        container_fs.inodes_used.value = usage.container_inodes
        return pb.ImageFsInfoResponse(
            image_filesystems=[image_fs], container_filesystems=[container_fs]
        )
