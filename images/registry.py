"""The OCI distribution client: resolve manifests, stream blobs, and a small push side.

Theory of operation
-------------------
``hosts_resolver(domain)`` lists the URLs that serve a registry, mirrors first and the upstream
server last (``images/hosts.py``). Every operation walks that list, keeping only hosts with the
capability it needs (``resolve`` for a tag, ``pull`` for a digest or a blob, ``push``):

* a connection error, a timeout, a 5xx or a 429 moves on to the next host; when every host failed
  that way, the walk is repeated after a backoff, up to ``RetryPolicy.attempts`` rounds, then
  ``RegistryUnavailableError`` names the hosts tried;
* any other failure from a mirror (404, a refused token, content that does not match its
  digest) also moves on, because a mirror is a cache we trust less than the upstream; the same
  failure from the last host is final (404 -> ``ImageNotFoundError``).

Authentication is answered lazily: a request goes out anonymous, and a 401 is answered once with
the challenge's scheme (a Bearer token from the token server, or Basic), then resent. The
challenge is remembered per host, so later requests carry a cached token up front and each blob
costs one round trip, not two. The pure half of all this lives in ``images/auth.py``.

One ``httpx.Client`` is kept per (scheme, skip_verify) so connections are pooled across requests,
and ``trust_env=False`` keeps proxy variables of the daemon's environment out of image pulls. The
I/O seam is ``httpx.BaseTransport``: tests pass an ``httpx.MockTransport`` (see
``tests/fakes_registry.py``) and never open a socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from images.auth import (
    Challenge,
    Credentials,
    TokenKey,
    basic_authorization,
    choose_challenge,
    parse_token_response,
    parse_www_authenticate,
    repository_scope,
    token_request_params,
)
from images.auth import TokenCache as _TokenCache
from images.errors import (
    BlobMismatchError,
    ImageError,
    ImageNotFoundError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from images.hosts import RegistryHost

__all__ = [
    "DEFAULT_MANIFEST_ACCEPT",
    "MAX_MANIFEST_SIZE",
    "BlobStream",
    "CredentialsLookup",
    "HostsResolver",
    "RegistryClient",
    "ResolvedManifest",
    "RetryPolicy",
]

_log = logging.getLogger(__name__)

# Kept here rather than imported from images/manifest.py so this module stands on its own.
DEFAULT_MANIFEST_ACCEPT: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_CHUNK_SIZE = 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 1024 * 1024
_USER_AGENT = "stowage/0.1"
_OAUTH_CLIENT = "stowage"

# From the distribution spec; checked before they are spliced into a URL path.
_REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST_HEX = {"sha256": 64, "sha512": 128}

HostsResolver = Callable[[str], list[RegistryHost]]
"""Hosts of a registry domain: mirrors first, the upstream server last."""

CredentialsLookup = Callable[[str], Credentials | None]
"""Credentials for a host, by its ``host[:port]``."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class ResolvedManifest:
    """A manifest (or index) as served, with its verified digest; ``host`` is the URL used."""

    digest: str
    media_type: str
    body: bytes = field(repr=False)
    host: str


@dataclass(frozen=True)
class RetryPolicy:
    """How many rounds over all hosts, and the exponential backoff between rounds."""

    attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 10.0

    def delay(self, failed_rounds: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** (failed_rounds - 1)))


class _HostFailure(Exception):
    """A failure worth retrying elsewhere or later: unreachable, timed out, 5xx or 429."""

    def __init__(self, host: RegistryHost, detail: str) -> None:
        super().__init__(f"{host.url}: {detail}")
        self.host = host


@dataclass(frozen=True)
class _Call:
    """What a request to one host needs besides its URL."""

    host: RegistryHost
    upstream: bool  # the last configured host: the only one given a call's own credentials
    repository: str
    actions: tuple[str, ...]
    credentials: Credentials | None


