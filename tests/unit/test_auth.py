from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from images.auth import (
    BearerToken,
    Challenge,
    Credentials,
    TokenCache,
    TokenKey,
    basic_authorization,
    choose_challenge,
    credentials_from_auth_config,
    credentials_from_auth_field,
    parse_token_response,
    parse_www_authenticate,
    repository_scope,
    token_request_params,
)
from images.errors import RegistryAuthError

DOCKER_HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/busybox:pull"'
)


def test_parse_bearer_challenge() -> None:
    (challenge,) = parse_www_authenticate(DOCKER_HUB)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scope == "repository:library/busybox:pull"


def test_parse_several_challenges_with_commas_in_quotes() -> None:
    value = 'Basic realm="a, b", BEARER realm=https://t/token , error="insufficient_scope"'
    basic, bearer = parse_www_authenticate(value)
    assert basic == Challenge("basic", {"realm": "a, b"})
    assert bearer == Challenge(
        "bearer", {"realm": "https://t/token", "error": "insufficient_scope"}
    )


def test_parse_escapes_and_bare_scheme() -> None:
    assert parse_www_authenticate(r'Basic realm="say \"hi\""') == [
        Challenge("basic", {"realm": 'say "hi"'})
    ]
    assert parse_www_authenticate("Basic") == [Challenge("basic", {})]
    assert parse_www_authenticate("") == []


@given(st.text(max_size=80))
def test_parse_never_fails(value: str) -> None:
    for challenge in parse_www_authenticate(value):
        assert challenge.scheme == challenge.scheme.lower()


def test_choose_prefers_bearer_with_realm() -> None:
    basic = Challenge("basic", {})
    bearer = Challenge("bearer", {"realm": "https://t"})
    assert choose_challenge([basic, bearer]) is bearer
    assert choose_challenge([basic, Challenge("bearer", {})]) is basic
    assert choose_challenge([Challenge("negotiate", {})]) is None


def test_token_request_params_add_our_scope() -> None:
    (challenge,) = parse_www_authenticate(DOCKER_HUB)
    scope = repository_scope("library/busybox")
    assert scope == "repository:library/busybox:pull"
    assert token_request_params(challenge, scope) == [
        ("service", "registry.docker.io"),
        ("scope", "repository:library/busybox:pull"),
    ]
    push = repository_scope("library/busybox", ("pull", "push"))
    assert token_request_params(challenge, push) == [
        ("service", "registry.docker.io"),
        ("scope", "repository:library/busybox:pull,push"),
        ("scope", "repository:library/busybox:pull"),
    ]
    assert token_request_params(Challenge("bearer", {"realm": "r"}), "s") == [("scope", "s")]


@pytest.mark.parametrize(
    ("doc", "token", "expires_at"),
    [
        ({"token": "t", "expires_in": 300}, "t", 1300.0),
        ({"access_token": "a"}, "a", 1060.0),
        ({"token": "t", "expires_in": 5}, "t", 1060.0),  # never below the spec's 60 s
        ({"token": "t", "expires_in": "soon"}, "t", 1060.0),
    ],
)
def test_parse_token_response(doc: object, token: str, expires_at: float) -> None:
    assert parse_token_response(json.dumps(doc).encode(), now=1000.0) == BearerToken(
        token, expires_at
    )


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"token": ""}'])
def test_parse_token_response_rejects(body: bytes) -> None:
    with pytest.raises(RegistryAuthError):
        parse_token_response(body, now=0.0)


def test_credentials_from_auth_field() -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    assert credentials_from_auth_field(auth) == Credentials("user", "pa:ss")
    with pytest.raises(RegistryAuthError):
        credentials_from_auth_field("%%%")
    with pytest.raises(RegistryAuthError):
        credentials_from_auth_field(base64.b64encode(b"nocolon").decode())


def test_credentials_from_auth_config_prefers_auth() -> None:
    auth = base64.b64encode(b"a:b").decode()
    creds = credentials_from_auth_config(username="x", password="y", auth=auth)
    assert (creds.username, creds.password) == ("a", "b")
    assert credentials_from_auth_config(registry_token="rt").registry_token == "rt"


def test_credentials_identity_and_repr_hide_secrets() -> None:
    assert Credentials().anonymous
    assert Credentials().identity == ""
    one, two = Credentials("u", "secret1"), Credentials("u", "secret2")
    assert one.identity != two.identity
    assert "secret1" not in repr(one)
    assert "secret1" not in one.identity


def test_basic_authorization() -> None:
    assert basic_authorization("user", "pass") == "Basic dXNlcjpwYXNz"


def test_token_cache_expires_with_margin() -> None:
    cache = TokenCache(margin=10.0)
    key = TokenKey("https://t", "svc", "repository:a:pull")
    cache.put(key, BearerToken("tok", expires_at=100.0), now=0.0)
    assert cache.get(key, now=89.0) == "tok"
    assert cache.get(TokenKey("https://t", "svc", "repository:a:pull", "someone"), 0.0) is None
    assert cache.get(key, now=90.0) is None
    assert len(cache) == 0


def test_token_cache_invalidate_and_prune() -> None:
    cache = TokenCache()
    old, new = TokenKey("r", "s", "old"), TokenKey("r", "s", "new")
    cache.put(old, BearerToken("o", expires_at=10.0), now=0.0)
    cache.invalidate(old)
    assert cache.get(old, now=0.0) is None
    cache.put(old, BearerToken("o", expires_at=10.0), now=0.0)
    cache.put(new, BearerToken("n", expires_at=100.0), now=50.0)  # prunes the expired one
    assert len(cache) == 1
