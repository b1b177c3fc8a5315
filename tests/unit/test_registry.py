from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Iterator

import httpx
import pytest

from images.auth import Credentials
from images.errors import (
    BlobMismatchError,
    ImageNotFoundError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from images.hosts import RegistryHost, load_hosts, write_mirror_config
from images.registry import (
    DEFAULT_MANIFEST_ACCEPT,
    RegistryClient,
    ResolvedManifest,
    RetryPolicy,
)
from tests.fakes_registry import OCI_INDEX, OCI_MANIFEST, FakeNetwork, FakeRegistry, sha256_digest

REPO = "library/busybox"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
LAYER = b"layer bytes " * 1000

SERVER = RegistryHost("https://registry.test")
MIRROR = RegistryHost("http://mirror.test:5000", capabilities=frozenset({"pull", "resolve"}))


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(
    network: FakeNetwork,
    hosts: list[RegistryHost],
    sleep: Sleeps | None = None,
    credentials: dict[str, Credentials] | None = None,
    **kwargs: object,
) -> RegistryClient:
    found = credentials or {}
    return RegistryClient(
        lambda domain: hosts,
        transport=network.transport(),
        credentials=found.get,
        sleep=sleep or Sleeps(),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def network() -> FakeNetwork:
    return FakeNetwork()


@pytest.fixture
def server(network: FakeNetwork) -> FakeRegistry:
    registry = network.add_registry(FakeRegistry("registry.test"))
    registry.add_manifest(REPO, "latest", MANIFEST)
    return registry


# -- resolve -----------------------------------------------------------------------------------


def test_resolve_by_tag(network: FakeNetwork, server: FakeRegistry) -> None:
    with make_client(network, [SERVER]) as client:
        resolved = client.resolve("docker.io", REPO, "latest")
    assert resolved == ResolvedManifest(
        digest=sha256_digest(MANIFEST),
        media_type=OCI_MANIFEST,
        body=MANIFEST,
        host="https://registry.test",
    )
    (request,) = server.requests
    assert request.url == f"https://registry.test/v2/{REPO}/manifests/latest"
    for media_type in DEFAULT_MANIFEST_ACCEPT:
        assert media_type in request.headers["Accept"]


def test_resolve_by_digest_and_media_type_from_body(
    network: FakeNetwork, server: FakeRegistry
) -> None:
    body = json.dumps({"mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = sha256_digest(body)
    server.put_raw_manifest(REPO, digest, body, "application/json", header_digest="")
    with make_client(network, [SERVER]) as client:
        resolved = client.resolve("docker.io", REPO, digest)
    assert (resolved.digest, resolved.media_type) == (digest, OCI_INDEX)


def test_mirror_fallback_in_order(network: FakeNetwork, server: FakeRegistry) -> None:
    down = RegistryHost("http://down.test:5000")
    with make_client(network, [down, MIRROR, SERVER]) as client:
        resolved = client.resolve("docker.io", REPO, "latest")
    assert resolved.host == "https://registry.test"  # the mirror has no such manifest
    assert network.authorities() == ["down.test:5000", "mirror.test:5000", "registry.test"]


def test_404_on_mirror_then_success_upstream(network: FakeNetwork, server: FakeRegistry) -> None:
    mirror = network.add_registry(FakeRegistry("mirror.test:5000"))
    with make_client(network, [MIRROR, SERVER]) as client:
        assert client.resolve("docker.io", REPO, "latest").host == "https://registry.test"
    assert mirror.paths() == [f"/v2/{REPO}/manifests/latest"]


def test_mirror_serves_when_it_has_the_manifest(network: FakeNetwork, server: FakeRegistry) -> None:
    mirror = network.add_registry(FakeRegistry("mirror.test:5000"))
    mirror.add_manifest(REPO, "latest", MANIFEST)
    with make_client(network, [MIRROR, SERVER]) as client:
        assert client.resolve("docker.io", REPO, "latest").host == "http://mirror.test:5000"
    assert server.requests == []


def test_404_on_last_host_is_not_found(network: FakeNetwork, server: FakeRegistry) -> None:
    with (
        make_client(network, [SERVER]) as client,
        pytest.raises(ImageNotFoundError, match="MANIFEST_UNKNOWN"),
    ):
        client.resolve("docker.io", REPO, "nope")


def test_unreachable_names_every_host(network: FakeNetwork) -> None:
    sleeps = Sleeps()
    retry = RetryPolicy(attempts=3, backoff_base=0.5)
    with (
        make_client(network, [MIRROR, SERVER], sleeps, retry=retry) as client,
        pytest.raises(RegistryUnavailableError) as info,
    ):
        client.resolve("docker.io", REPO, "latest")
    message = str(info.value)
    assert "cannot reach registry http://mirror.test:5000, https://registry.test" in message
    assert "connection refused" in message
    assert sleeps.calls == [0.5, 1.0]
    assert len(network.log) == 6


def test_retry_then_success(network: FakeNetwork, server: FakeRegistry) -> None:
    server.fail("/manifests/", status=503, times=2)
    sleeps = Sleeps()
    with make_client(network, [SERVER], sleeps, retry=RetryPolicy(3, 0.25)) as client:
        assert client.resolve("docker.io", REPO, "latest").digest == sha256_digest(MANIFEST)
    assert sleeps.calls == [0.25, 0.5]


def test_timeouts_are_retried(network: FakeNetwork, server: FakeRegistry) -> None:
    server.fail("/manifests/", exception=httpx.ReadTimeout, times=1)
    with make_client(network, [SERVER]) as client:
        client.resolve("docker.io", REPO, "latest")
    assert len(server.requests) == 2


def test_tags_resolve_only_on_trusted_hosts(network: FakeNetwork, server: FakeRegistry) -> None:
    pull_only = RegistryHost("http://mirror.test:5000", capabilities=frozenset({"pull"}))
    mirror = network.add_registry(FakeRegistry("mirror.test:5000"))
    digest = mirror.add_manifest(REPO, "latest", b'{"evil": true}')
    with make_client(network, [pull_only, SERVER]) as client:
        assert client.resolve("docker.io", REPO, "latest").host == "https://registry.test"
        assert client.resolve("docker.io", REPO, digest).host == "http://mirror.test:5000"


def test_no_host_with_capability(network: FakeNetwork) -> None:
    host = RegistryHost("https://r.test", capabilities=frozenset({"pull"}))
    with make_client(network, [host]) as client, pytest.raises(RegistryError, match="resolve"):
        client.resolve("docker.io", REPO, "latest")


def test_manifest_digest_mismatch(network: FakeNetwork, server: FakeRegistry) -> None:
    wanted = sha256_digest(b"something else")
    server.put_raw_manifest(REPO, wanted, MANIFEST, OCI_MANIFEST, header_digest="")
    with make_client(network, [SERVER]) as client, pytest.raises(BlobMismatchError):
        client.resolve("docker.io", REPO, wanted)


def test_docker_content_digest_mismatch(network: FakeNetwork, server: FakeRegistry) -> None:
    server.put_raw_manifest(REPO, "bad", MANIFEST, OCI_MANIFEST, sha256_digest(b"other"))
    with make_client(network, [SERVER]) as client, pytest.raises(BlobMismatchError):
        client.resolve("docker.io", REPO, "bad")


def test_corrupt_mirror_falls_back_to_upstream(network: FakeNetwork, server: FakeRegistry) -> None:
    mirror = network.add_registry(FakeRegistry("mirror.test:5000"))
    mirror.put_raw_manifest(REPO, "latest", b"{}", OCI_MANIFEST, sha256_digest(MANIFEST))
    with make_client(network, [MIRROR, SERVER]) as client:
        assert client.resolve("docker.io", REPO, "latest").body == MANIFEST


def test_manifest_size_limit(network: FakeNetwork, server: FakeRegistry) -> None:
    with (
        make_client(network, [SERVER], max_manifest_size=10) as client,
        pytest.raises(RegistryError, match="over 10"),
    ):
        client.resolve("docker.io", REPO, "latest")


def test_other_4xx_carries_the_registry_message(network: FakeNetwork, server: FakeRegistry) -> None:
    server.fail("/manifests/", status=400)
    with (
        make_client(network, [SERVER]) as client,
        pytest.raises(RegistryError, match=r"HTTP 400.*UNKNOWN: injected failure"),
    ):
        client.resolve("docker.io", REPO, "latest")


@pytest.mark.parametrize(
    ("repository", "reference"),
    [("UPPER/case", "latest"), ("a/../b", "latest"), (REPO, "bad/tag"), (REPO, "sha256:abc")],
)
def test_invalid_names_never_reach_the_network(
    network: FakeNetwork, repository: str, reference: str
) -> None:
    with make_client(network, [SERVER]) as client, pytest.raises(InvalidReferenceError):
        client.resolve("docker.io", repository, reference)
    assert network.log == []


def test_override_path_and_host_headers(network: FakeNetwork) -> None:
    mirror = network.add_registry(FakeRegistry("mirror.test:5000", prefix="/proxy/docker"))
    mirror.add_manifest(REPO, "latest", MANIFEST)
    host = RegistryHost(
        "http://mirror.test:5000/proxy/docker", override_path=True, headers=(("X-Team", "a"),)
    )
    with make_client(network, [host]) as client:
        client.resolve("docker.io", REPO, "latest")
    (request,) = mirror.requests
    assert request.url.path == f"/proxy/docker/{REPO}/manifests/latest"
    assert request.headers["X-Team"] == "a"


# -- authentication ----------------------------------------------------------------------------


def test_token_dance_with_scope_and_cached_token(network: FakeNetwork) -> None:
    registry = network.add_registry(FakeRegistry("registry.test", auth="bearer"))
    registry.add_manifest(REPO, "latest", MANIFEST)
    digest = registry.add_blob(REPO, LAYER)
    with make_client(network, [SERVER]) as client:
        client.resolve("docker.io", REPO, "latest")
        with client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob:
            assert blob.read() == LAYER
    (token_request,) = registry.token_requests
    assert token_request.url.params.get_list("scope") == [f"repository:{REPO}:pull"]
    assert token_request.url.params["service"] == "fake-registry"
    assert "Authorization" not in token_request.headers  # anonymous pull
    # One 401, then the token goes up front: the blob costs one request.
    assert [r.url.path.rsplit("/", 2)[1] for r in registry.requests] == [
        "manifests",
        "manifests",
        "blobs",
    ]


def test_token_request_carries_credentials(network: FakeNetwork) -> None:
    registry = network.add_registry(
        FakeRegistry("registry.test", auth="bearer", users={"u": "p"}, anonymous_pull=False)
    )
    registry.add_manifest(REPO, "latest", MANIFEST)
    creds = {"registry.test": Credentials("u", "p")}
    with make_client(network, [SERVER], credentials=creds) as client:
        client.resolve("docker.io", REPO, "latest")
    assert registry.token_requests[0].headers["Authorization"] == "Basic dTpw"


def test_refused_credentials_are_auth_errors(network: FakeNetwork) -> None:
    registry = network.add_registry(
        FakeRegistry("registry.test", auth="bearer", users={"u": "p"}, anonymous_pull=False)
    )
    registry.add_manifest(REPO, "latest", MANIFEST)
    with make_client(network, [SERVER]) as client, pytest.raises(RegistryAuthError):
        client.resolve("docker.io", REPO, "latest")  # anonymous token lacks the scope
    wrong = {"registry.test": Credentials("u", "wrong")}
    with (
        make_client(network, [SERVER], credentials=wrong) as client,
        pytest.raises(RegistryAuthError, match="HTTP 401"),
    ):
        client.resolve("docker.io", REPO, "latest")


def test_identity_token_uses_the_refresh_grant(network: FakeNetwork) -> None:
    registry = network.add_registry(
        FakeRegistry("registry.test", auth="bearer", users={"u": "p"}, anonymous_pull=False)
    )
    registry.add_manifest(REPO, "latest", MANIFEST)
    with make_client(network, [SERVER]) as client:
        client.resolve(
            "docker.io", REPO, "latest", credentials=Credentials(identity_token="refresh-ok")
        )
    (token_request,) = registry.token_requests
    assert token_request.method == "POST"
    assert b"grant_type=refresh_token" in token_request.content


def test_registry_token_is_sent_as_is(network: FakeNetwork) -> None:
    registry = network.add_registry(FakeRegistry("registry.test", auth="bearer"))
    registry.add_manifest(REPO, "latest", MANIFEST)
    registry.tokens["given"] = {(REPO, "pull")}
    with make_client(network, [SERVER]) as client:
        client.resolve("docker.io", REPO, "latest", credentials=Credentials(registry_token="given"))
    assert registry.token_requests == []
    assert registry.requests[0].headers["Authorization"] == "Bearer given"


def test_basic_auth(network: FakeNetwork) -> None:
    registry = network.add_registry(FakeRegistry("registry.test", auth="basic", users={"u": "p"}))
    registry.add_manifest(REPO, "latest", MANIFEST)
    with make_client(network, [SERVER]) as client, pytest.raises(RegistryAuthError):
        client.resolve("docker.io", REPO, "latest")
    with make_client(network, [SERVER], credentials={"registry.test": Credentials("u", "p")}) as c:
        c.resolve("docker.io", REPO, "latest")
        c.resolve("docker.io", REPO, "latest")
    # The second resolve sends Basic up front instead of waiting for another 401.
    assert [r.headers.get("Authorization") is not None for r in registry.requests[-3:]] == [
        False,
        True,
        True,
    ]


def test_call_credentials_go_to_the_upstream_only(network: FakeNetwork) -> None:
    mirror = network.add_registry(FakeRegistry("mirror.test:5000", auth="basic", users={"u": "p"}))
    mirror.add_manifest(REPO, "latest", MANIFEST)
    server = network.add_registry(FakeRegistry("registry.test", auth="basic", users={"u": "p"}))
    server.add_manifest(REPO, "latest", MANIFEST)
    with make_client(network, [MIRROR, SERVER]) as client:
        resolved = client.resolve("docker.io", REPO, "latest", credentials=Credentials("u", "p"))
    assert resolved.host == "https://registry.test"
    assert all("Authorization" not in r.headers for r in mirror.requests)


# -- blobs -------------------------------------------------------------------------------------


def test_fetch_blob_streams_chunks(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = server.add_blob(REPO, LAYER)
    with (
        make_client(network, [SERVER], chunk_size=4096) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
    ):
        chunks = list(blob)
    assert b"".join(chunks) == LAYER
    assert max(len(c) for c in chunks) == 4096
    assert blob.bytes_read == len(LAYER)
    assert blob.host == "https://registry.test"


def test_blob_redirect_drops_authorization(network: FakeNetwork) -> None:
    registry = network.add_registry(
        FakeRegistry("registry.test", auth="bearer", redirect_blobs_to="storage.test")
    )
    digest = registry.add_blob(REPO, LAYER)
    with (
        make_client(network, [SERVER]) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
    ):
        assert blob.read() == LAYER
    assert network.authorities()[-1] == "storage.test"


def test_blob_digest_mismatch(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = sha256_digest(LAYER)
    server.put_raw_blob(REPO, digest, LAYER[:-1] + b"X")
    with (
        make_client(network, [SERVER]) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
        pytest.raises(BlobMismatchError, match="has digest"),
    ):
        blob.read()


@pytest.mark.parametrize("size", [len(LAYER), None])
def test_truncated_blob(network: FakeNetwork, server: FakeRegistry, size: int | None) -> None:
    digest = sha256_digest(LAYER)
    server.put_raw_blob(REPO, digest, LAYER[:100])
    with (
        make_client(network, [SERVER]) as client,
        pytest.raises(BlobMismatchError),
        client.fetch_blob("docker.io", REPO, digest, size) as blob,
    ):
        blob.read()


def test_oversized_blob_stops_early(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = sha256_digest(b"small")
    server.put_raw_blob(REPO, digest, LAYER)
    with (
        make_client(network, [SERVER], chunk_size=1024) as client,
        client.fetch_blob("docker.io", REPO, digest, size=None) as blob,
    ):
        blob.size = 5  # Content-Length absent, as with chunked storage answers
        with pytest.raises(BlobMismatchError, match="larger than 5"):
            blob.read()
    assert blob.bytes_read == 1024


def test_blob_verify_can_be_disabled(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = sha256_digest(LAYER)
    server.put_raw_blob(REPO, digest, b"other")
    with (
        make_client(network, [SERVER]) as client,
        client.fetch_blob("docker.io", REPO, digest, verify=False) as blob,
    ):
        assert blob.read() == b"other"


def test_blob_retry_then_success(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = server.add_blob(REPO, LAYER)
    server.fail("/blobs/", exception=httpx.ConnectError, times=1)
    server.fail("/blobs/", status=502, times=1)
    sleeps = Sleeps()
    with (
        make_client(network, [SERVER], sleeps) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
    ):
        assert blob.read() == LAYER
    assert sleeps.calls == [0.5, 1.0]


def test_blob_missing_on_mirror_comes_from_upstream(
    network: FakeNetwork, server: FakeRegistry
) -> None:
    network.add_registry(FakeRegistry("mirror.test:5000"))
    digest = server.add_blob(REPO, LAYER)
    with (
        make_client(network, [MIRROR, SERVER]) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
    ):
        assert blob.host == "https://registry.test"
        assert blob.read() == LAYER


def test_blob_not_found(network: FakeNetwork, server: FakeRegistry) -> None:
    with (
        make_client(network, [SERVER]) as client,
        pytest.raises(ImageNotFoundError),
        client.fetch_blob("docker.io", REPO, sha256_digest(b"x")),
    ):
        pytest.fail("fetch_blob should have raised")


class _BrokenStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"first"
        raise httpx.ReadError("connection reset")


def test_read_error_mid_stream_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_BrokenStream())

    client = RegistryClient(lambda d: [SERVER], transport=httpx.MockTransport(handler))
    with (
        client,
        client.fetch_blob("docker.io", REPO, sha256_digest(b"x")) as blob,
        pytest.raises(RegistryUnavailableError, match=r"failed after .*connection reset"),
    ):
        blob.read()


# -- push --------------------------------------------------------------------------------------


def test_push_then_pull_round_trip(network: FakeNetwork, tmp_path: pathlib.Path) -> None:
    registry = network.add_registry(
        FakeRegistry("registry.test", auth="bearer", users={"u": "p"}, anonymous_pull=True)
    )
    layer_path = tmp_path / "layer"
    layer_path.write_bytes(LAYER)
    layer, config = sha256_digest(LAYER), sha256_digest(b"{}")
    creds = {"registry.test": Credentials("u", "p")}
    with make_client(network, [SERVER], credentials=creds) as client:
        assert client.push_blob("docker.io", REPO, layer, layer_path) is True
        assert client.push_blob("docker.io", REPO, config, b"{}") is True
        assert client.push_blob("docker.io", REPO, layer, layer_path) is False  # exists
        digest = client.push_manifest("docker.io", REPO, "v1", OCI_MANIFEST, MANIFEST)
    assert digest == sha256_digest(MANIFEST)
    scopes = {s for r in registry.token_requests for s in r.url.params.get_list("scope")}
    assert f"repository:{REPO}:pull,push" in scopes

    with make_client(network, [SERVER]) as anonymous:
        resolved = anonymous.resolve("docker.io", REPO, "v1")
        with anonymous.fetch_blob("docker.io", REPO, layer, len(LAYER)) as blob:
            pulled = blob.read()
    assert (resolved.digest, resolved.body, pulled) == (digest, MANIFEST, LAYER)


def test_push_goes_to_a_host_that_may_push(network: FakeNetwork, server: FakeRegistry) -> None:
    network.add_registry(FakeRegistry("mirror.test:5000"))
    with make_client(network, [MIRROR, SERVER]) as client:
        client.push_blob("docker.io", REPO, sha256_digest(b"data"), b"data")
    assert (REPO, sha256_digest(b"data")) in server.blobs


def test_push_with_wrong_digest_is_refused(network: FakeNetwork, server: FakeRegistry) -> None:
    with (
        make_client(network, [SERVER]) as client,
        pytest.raises(RegistryError, match="DIGEST_INVALID"),
    ):
        client.push_blob("docker.io", REPO, sha256_digest(b"promised"), b"delivered")


def test_push_manifest_by_digest_checks_the_body(
    network: FakeNetwork, server: FakeRegistry
) -> None:
    with make_client(network, [SERVER]) as client:
        digest = sha256_digest(MANIFEST)
        assert client.push_manifest("docker.io", REPO, digest, OCI_MANIFEST, MANIFEST) == digest
        with pytest.raises(BlobMismatchError):
            client.push_manifest("docker.io", REPO, sha256_digest(b"x"), OCI_MANIFEST, MANIFEST)


def test_mirror_config_routes_public_registries_to_a_local_registry(
    network: FakeNetwork, tmp_path: pathlib.Path
) -> None:
    local = network.add_registry(FakeRegistry("127.0.0.1:5000"))
    local.add_manifest("pause", "3.9", MANIFEST)
    write_mirror_config(str(tmp_path), mirror_url="http://127.0.0.1:5000")
    client = RegistryClient(
        functools.partial(load_hosts, str(tmp_path)), transport=network.transport()
    )
    with client:
        resolved = client.resolve("registry.k8s.io", "pause", "3.9")
    assert resolved.host == "http://127.0.0.1:5000"
    assert network.authorities() == ["127.0.0.1:5000"]


def test_blob_stream_is_an_iterator_read_once(network: FakeNetwork, server: FakeRegistry) -> None:
    digest = server.add_blob(REPO, LAYER)
    with (
        make_client(network, [SERVER], chunk_size=len(LAYER) // 2) as client,
        client.fetch_blob("docker.io", REPO, digest, len(LAYER)) as blob,
    ):
        assert next(blob) == LAYER[: len(LAYER) // 2]
        assert b"".join(blob) == LAYER[len(LAYER) // 2 :]
        assert list(blob) == []