class BlobStream:
    """The body of one blob: an iterator of ~1 MiB chunks, read once.

    With ``verify`` (the default) the stream raises ``BlobMismatchError`` as soon as it grows past
    the expected size, and at its end if the size or the digest differ; a caller that writes the
    chunks somewhere must therefore treat what it wrote as unverified until iteration finished.
    """

    def __init__(
        self,
        response: httpx.Response,
        host: str,
        digest: str,
        size: int | None,
        *,
        verify: bool = True,
        chunk_size: int = _CHUNK_SIZE,
    ) -> None:
        self.host = host
        self.digest = digest
        self.size = size
        self.content_length = _content_length(response)
        self.bytes_read = 0
        self._response = response
        self._verify = verify
        self._chunk_size = chunk_size
        self._generator: Iterator[bytes] | None = None

    def __iter__(self) -> BlobStream:
        return self

    def __next__(self) -> bytes:
        if self._generator is None:
            self._generator = self._generate()
        return next(self._generator)

    def _generate(self) -> Iterator[bytes]:
        hasher = _hasher(self.digest)
        try:
            for chunk in self._chunks():
                self.bytes_read += len(chunk)
                if self._verify and self.size is not None and self.bytes_read > self.size:
                    raise BlobMismatchError(
                        f"blob {self.digest} from {self.host} is larger than {self.size} bytes"
                    )
                hasher.update(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"reading blob {self.digest} from {self.host} failed after {self.bytes_read} "
                f"bytes: {_describe(exc)}"
            ) from exc
        if self._verify:
            self._check(hasher.hexdigest())

    def _chunks(self) -> Iterator[bytes]:
        # A blob's digest covers the stored bytes, never a transfer decoding of them, so an
        # encoded answer is read raw. Otherwise iter_bytes is the same bytes, and it also
        # serves responses whose body was loaded already (as httpx does for in-memory content).
        encoding = self._response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return self._response.iter_raw(self._chunk_size)
        return self._response.iter_bytes(self._chunk_size)

    def read(self) -> bytes:
        """The whole blob (for small blobs such as configs)."""
        return b"".join(self)

    def _check(self, hexdigest: str) -> None:
        if self.size is not None and self.bytes_read != self.size:
            raise BlobMismatchError(
                f"blob {self.digest} from {self.host}: got {self.bytes_read} bytes, "
                f"expected {self.size}"
            )
        actual = f"{self.digest.partition(':')[0]}:{hexdigest}"
        if actual != self.digest:
            raise BlobMismatchError(f"blob {self.digest} from {self.host} has digest {actual}")


