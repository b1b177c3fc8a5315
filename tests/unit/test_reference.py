from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from images.errors import InvalidReferenceError
from images.reference import Reference, is_image_id, normalize_image_id, parse_reference

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        (f"registry.k8s.io/pause@{DIGEST}", f"registry.k8s.io/pause@{DIGEST}"),
        (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("localhost:5000/team/app:v1", "localhost:5000/team/app:v1"),
        ("127.0.0.1:5000/a/b/c:dev", "127.0.0.1:5000/a/b/c:dev"),
        ("[::1]:5000/app:v1", "[::1]:5000/app:v1"),
        ("Example.COM/app", "Example.COM/app:latest"),
        ("ghcr.io/a__b/c-d/e.f_g:X_y.z-1", "ghcr.io/a__b/c-d/e.f_g:X_y.z-1"),
        ("quay.io/a---b/c", "quay.io/a---b/c:latest"),
        ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128),
        ("x/y@sha512:" + "a" * 128, "docker.io/x/y@sha512:" + "a" * 128),
        ("x/y@sha384:" + "b" * 96, "docker.io/x/y@sha384:" + "b" * 96),
    ],
)
def test_parse_normalizes(raw: str, normalized: str) -> None:
    assert str(parse_reference(raw)) == normalized


def test_parse_fields() -> None:
    ref = parse_reference(f"localhost:5000/team/app:v1@{DIGEST}")
    assert ref == Reference("localhost:5000", "team/app", "v1", DIGEST)
    assert ref.name == "localhost:5000/team/app"
    assert parse_reference(f"busybox@{DIGEST}").tag is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("BusyBox", "lowercase"),
        ("docker.io/Library/busybox", "lowercase"),
        ("busybox:", "bad tag"),
        ("busybox:-x", "bad tag"),
        ("busybox:.x", "bad tag"),
        ("busybox:a/b", "bad domain"),
        ("busybox:t!", "bad tag"),
        ("busybox:" + "t" * 129, "longer than 128"),
        ("busybox@sha256:abc", "bad digest"),
        ("busybox@sha256:" + HEX.upper(), "bad digest"),
        ("busybox@md5:" + "a" * 32, "bad digest"),
        ("busybox@sha512:" + "a" * 64, "bad digest"),
        ("busybox@", "bad digest"),
        (f"busybox@{DIGEST}@{DIGEST}", "bad digest"),
        ("a//b", "bad repository"),
        ("docker.io/", "bad repository"),
        ("-a/b", "bad repository"),
        ("a_/b", "bad repository"),
        ("a/b_", "bad repository"),
        ("a/b___c", "bad repository"),
        ("-bad.example/x", "bad domain"),
        ("example.com:port/x", "bad domain"),
        (HEX, "image id"),
        ("x" * 256, "longer than 255"),
        ("busy box", "bad repository"),
    ],
)
def test_parse_rejects(raw: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_reference(raw)


def test_invalid_reference_is_value_error() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        parse_reference("UPPER")


def test_with_tag_and_digest() -> None:
    ref = parse_reference(f"busybox:1@{DIGEST}")
    assert str(ref.with_tag("2")) == "docker.io/library/busybox:2"
    assert str(ref.with_digest(DIGEST)) == f"docker.io/library/busybox@{DIGEST}"
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidReferenceError):
        ref.with_digest("sha256:nothex")


@pytest.mark.parametrize(
    ("raw", "familiar"),
    [
        ("busybox", "busybox"),
        ("bitnami/redis", "bitnami/redis"),
        ("registry.k8s.io/pause", "registry.k8s.io/pause"),
    ],
)
def test_familiar_name(raw: str, familiar: str) -> None:
    assert parse_reference(raw).familiar_name == familiar


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (DIGEST, DIGEST),
        (HEX, DIGEST),
        (HEX.upper(), None),
        (HEX[:12], None),
        ("sha256:" + HEX[:63], None),
        ("sha512:" + "a" * 128, None),
        ("busybox", None),
        ("", None),
    ],
)
def test_image_ids(raw: str, expected: str | None) -> None:
    assert normalize_image_id(raw) == expected
    assert is_image_id(raw) is (expected is not None)


# -- round trip ---------------------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", fullmatch=True).filter(
    lambda s: len(s) < 40
)
_domain = st.one_of(
    st.sampled_from(["docker.io", "index.docker.io", "localhost", "registry.k8s.io", "ghcr.io"]),
    st.from_regex(r"[a-z0-9]{1,10}(?:\.[a-z0-9]{1,10}){1,2}(?::[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"localhost:[0-9]{1,5}", fullmatch=True),
    st.none(),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digest = st.builds(
    lambda alg, data: f"{alg}:{data}",
    st.just("sha256"),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)


@st.composite
def _reference_strings(draw: st.DrawFn) -> str:
    domain = draw(_domain)
    path = "/".join(draw(st.lists(_component, min_size=1, max_size=3)))
    if domain is None and "." in path.split("/")[0]:
        domain = "docker.io"  # otherwise the first component would be read as a domain
    s = f"{domain}/{path}" if domain else path
    tag = draw(st.one_of(st.none(), _tag))
    digest = draw(st.one_of(st.none(), _digest))
    if tag is not None:
        s += ":" + tag
    if digest is not None:
        s += "@" + digest
    return s


@given(_reference_strings())
def test_round_trip(raw: str) -> None:
    try:
        ref = parse_reference(raw)
    except InvalidReferenceError:
        # Only the rule that a bare 64-hex string is an image id refuses what this builds.
        assert len(raw) == 64
        return
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)
    assert ref.tag is not None or ref.digest is not None
