"""Registry authentication, the pure part: challenges, token requests and responses, a cache.

A registry answers an anonymous request with 401 and a ``WWW-Authenticate`` header. For ``Basic``
the client resends with the user's credentials; for ``Bearer`` it asks the ``realm`` (a token
server) for a token valid for a ``service`` and a ``scope`` (``repository:<name>:pull``), then
resends with that token. The HTTP exchanges live in ``images/registry.py``; everything here is
bytes and strings in, values out, with the clock passed in as ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from images.errors import RegistryAuthError

__all__ = [
    "BearerToken",
    "Challenge",
    "Credentials",
    "TokenCache",
    "TokenKey",
    "basic_authorization",
    "choose_challenge",
    "credentials_from_auth_config",
    "credentials_from_auth_field",
    "parse_token_response",
    "parse_www_authenticate",
    "repository_scope",
    "token_request_params",
]

# The token specification says a token without expires_in lives 60 seconds, and no less.
_MIN_TOKEN_LIFETIME = 60.0
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")  # RFC 9110 tchar


@dataclass(frozen=True)
class Credentials:
    """What CRI's ``AuthConfig`` carries for one registry.

    ``identity_token`` is an OAuth2 refresh token exchanged at the token server;
    ``registry_token`` is a bearer token sent to the registry as it is.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    @property
    def identity(self) -> str:
        """A stable, non-secret key for these credentials (tokens are cached per identity)."""
        if self.anonymous:
            return ""
        material = "\0".join(
            (self.username, self.password, self.identity_token, self.registry_token)
        )
        return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lower-case."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")


@dataclass(frozen=True)
class BearerToken:
    token: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True)
class TokenKey:
    """Tokens are cached per token server, service, scope and the identity that obtained them,
    so a pull without credentials never reuses a token obtained with someone else's."""

    realm: str
    service: str
    scope: str
    identity: str = ""


def parse_www_authenticate(value: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 7235; token68 forms are skipped)."""
    challenges: list[Challenge] = []
    scheme = ""
    params: dict[str, str] = {}
    pos = 0
    while True:
        pos = _skip(value, pos, " \t,")
        if pos >= len(value):
            break
        word, pos = _read_token(value, pos)
        if not word:  # a stray character: skip it rather than loop forever
            pos += 1
            continue
        after = _skip(value, pos, " \t")
        if after < len(value) and value[after] == "=" and scheme:
            param, pos = _read_param_value(value, _skip(value, after + 1, " \t"))
            params[word.lower()] = param
        elif after < len(value) and value[after] == "=":
            pos = after + 1  # a parameter before any scheme: malformed, ignore it
        else:
            if scheme:
                challenges.append(Challenge(scheme, params))
            scheme, params = word.lower(), {}
    if scheme:
        challenges.append(Challenge(scheme, params))
    return challenges


def choose_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer (with a realm) before Basic; None if neither is offered."""
    by_scheme = {c.scheme: c for c in challenges}
    bearer = by_scheme.get("bearer")
    if bearer is not None and bearer.realm:
        return bearer
    return by_scheme.get("basic")


def repository_scope(repository: str, actions: Iterable[str] = ("pull",)) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def token_request_params(challenge: Challenge, scope: str) -> list[tuple[str, str]]:
    """Query (or form) parameters for a token request answering ``challenge`` for ``scope``.

    The scope the registry named in its challenge is requested too: it knows best what the
    request needs (a cross-repository mount, say), and asking for both costs nothing.
    """
    params: list[tuple[str, str]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    for wanted in dict.fromkeys(s for s in (scope, challenge.scope) if s):
        params.append(("scope", wanted))
    return params


def parse_token_response(body: bytes, now: float) -> BearerToken:
    """The token in a token server's JSON answer, expiring ``expires_in`` seconds after ``now``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryAuthError(f"token server answered with invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RegistryAuthError("token server answered with a non-object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryAuthError("token server answered without a token")
    expires_in = doc.get("expires_in", _MIN_TOKEN_LIFETIME)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        expires_in = _MIN_TOKEN_LIFETIME
    return BearerToken(token=token, expires_at=now + max(float(expires_in), _MIN_TOKEN_LIFETIME))


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP Basic."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {encoded}"


def credentials_from_auth_field(auth: str) -> Credentials:
    """Credentials from CRI's ``auth`` field: base64 of ``username:password``."""
    try:
        decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RegistryAuthError("auth is not base64 of 'username:password'") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise RegistryAuthError("auth is not base64 of 'username:password'")
    return Credentials(username=username, password=password)


def credentials_from_auth_config(
    *,
    username: str = "",
    password: str = "",
    auth: str = "",
    identity_token: str = "",
    registry_token: str = "",
) -> Credentials:
    """Credentials from the fields of a CRI ``AuthConfig``; ``auth`` is used when set."""
    if auth:
        decoded = credentials_from_auth_field(auth)
        username, password = decoded.username, decoded.password
    return Credentials(username, password, identity_token, registry_token)


class TokenCache:
    """Bearer tokens by ``TokenKey`` until they expire; safe to share between threads."""

    def __init__(self, margin: float = 10.0) -> None:
        # A token about to expire would die in flight on a slow blob; renew it a little early.
        self._margin = margin
        self._tokens: dict[TokenKey, BearerToken] = {}
        self._lock = threading.Lock()

    def get(self, key: TokenKey, now: float) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None:
                return None
            if now >= entry.expires_at - self._margin:
                del self._tokens[key]
                return None
            return entry.token

    def put(self, key: TokenKey, token: BearerToken, now: float) -> None:
        with self._lock:
            expired = [k for k, t in self._tokens.items() if now >= t.expires_at]
            for k in expired:
                del self._tokens[k]
            self._tokens[key] = token

    def invalidate(self, key: TokenKey) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _read_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def _read_param_value(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] != '"':
        end = pos
        while end < len(text) and text[end] not in ", \t":
            end += 1
        return text[pos:end], end
    chars: list[str] = []
    pos += 1
    while pos < len(text) and text[pos] != '"':
        if text[pos] == "\\" and pos + 1 < len(text):
            pos += 1
        chars.append(text[pos])
        pos += 1
    return "".join(chars), pos + 1