class RegistryClient:
    """A client for every registry, routed through per-registry hosts (see the module doc).

    ``credentials`` looks up credentials per host; a ``credentials=`` argument of a call (the
    CRI request's auth) overrides it for the upstream server only, never for mirrors. Safe to
    share between threads.
    """

    def __init__(
        self,
        hosts_resolver: HostsResolver,
        *,
        transport: httpx.BaseTransport | None = None,
        credentials: CredentialsLookup | None = None,
        timeout: httpx.Timeout | float = httpx.Timeout(60.0, connect=10.0),  # noqa: B008
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_manifest_size: int = MAX_MANIFEST_SIZE,
        chunk_size: int = _CHUNK_SIZE,
    ) -> None:
        self._hosts_resolver = hosts_resolver
        self._transport = transport
        self._credentials = credentials
        self._timeout = timeout
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._max_manifest_size = max_manifest_size
        self._chunk_size = chunk_size
        self._tokens = _TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._clients: dict[tuple[str, bool], httpx.Client] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- pull ----------------------------------------------------------------------------------

    def resolve(
        self,
        domain: str,
        repository: str,
        reference: str,
        accept: Sequence[str] = DEFAULT_MANIFEST_ACCEPT,
        *,
        credentials: Credentials | None = None,
    ) -> ResolvedManifest:
        """The manifest ``reference`` (a tag or a digest) names, its digest verified.

        A tag is resolved only by hosts trusted to ``resolve``; a digest by any that can ``pull``.
        """
        _check_repository(repository)
        capability = "pull" if _check_reference(reference) else "resolve"
        calls = self._calls(domain, capability, repository, ("pull",), credentials)
        return self._over_hosts(calls, lambda call: self._resolve_on(call, reference, accept))

    @contextlib.contextmanager
    def fetch_blob(
        self,
        domain: str,
        repository: str,
        digest: str,
        size: int | None = None,
        *,
        verify: bool = True,
        credentials: Credentials | None = None,
    ) -> Iterator[BlobStream]:
        """A context manager giving the blob's ``BlobStream``; the connection closes on exit.

        Failures before the first byte (connection, 5xx, a mirror without the blob) are retried
        and fall back across hosts; a failure while reading raises ``RegistryUnavailableError``.
        """
        _check_repository(repository)
        _check_digest(digest)
        calls = self._calls(domain, "pull", repository, ("pull",), credentials)
        response, host = self._over_hosts(calls, lambda call: self._open_blob(call, digest, size))
        try:
            yield BlobStream(
                response, host.url, digest, size, verify=verify, chunk_size=self._chunk_size
            )
        finally:
            response.close()

    # -- push (used by our test-image tooling) -------------------------------------------------

    def push_blob(
        self,
        domain: str,
        repository: str,
        digest: str,
        data: bytes | str | os.PathLike[str],
        *,
        credentials: Credentials | None = None,
    ) -> bool:
        """Upload a blob monolithically unless the registry has it; True if it was uploaded.

        ``data`` is the content or a file's path. The digest is the caller's promise; the
        registry checks it and refuses a mismatch.
        """
        _check_repository(repository)
        _check_digest(digest)
        calls = self._calls(domain, "push", repository, ("pull", "push"), credentials)
        return self._over_hosts(calls, lambda call: self._push_blob_on(call, digest, data))

    def push_manifest(
        self,
        domain: str,
        repository: str,
        reference: str,
        media_type: str,
        body: bytes,
        *,
        credentials: Credentials | None = None,
    ) -> str:
        """Upload a manifest under a tag or its digest; returns its digest."""
        _check_repository(repository)
        digest = _digest_of(body, "sha256")
        if _check_reference(reference):
            digest = _digest_of(body, reference.partition(":")[0])
            if digest != reference:
                raise BlobMismatchError(f"manifest body has digest {digest}, not {reference}")

        def attempt(call: _Call) -> str:
            url = f"{call.host.api_root}/{repository}/manifests/{reference}"
            headers = {"Content-Type": media_type}
            response = self._send(call, "PUT", url, headers=headers, content=lambda: body)
            with contextlib.closing(response):
                _raise_for_status(response, call.host, f"manifest {repository}:{reference}")
            return digest

        calls = self._calls(domain, "push", repository, ("pull", "push"), credentials)
        return self._over_hosts(calls, attempt)

    # -- the host walk -------------------------------------------------------------------------

    def _calls(
        self,
        domain: str,
        capability: str,
        repository: str,
        actions: tuple[str, ...],
        credentials: Credentials | None,
    ) -> list[_Call]:
        """One ``_Call`` per host that has ``capability``, in the order to try them."""
        configured = self._hosts_resolver(domain)
        calls = [
            _Call(host, index == len(configured) - 1, repository, actions, credentials)
            for index, host in enumerate(configured)
            if capability in host.capabilities
        ]
        if not calls:
            raise RegistryError(f"no host of registry {domain} may {capability}")
        return calls

    def _over_hosts(self, calls: list[_Call], attempt: Callable[[_Call], _T]) -> _T:
        last_failure: _HostFailure | None = None
        for round_ in range(1, max(1, self._retry.attempts) + 1):
            if round_ > 1:
                self._sleep(self._retry.delay(round_ - 1))
            for position, call in enumerate(calls):
                try:
                    return attempt(call)
                except _HostFailure as exc:
                    _log.debug("registry host failed, trying the next: %s", exc)
                    last_failure = exc
                except ImageError as exc:
                    if position == len(calls) - 1:
                        raise
                    _log.debug("mirror %s failed, trying the next host: %s", call.host.url, exc)
        tried = ", ".join(call.host.url for call in calls)
        raise RegistryUnavailableError(f"cannot reach registry {tried}: {last_failure}")

    # -- one host ------------------------------------------------------------------------------

    def _resolve_on(self, call: _Call, reference: str, accept: Sequence[str]) -> ResolvedManifest:
        host = call.host
        url = f"{host.api_root}/{call.repository}/manifests/{reference}"
        response = self._send(call, "GET", url, headers={"Accept": ", ".join(accept)})
        with contextlib.closing(response):
            _raise_for_status(response, host, f"manifest {call.repository}:{reference}")
            body = self._read_manifest(response, host)
        digest = _verify_manifest(body, reference, response.headers.get("Docker-Content-Digest"))
        media_type = _media_type(response.headers.get("Content-Type", ""), body)
        return ResolvedManifest(digest=digest, media_type=media_type, body=body, host=host.url)

    def _read_manifest(self, response: httpx.Response, host: RegistryHost) -> bytes:
        limit = self._max_manifest_size
        length = _content_length(response)
        if length is not None and length > limit:
            raise RegistryError(f"manifest from {host.url} is {length} bytes, over {limit}")
        try:
            return _read_limited(response, limit)
        except httpx.TransportError as exc:
            raise _HostFailure(host, f"reading manifest: {_describe(exc)}") from exc

    def _open_blob(
        self, call: _Call, digest: str, size: int | None
    ) -> tuple[httpx.Response, RegistryHost]:
        host = call.host
        url = f"{host.api_root}/{call.repository}/blobs/{digest}"
        response = self._send(call, "GET", url, headers={"Accept-Encoding": "identity"})
        try:
            _raise_for_status(response, host, f"blob {call.repository}@{digest}")
            length = _content_length(response)
            if size is not None and length is not None and length != size:
                raise BlobMismatchError(
                    f"blob {digest} from {host.url} is {length} bytes, expected {size}"
                )
        except BaseException:
            response.close()
            raise
        return response, host

    def _push_blob_on(self, call: _Call, digest: str, data: bytes | str | os.PathLike[str]) -> bool:
        host, base = call.host, f"{call.host.api_root}/{call.repository}/blobs"
        with contextlib.closing(self._send(call, "HEAD", f"{base}/{digest}")) as head:
            if head.status_code == httpx.codes.OK:
                return False
            if head.status_code != httpx.codes.NOT_FOUND:
                _raise_for_status(head, host, f"blob {call.repository}@{digest}")
        post = self._send(call, "POST", f"{base}/uploads/", content=lambda: b"")
        with contextlib.closing(post):
            _raise_for_status(post, host, f"upload to {call.repository}")
            location = post.headers.get("Location")
            if not location:
                raise RegistryError(f"{host.url} started an upload without a Location")
            target = post.url.join(location).copy_merge_params({"digest": digest})
        size, content = _upload_content(data)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with contextlib.closing(
            self._send(call, "PUT", str(target), headers=headers, content=content)
        ) as put:
            _raise_for_status(put, host, f"upload of {digest} to {call.repository}")
        return True

    # -- requests and authentication -----------------------------------------------------------

    def _send(
        self,
        call: _Call,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
    ) -> httpx.Response:
        """One request, with at most one answer to a 401; returns a streaming response."""
        host = call.host
        creds = self._credentials_for(call)
        scope = repository_scope(call.repository, call.actions)
        authorization = self._cached_authorization(host, scope, creds)
        client = self._client(host.scheme, host.skip_verify)
        for answered in (False, True):
            request = client.build_request(
                method,
                url,
                headers=_request_headers(host, url, headers, authorization),
                content=None if content is None else content(),
            )
            response = self._transmit(client, request, host)
            if response.status_code != httpx.codes.UNAUTHORIZED:
                return response
            detail = _error_detail(response)
            challenge = choose_challenge(
                parse_www_authenticate(", ".join(response.headers.get_list("WWW-Authenticate")))
            )
            response.close()
            if answered or challenge is None:
                raise RegistryAuthError(f"{host.url} refused access to {call.repository}{detail}")
            with self._lock:
                self._challenges[host.url] = challenge
            authorization = self._authorize(host, challenge, scope, creds, refresh=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transmit(
        self, client: httpx.Client, request: httpx.Request, host: RegistryHost
    ) -> httpx.Response:
        try:
            response = client.send(request, stream=True, follow_redirects=True)
        except httpx.RequestError as exc:
            raise _HostFailure(host, _describe(exc)) from exc
        status = response.status_code
        if status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.TOO_MANY_REQUESTS:
            detail = _error_detail(response)
            response.close()
            raise _HostFailure(host, f"HTTP {status}{detail}")
        return response

    def _credentials_for(self, call: _Call) -> Credentials:
        if call.credentials is not None and call.upstream:
            return call.credentials
        found = self._credentials(call.host.authority) if self._credentials else None
        return found or Credentials()

    def _cached_authorization(
        self, host: RegistryHost, scope: str, creds: Credentials
    ) -> str | None:
        """The Authorization a request to ``host`` can carry up front, saving a 401 round trip."""
        if creds.registry_token:
            return f"Bearer {creds.registry_token}"
        with self._lock:
            challenge = self._challenges.get(host.url)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_authorization(creds.username, creds.password) if creds.username else None
        return self._authorize(host, challenge, scope, creds, refresh=False)

    def _authorize(
        self,
        host: RegistryHost,
        challenge: Challenge,
        scope: str,
        creds: Credentials,
        *,
        refresh: bool,
    ) -> str:
        if creds.registry_token:
            raise RegistryAuthError(f"{host.url} refused the registry token")
        if challenge.scheme == "basic":
            if not creds.username:
                raise RegistryAuthError(f"{host.url} requires credentials")
            return basic_authorization(creds.username, creds.password)
        key = TokenKey(challenge.realm, challenge.service, scope, creds.identity)
        if refresh:
            self._tokens.invalidate(key)
        token = self._tokens.get(key, self._clock())
        if token is None:
            token = self._fetch_token(host, challenge, scope, creds, key)
        return f"Bearer {token}"

    def _fetch_token(
        self,
        host: RegistryHost,
        challenge: Challenge,
        scope: str,
        creds: Credentials,
        key: TokenKey,
    ) -> str:
        realm = httpx.URL(challenge.realm)
        if realm.scheme not in ("http", "https"):
            raise RegistryAuthError(f"{host.url} named an unusable token realm {challenge.realm!r}")
        client = self._client(realm.scheme, host.skip_verify)
        params = token_request_params(challenge, scope)
        if creds.identity_token:
            # OAuth2 refresh-token grant, as Docker's identity tokens require.
            form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", creds.identity_token),
                ("client_id", _OAUTH_CLIENT),
                *params,
            ]
            request = client.build_request("POST", realm, data=dict(_join_scopes(form)))
        else:
            headers = {}
            if creds.username:
                headers["Authorization"] = basic_authorization(creds.username, creds.password)
            request = client.build_request("GET", realm, params=tuple(params), headers=headers)
        response = self._transmit(client, request, host)
        with contextlib.closing(response):
            if response.status_code != httpx.codes.OK:
                raise RegistryAuthError(
                    f"token server {challenge.realm} answered HTTP {response.status_code} "
                    f"for {scope}{_error_detail(response)}"
                )
            body = _read_limited(response, _MAX_TOKEN_BODY)
        token = parse_token_response(body, self._clock())
        self._tokens.put(key, token, self._clock())
        return token.token

    def _client(self, scheme: str, skip_verify: bool) -> httpx.Client:
        with self._lock:
            client = self._clients.get((scheme, skip_verify))
            if client is None:
                client = httpx.Client(
                    transport=self._transport,
                    verify=not skip_verify,
                    trust_env=False,
                    timeout=self._timeout,
                    headers={"User-Agent": _USER_AGENT},
                )
                self._clients[(scheme, skip_verify)] = client
            return client


