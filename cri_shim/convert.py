"""Conversions between the image library's records and CRI messages (pure)."""

from __future__ import annotations

import json

from cri_shim._pb import api_pb2 as pb
from images.metadata import ImageRecord

__all__ = ["image_to_cri", "image_user", "verbose_info"]


def image_user(config: dict[str, object]) -> tuple[int | None, str]:
    """The uid or username the image runs as: ``User`` is "uid", "name", "uid:gid" or "name:gid"."""
    inner = config.get("config")
    user = inner.get("User", "") if isinstance(inner, dict) else ""
    if not isinstance(user, str) or not user:
        return None, ""
    name = user.split(":", 1)[0]
    if name.isdigit():
        return int(name), ""
    return None, name


def image_to_cri(rec: ImageRecord) -> pb.Image:
    uid, username = image_user(rec.config)
    image = pb.Image(
        id=rec.id,
        repo_tags=list(rec.repo_tags),
        repo_digests=list(rec.repo_digests),
        size=rec.size,
        username=username,
        spec=pb.ImageSpec(image=rec.id),
        pinned=rec.pinned,
    )
    if uid is not None:
        image.uid.value = uid
    return image


def verbose_info(rec: ImageRecord) -> dict[str, str]:
    return {
        "info": json.dumps(
            {
                "imageSpec": rec.config,
                "chainID": rec.chain_id,
                "manifestDigest": rec.manifest_digest,
            }
        )
    }
