"""An in-memory OCI distribution registry, a token server and a network of them, for httpx.

``FakeNetwork`` is the handler of an ``httpx.MockTransport``: it routes each request by
``host[:port]`` to a registered handler and refuses a connection to any other host, so no test
ever opens a socket. ``FakeRegistry`` serves manifests, blobs and monolithic uploads, optionally
behind Bearer (with its own token server) or Basic auth, optionally redirecting blob downloads to
a storage host, and fails requests on demand (``fail``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx

__all__ = ["OCI_INDEX", "OCI_MANIFEST", "FakeNetwork", "FakeRegistry", "sha256_digest"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

Handler = Callable[[httpx.Request], httpx.Response]

_UPLOAD_RE = re.compile(r"(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)")
_CONTENT_RE = re.compile(r"(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)")


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return httpx.Response(
        status, content=body, headers={"Content-Type": "application/json", **headers}
    )


def _streamed(data: bytes) -> httpx.Response:
    # Response(content=...) is loaded eagerly by httpx; a stream behaves like a real socket.
    return httpx.Response(
        200, stream=httpx.ByteStream(data), headers={"Content-Length": str(len(data))}
    )


@dataclass
class _Failure:
    path_contains: str
    method: str | None
    status: int | None
    exception: type[Exception] | None
    times: int


@dataclass
class FakeRegistry:
    """One registry. ``auth`` is None, ``"bearer"`` or ``"basic"``.

    With ``users`` set, Bearer tokens and Basic access require one of those user/password pairs,
    except that ``anonymous_pull`` lets anyone pull.
    """

    authority: str = "registry.test"
    auth: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    anonymous_pull: bool = True
    token_authority: str = "auth.test"
    service: str = "fake-registry"
    prefix: str = "/v2"
    redirect_blobs_to: str | None = None  # "host[:port]" of a storage host serving /storage/<dg>
    token_lifetime: int = 300

    manifests: dict[tuple[str, str], tuple[str, bytes, str]] = field(default_factory=dict)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    uploads: dict[str, tuple[str, bytearray]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    tokens: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # -- content -------------------------------------------------------------------------------

    def add_blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.blobs[(repository, digest)] = data
        return digest

    def put_raw_blob(self, repository: str, digest: str, data: bytes) -> None:
        """Serve ``data`` under ``digest`` whether or not it matches (corruption, truncation)."""
        self.blobs[(repository, digest)] = data

    def add_manifest(
        self, repository: str, tag: str | None, body: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        digest = sha256_digest(body)
        self.put_raw_manifest(repository, digest, body, media_type, digest)
        if tag is not None:
            self.put_raw_manifest(repository, tag, body, media_type, digest)
        return digest

    def put_raw_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str, header_digest: str
    ) -> None:
        """Serve ``body`` under ``reference`` with any ``Docker-Content-Digest`` ("" for none)."""
        self.manifests[(repository, reference)] = (media_type, body, header_digest)

    def fail(
        self,
        path_contains: str = "",
        *,
        status: int | None = None,
        exception: type[Exception] | None = None,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` matching requests answer ``status`` or raise ``exception``."""
        self.failures.append(_Failure(path_contains, method, status, exception, times))

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method is None or r.method == method]

    # -- registry ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        injected = self._injected(request)
        if injected is not None:
            return injected
        path = request.url.path
        if path.startswith("/storage/"):
            return self._storage(request, path.removeprefix("/storage/"))
        if not path.startswith(self.prefix + "/"):
            return _error(404, "NOT_FOUND", f"no route {path}")
        rest = path[len(self.prefix) + 1 :]
        upload = _UPLOAD_RE.fullmatch(rest)
        if upload:
            return self._authorized(request, upload["repo"], "push") or self._upload(
                request, upload["repo"], upload["id"]
            )
        content = _CONTENT_RE.fullmatch(rest)
        if content is None:
            return _error(404, "NOT_FOUND", f"no route {path}")
        action = "pull" if request.method in ("GET", "HEAD") else "push"
        denied = self._authorized(request, content["repo"], action)
        if denied is not None:
            return denied
        if content["kind"] == "manifests":
            return self._manifest(request, content["repo"], content["ref"])
        return self._blob(request, content["repo"], content["ref"])

    def _injected(self, request: httpx.Request) -> httpx.Response | None:
        for failure in self.failures:
            if failure.times <= 0 or failure.path_contains not in request.url.path:
                continue
            if failure.method is not None and failure.method != request.method:
                continue
            failure.times -= 1
            if failure.exception is not None:
                raise failure.exception("injected failure")
            return _error(failure.status or 500, "UNKNOWN", "injected failure")
        return None

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            body = request.read()
            media_type = request.headers.get("Content-Type", "")
            digest = sha256_digest(body)
            self.put_raw_manifest(repo, digest, body, media_type, digest)
            if not ref.startswith("sha256:"):
                self.put_raw_manifest(repo, ref, body, media_type, digest)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((repo, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo}:{ref}")
        media_type, body, header_digest = found
        headers = {"Content-Type": media_type, "Content-Length": str(len(body))}
        if header_digest:
            headers["Docker-Content-Digest"] = header_digest
        return httpx.Response(
            200, headers=headers, content=b"" if request.method == "HEAD" else body
        )

    def _blob(self, request: httpx.Request, repo: str, digest: str) -> httpx.Response:
        data = self.blobs.get((repo, digest))
        if data is None:
            return _error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        if self.redirect_blobs_to is not None:
            location = f"https://{self.redirect_blobs_to}/storage/{repo}@{digest}"
            return httpx.Response(307, headers={"Location": location})
        return _streamed(data)

    def _storage(self, request: httpx.Request, key: str) -> httpx.Response:
        # Real storage (S3, GCS) knows nothing of registry tokens; it must not be sent one.
        if "Authorization" in request.headers:
            return httpx.Response(400, content=b"unexpected Authorization header")
        repo, _, digest = key.partition("@")
        data = self.blobs.get((repo, digest))
        return httpx.Response(404) if data is None else _streamed(data)

    def _upload(self, request: httpx.Request, repo: str, upload_id: str) -> httpx.Response:
        if request.method == "POST" and not upload_id:
            new_id = f"u{next(self._ids)}"
            self.uploads[new_id] = (repo, bytearray())
            location = f"{self.prefix}/{repo}/blobs/uploads/{new_id}?_state=opaque"
            return httpx.Response(202, headers={"Location": location})
        if request.method != "PUT" or upload_id not in self.uploads:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
        _, buffer = self.uploads.pop(upload_id)
        buffer.extend(request.read())
        digest = request.url.params.get("digest", "")
        if sha256_digest(bytes(buffer)) != digest:
            return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        self.blobs[(repo, digest)] = bytes(buffer)
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})

    # -- authentication ------------------------------------------------------------------------

    def _authorized(self, request: httpx.Request, repo: str, action: str) -> httpx.Response | None:
        """None when the request may proceed, else the 401 to answer it with."""
        if self.auth is None:
            return None
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            if self._basic_ok(header):
                return None
            return _error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                **{"WWW-Authenticate": f'Basic realm="{self.service}"'},
            )
        scheme, _, token = header.partition(" ")
        if scheme == "Bearer" and (repo, action) in self.tokens.get(token, set()):
            return None
        challenge = (
            f'Bearer realm="https://{self.token_authority}/token",service="{self.service}",'
            f'scope="repository:{repo}:{action}"'
        )
        return _error(
            401, "UNAUTHORIZED", "authentication required", **{"WWW-Authenticate": challenge}
        )

    def _basic_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user in self.users and self.users[user] == password

    def handle_token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        injected = self._injected(request)
        if injected is not None:
            return injected
        if request.method == "POST":
            form = dict(parse_qsl(request.read().decode()))
            scopes = form.get("scope", "").split()
            authenticated = form.get("refresh_token") == "refresh-ok"
        else:
            scopes = request.url.params.get_list("scope")
            authenticated = self._basic_ok(request.headers.get("Authorization", ""))
        if self.users and "Authorization" in request.headers and not authenticated:
            return _error(401, "UNAUTHORIZED", "bad credentials")
        granted = self._grant(scopes, authenticated or not self.users)
        token = f"token-{next(self._ids)}"
        self.tokens[token] = granted
        return httpx.Response(200, json={"token": token, "expires_in": self.token_lifetime})

    def _grant(self, scopes: list[str], authenticated: bool) -> set[tuple[str, str]]:
        granted: set[tuple[str, str]] = set()
        for scope in scopes:
            kind, repo, actions = [*scope.split(":"), "", "", ""][:3]
            if kind != "repository":
                continue
            for action in actions.split(","):
                if authenticated or (action == "pull" and self.anonymous_pull):
                    granted.add((repo, action))
        return granted


@dataclass
class FakeNetwork:
    """Routes requests by ``host[:port]``; any host not registered refuses the connection."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    log: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        authority = request.url.netloc.decode("ascii")
        handler = self.handlers.get(authority)
        if handler is None:
            raise httpx.ConnectError(f"connection refused by {authority}", request=request)
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def add_registry(self, registry: FakeRegistry) -> FakeRegistry:
        self.handlers[registry.authority] = registry.handle
        if registry.auth == "bearer":
            self.handlers[registry.token_authority] = registry.handle_token
        if registry.redirect_blobs_to is not None:
            self.handlers[registry.redirect_blobs_to] = registry.handle
        return registry

    def authorities(self) -> list[str]:
        return [r.url.netloc.decode("ascii") for r in self.log]