# -- pure helpers ------------------------------------------------------------------------------


def _check_repository(repository: str) -> None:
    if len(repository) > 255 or not _REPOSITORY_RE.fullmatch(repository):
        raise InvalidReferenceError(f"invalid repository name {repository!r}")


def _check_reference(reference: str) -> bool:
    """True for a digest, False for a tag; anything else is invalid."""
    if ":" in reference:
        _check_digest(reference)
        return True
    if not _TAG_RE.fullmatch(reference):
        raise InvalidReferenceError(f"invalid tag {reference!r}")
    return False


def _check_digest(digest: str) -> None:
    algorithm, _, hexpart = digest.partition(":")
    length = _DIGEST_HEX.get(algorithm)
    if length is None or len(hexpart) != length or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise InvalidReferenceError(f"invalid or unsupported digest {digest!r}")


def _hasher(digest: str) -> hashlib._Hash:
    return hashlib.new(digest.partition(":")[0])


def _digest_of(body: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def _verify_manifest(body: bytes, reference: str, header: str | None) -> str:
    """The manifest's digest, checked against the reference and Docker-Content-Digest."""
    digest = _digest_of(body, "sha256")
    for claimed, source in ((reference, "reference"), (header, "Docker-Content-Digest")):
        if claimed is None or ":" not in claimed:
            continue
        try:
            _check_digest(claimed)
        except InvalidReferenceError:
            continue  # a header in an algorithm we do not know proves nothing either way
        actual = _digest_of(body, claimed.partition(":")[0])
        if actual != claimed:
            raise BlobMismatchError(f"manifest has digest {actual}; its {source} says {claimed}")
        if source == "reference":
            digest = claimed
    return digest


def _media_type(content_type: str, body: bytes) -> str:
    """The manifest's media type: the Content-Type, else the body's ``mediaType`` field."""
    declared = content_type.partition(";")[0].strip().lower()
    if declared and declared not in ("application/json", "text/plain", "application/octet-stream"):
        return declared
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return declared
    field_value = doc.get("mediaType") if isinstance(doc, dict) else None
    return field_value if isinstance(field_value, str) else declared


def _request_headers(
    host: RegistryHost, url: str, extra: dict[str, str] | None, authorization: str | None
) -> httpx.Headers:
    headers = httpx.Headers(list(host.headers))
    headers.update(extra or {})
    # Credentials go only to the host they belong to, not to an upload location elsewhere.
    if authorization and _same_origin(httpx.URL(url), httpx.URL(host.url)):
        headers["Authorization"] = authorization
    return headers


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _upload_content(
    data: bytes | str | os.PathLike[str],
) -> tuple[int, Callable[[], bytes | Iterator[bytes]]]:
    if isinstance(data, bytes):
        return len(data), lambda: data

    def chunks() -> Iterator[bytes]:
        with open(data, "rb") as f:
            while chunk := f.read(_CHUNK_SIZE):
                yield chunk

    return os.path.getsize(data), chunks


def _join_scopes(form: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # OAuth2 wants one space-separated scope parameter.
    scopes = " ".join(value for name, value in form if name == "scope")
    rest = [(name, value) for name, value in form if name != "scope"]
    return [*rest, ("scope", scopes)] if scopes else rest


def _raise_for_status(response: httpx.Response, host: RegistryHost, what: str) -> None:
    status = response.status_code
    if httpx.codes.is_success(status):
        return
    detail = _error_detail(response)
    if status == httpx.codes.NOT_FOUND:
        raise ImageNotFoundError(f"{what} not found at {host.url}{detail}")
    if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise RegistryAuthError(f"{host.url} denied access to {what}{detail}")
    raise RegistryError(f"{host.url} answered HTTP {status} for {what}{detail}")


def _error_detail(response: httpx.Response) -> str:
    """``": CODE: message; ..."`` from a distribution error body, or its text, or nothing."""
    try:
        body = _read_limited(response, _MAX_ERROR_BODY)
    except (httpx.HTTPError, RegistryError):
        return ""
    try:
        doc = json.loads(body)
        errors = doc["errors"]
        text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip()[:200]
    return f": {text}" if text else ""


def _read_limited(response: httpx.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            raise RegistryError(f"{response.url} sent more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
