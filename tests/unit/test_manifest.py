from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from images import manifest as mf
from images.errors import ManifestError
from images.manifest import Descriptor, Index, Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _manifest(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mf.MEDIA_TYPE_OCI_MANIFEST,
        "config": {"mediaType": mf.MEDIA_TYPE_OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [
            {"mediaType": mf.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": D2, "size": 20},
            {
                "mediaType": mf.MEDIA_TYPE_OCI_LAYER_ZSTD,
                "digest": D3,
                "size": 30,
                "annotations": {"a": "b"},
            },
        ],
    }
    doc.update(over)
    return doc


def _entry(digest: str, os: str, arch: str, variant: str | None = None) -> dict[str, Any]:
    plat = {"os": os, "architecture": arch}
    if variant is not None:
        plat["variant"] = variant
    return {"mediaType": mf.MEDIA_TYPE_OCI_MANIFEST, "digest": digest, "size": 1, "platform": plat}


def _index(*entries: dict[str, Any]) -> Index:
    doc = {"schemaVersion": 2, "mediaType": mf.MEDIA_TYPE_OCI_INDEX, "manifests": list(entries)}
    return mf.parse_index(_dumps(doc))


# -- manifests -----------------------------------------------------------------------------------


def test_parse_manifest() -> None:
    m = mf.parse_manifest(_dumps(_manifest()), mf.MEDIA_TYPE_OCI_MANIFEST)
    assert m.media_type == mf.MEDIA_TYPE_OCI_MANIFEST
    assert m.config == Descriptor(mf.MEDIA_TYPE_OCI_CONFIG, D1, 10)
    assert [layer.digest for layer in m.layers] == [D2, D3]
    assert m.layers[1].annotations == {"a": "b"}
    assert len({*m.layers, *m.layers}) == 2  # descriptors are hashable


def test_parse_docker_manifest_without_body_media_type() -> None:
    doc = _manifest()
    del doc["mediaType"]
    m = mf.parse_manifest(_dumps(doc), mf.MEDIA_TYPE_DOCKER_MANIFEST)
    assert m.media_type == mf.MEDIA_TYPE_DOCKER_MANIFEST
    assert mf.parse_manifest(_dumps(doc)).media_type == mf.MEDIA_TYPE_OCI_MANIFEST
    # a generic Content-Type is no hint
    assert mf.parse_manifest(_dumps(doc), "application/json").media_type == (
        mf.MEDIA_TYPE_OCI_MANIFEST
    )
    assert mf.parse_manifest(_dumps(_manifest()), "text/plain").media_type == (
        mf.MEDIA_TYPE_OCI_MANIFEST
    )


@pytest.mark.parametrize(
    ("body", "media_type", "message"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[1]", None, "JSON object"),
        (b"\xff", None, "not valid JSON"),
        (_dumps({"schemaVersion": 1, "fsLayers": []}), None, "schema 1"),
        (_dumps(_manifest()), mf.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED, "schema 1"),
        (_dumps(_manifest(schemaVersion=3)), None, "schemaVersion must be 2"),
        (_dumps(_manifest()), mf.MEDIA_TYPE_DOCKER_MANIFEST, "served as"),
        (_dumps(_manifest(mediaType=mf.MEDIA_TYPE_OCI_INDEX)), None, "expected an image manifest"),
        (_dumps(_manifest(mediaType=7)), None, "must be a string"),
        (_dumps(_manifest(config=None)), None, "'config' must be an object"),
        (_dumps(_manifest(layers={})), None, "'layers' must be a list"),
        (_dumps(_manifest(layers=[1])), None, "layer 0: expected an object"),
        (
            _dumps(_manifest(config={"mediaType": "x", "digest": "sha256:12", "size": 1})),
            None,
            "manifest config: invalid digest",
        ),
        (
            _dumps(_manifest(config={"mediaType": "x", "digest": D1, "size": -1})),
            None,
            "non-negative",
        ),
        (
            _dumps(_manifest(config={"mediaType": "x", "digest": D1, "size": True})),
            None,
            "non-negative",
        ),
        (
            _dumps(_manifest(config={"digest": D1, "size": 1})),
            None,
            "'mediaType' must be a string",
        ),
        (
            _dumps(
                _manifest(config={"mediaType": "x", "digest": D1, "size": 1, "annotations": []})
            ),
            None,
            "annotations",
        ),
    ],
)
def test_parse_manifest_rejects(body: bytes, media_type: str | None, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        mf.parse_manifest(body, media_type)


def test_parse_index() -> None:
    idx = _index(_entry(D1, "linux", "amd64"), _entry(D2, "linux", "arm64", "v8"))
    assert idx.media_type == mf.MEDIA_TYPE_OCI_INDEX
    assert idx.manifests[1].platform == Platform("linux", "arm64", "v8")
    docker = {"schemaVersion": 2, "manifests": [_entry(D1, "linux", "amd64")]}
    parsed = mf.parse_index(_dumps(docker), mf.MEDIA_TYPE_DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mf.MEDIA_TYPE_DOCKER_MANIFEST_LIST


def test_parse_index_rejects_manifest() -> None:
    with pytest.raises(ManifestError, match="expected an image index"):
        mf.parse_index(_dumps(_manifest()))
    with pytest.raises(ManifestError, match="'manifests' must be a list"):
        mf.parse_index(_dumps({"schemaVersion": 2}))
    bad_platform = _entry(D1, "linux", "amd64")
    bad_platform["platform"] = {"os": "linux"}
    with pytest.raises(ManifestError, match="architecture"):
        _index(bad_platform)


def test_media_type_predicates() -> None:
    assert mf.is_index(mf.MEDIA_TYPE_DOCKER_MANIFEST_LIST)
    assert mf.is_index(mf.MEDIA_TYPE_OCI_INDEX)
    assert not mf.is_index(mf.MEDIA_TYPE_OCI_MANIFEST)
    assert mf.is_manifest(mf.MEDIA_TYPE_DOCKER_MANIFEST)
    assert mf.layer_compression(mf.MEDIA_TYPE_DOCKER_LAYER_GZIP) is mf.Compression.GZIP
    assert mf.layer_compression(mf.MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD) is mf.Compression.ZSTD
    assert mf.layer_compression(mf.MEDIA_TYPE_OCI_LAYER) is mf.Compression.NONE
    assert mf.layer_compression(mf.MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP) is mf.Compression.GZIP
    assert mf.layer_compression(mf.MEDIA_TYPE_OCI_CONFIG) is None


# -- media type detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "header", "expected"),
    [
        (_manifest(), "application/json", mf.MEDIA_TYPE_OCI_MANIFEST),
        (
            _manifest(mediaType=mf.MEDIA_TYPE_DOCKER_MANIFEST),
            mf.MEDIA_TYPE_OCI_MANIFEST,
            mf.MEDIA_TYPE_DOCKER_MANIFEST,
        ),
        (
            {"schemaVersion": 2, "config": {}, "layers": []},
            mf.MEDIA_TYPE_DOCKER_MANIFEST + "; charset=utf-8",
            mf.MEDIA_TYPE_DOCKER_MANIFEST,
        ),
        ({"schemaVersion": 2, "config": {}, "layers": []}, None, mf.MEDIA_TYPE_OCI_MANIFEST),
        ({"schemaVersion": 2, "manifests": []}, "text/plain", mf.MEDIA_TYPE_OCI_INDEX),
        ({"schemaVersion": 1, "fsLayers": []}, None, mf.MEDIA_TYPE_DOCKER_SCHEMA1),
        (
            {"schemaVersion": 2},
            mf.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
            mf.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
        ),
    ],
)
def test_detect_media_type(doc: dict[str, Any], header: str | None, expected: str) -> None:
    assert mf.detect_media_type(_dumps(doc), header) == expected


def test_detect_media_type_unknown() -> None:
    with pytest.raises(ManifestError, match="cannot tell"):
        mf.detect_media_type(b'{"schemaVersion": 2}', "application/json")


# -- image config --------------------------------------------------------------------------------

CONFIG = {
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "User": "1000:1000",
        "Env": ["PATH=/bin", "A=b"],
        "Entrypoint": ["/entry"],
        "Cmd": ["run", "--x"],
        "WorkingDir": "/srv",
        "Labels": {"k": "v"},
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
    },
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "history": [{"created_by": "x"}],
}


def test_parse_image_config() -> None:
    c = mf.parse_image_config(_dumps(CONFIG))
    assert (c.os, c.architecture, c.variant) == ("linux", "arm64", "v8")
    assert c.user == "1000:1000"
    assert c.env == ("PATH=/bin", "A=b")
    assert c.entrypoint == ("/entry",)
    assert c.cmd == ("run", "--x")
    assert c.working_dir == "/srv"
    assert c.labels == {"k": "v"}
    assert c.stop_signal == "SIGQUIT"
    assert c.exposed_ports == ("53/udp", "80/tcp")
    assert c.volumes == ("/data",)
    assert c.diff_ids == (D1, D2)
    assert c.created == "2024-01-01T00:00:00Z"
    assert mf.config_json(_dumps(CONFIG)) == CONFIG


def test_parse_minimal_image_config() -> None:
    c = mf.parse_image_config(b'{"rootfs": {"type": "layers", "diff_ids": []}, "config": null}')
    assert c.os == ""
    assert c.cmd == ()
    assert c.labels == {}
    assert c.created is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rootfs": {"type": "other", "diff_ids": []}}, "rootfs type"),
        ({"rootfs": None}, "'rootfs' must be an object"),
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:1"]}}, "diff_ids"),
        ({"rootfs": {"type": "layers", "diff_ids": "x"}}, "diff_ids"),
        ({"config": {"Env": "A=b"}}, "Env"),
        ({"config": {"Cmd": [1]}}, "Cmd"),
        ({"config": {"Labels": {"a": 1}}}, "Labels"),
        ({"config": {"ExposedPorts": ["80/tcp"]}}, "ExposedPorts"),
        ({"config": {"User": 0}}, "'User' must be a string"),
        ({"config": []}, "'config' must be an object"),
    ],
)
def test_parse_image_config_rejects(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        mf.parse_image_config(_dumps({**CONFIG, **change}))


# -- platforms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        (Platform("linux", "amd64"), Platform("linux", "amd64")),
        (Platform("linux", "amd64", "v1"), Platform("linux", "amd64")),
        (Platform("linux", "x86_64"), Platform("linux", "amd64")),
        (Platform("linux", "aarch64"), Platform("linux", "arm64")),
        (Platform("linux", "arm64", "v8"), Platform("linux", "arm64")),
        (Platform("linux", "arm64", "8"), Platform("linux", "arm64")),
        (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
        (Platform("linux", "armhf"), Platform("linux", "arm", "v7")),
        (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
        (Platform("Linux", "ARM", "6"), Platform("linux", "arm", "v6")),
        (Platform("linux", "i386"), Platform("linux", "386")),
        (Platform("macos", "arm64"), Platform("darwin", "arm64")),
    ],
)
def test_normalize_platform(given: Platform, normal: Platform) -> None:
    assert mf.normalize_platform(given) == normal


@pytest.mark.parametrize(
    ("machine", "platform"),
    [
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("ppc64le", Platform("linux", "ppc64le")),
        ("s390x", Platform("linux", "s390x")),
        ("riscv64", Platform("linux", "riscv64")),
    ],
)
def test_platform_for_machine(machine: str, platform: Platform) -> None:
    assert mf.platform_for_machine(machine) == platform


def test_host_platform_is_normalized() -> None:
    host = mf.host_platform()
    assert host.os == "linux"
    assert mf.normalize_platform(host) == host


def test_parse_platform() -> None:
    assert mf.parse_platform("linux/arm64/v8") == Platform("linux", "arm64")
    assert str(mf.parse_platform("linux/arm/v6")) == "linux/arm/v6"
    with pytest.raises(ManifestError, match="os/arch"):
        mf.parse_platform("linux")


MULTI = [
    _entry(D1, "linux", "amd64"),
    _entry(D2, "linux", "arm64", "v8"),
    _entry(D3, "linux", "arm", "v7"),
]


@pytest.mark.parametrize(
    ("entries", "want", "chosen"),
    [
        (MULTI, Platform("linux", "amd64"), D1),
        (MULTI, Platform("linux", "x86_64"), D1),
        (MULTI, Platform("linux", "arm64"), D2),
        (MULTI, Platform("linux", "arm64", "v8"), D2),
        (MULTI, Platform("linux", "arm"), D3),
        # an amd64/v3 host runs v1 images, preferring the highest level offered
        (MULTI, Platform("linux", "amd64", "v3"), D1),
        (
            [_entry(D1, "linux", "amd64"), _entry(D2, "linux", "amd64", "v2")],
            Platform("linux", "amd64", "v3"),
            D2,
        ),
        (
            [_entry(D2, "linux", "amd64", "v2"), _entry(D1, "linux", "amd64", "v1")],
            Platform("linux", "amd64"),
            D1,
        ),
        # an arm/v7 host runs v6 and v5 images
        ([_entry(D1, "linux", "arm", "v6")], Platform("linux", "arm", "v7"), D1),
        ([_entry(D2, "linux", "arm64")], Platform("linux", "arm64", "v8"), D2),
        # attestation entries (unknown/unknown) and platform-less entries are skipped
        (
            [
                {"mediaType": mf.MEDIA_TYPE_OCI_MANIFEST, "digest": D3, "size": 1},
                _entry(D2, "unknown", "unknown"),
                _entry(D1, "linux", "amd64"),
            ],
            Platform("linux", "amd64"),
            D1,
        ),
        # first entry wins among equals
        (
            [_entry(D1, "linux", "amd64"), _entry(D2, "linux", "amd64")],
            Platform("linux", "amd64"),
            D1,
        ),
    ],
)
def test_select_platform(entries: list[dict[str, Any]], want: Platform, chosen: str) -> None:
    assert mf.select_platform(_index(*entries), want).digest == chosen


@pytest.mark.parametrize(
    ("entries", "want"),
    [
        (MULTI, Platform("windows", "amd64")),
        (MULTI, Platform("linux", "riscv64")),
        ([_entry(D1, "linux", "amd64", "v2")], Platform("linux", "amd64")),
        ([_entry(D1, "linux", "arm", "v7")], Platform("linux", "arm", "v6")),
        ([_entry(D1, "linux", "arm", "v7")], Platform("linux", "arm64")),
        ([], Platform("linux", "amd64")),
    ],
)
def test_select_platform_none(entries: list[dict[str, Any]], want: Platform) -> None:
    with pytest.raises(ManifestError, match="no manifest for platform"):
        mf.select_platform(_index(*entries), want)


def test_select_platform_lists_offers() -> None:
    with pytest.raises(ManifestError, match=r"linux/amd64, linux/arm/v7, linux/arm64/v8"):
        mf.select_platform(_index(*MULTI), Platform("linux", "s390x"))


# -- chain ids -----------------------------------------------------------------------------------


def test_chain_ids() -> None:
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert mf.chain_ids([a, b, c]) == [a, ab, abc]
    assert mf.chain_ids([]) == []
    assert mf.chain_ids([a]) == [a]


def test_chain_id_known_value() -> None:
    # Written out by hand: sha256("sha256:111…1 sha256:222…2").
    text = ("sha256:" + "1" * 64 + " " + "sha256:" + "2" * 64).encode()
    assert mf.chain_ids([D1, D2])[1] == "sha256:" + hashlib.sha256(text).hexdigest()
