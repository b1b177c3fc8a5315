from __future__ import annotations

import pytest

from cri_shim.convert import image_to_cri, image_user
from images.metadata import ImageRecord


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (None, "")),
        ("1002", (1002, "")),
        ("www-data", (None, "www-data")),
        ("1003:1004", (1003, "")),
        ("www-data:1004", (None, "www-data")),
        ("0", (0, "")),
    ],
)
def test_image_user(user: str, expected: tuple[int | None, str]) -> None:
    assert image_user({"config": {"User": user}}) == expected


def test_image_user_without_config() -> None:
    assert image_user({}) == (None, "")


def _rec(user: str) -> ImageRecord:
    return ImageRecord(
        id="sha256:" + "a" * 64,
        manifest_digest="sha256:" + "b" * 64,
        size=10,
        chain_id=None,
        blobs=(),
        config={"config": {"User": user}},
        pinned=False,
        created_ns=1,
        repo_tags=("docker.io/library/x:1",),
        repo_digests=("docker.io/library/x@sha256:" + "b" * 64,),
    )


def test_image_to_cri_sets_uid_only_when_numeric() -> None:
    img = image_to_cri(_rec("1002"))
    assert img.HasField("uid")
    assert img.uid.value == 1002
    assert img.username == ""
    img = image_to_cri(_rec("www-data"))
    assert not img.HasField("uid")
    assert img.username == "www-data"
    assert list(img.repo_tags) == ["docker.io/library/x:1"]
    assert img.spec.image == img.id


def test_full_disk_is_resource_exhausted_even_when_wrapped() -> None:
    import errno

    import grpc

    from cri_shim.errors import status_for
    from images.errors import LayerError

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise LayerError("unpacking layer failed") from exc
    except LayerError as wrapped:
        code, message = status_for(wrapped)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no space left" in message
