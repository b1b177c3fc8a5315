"""Streaming tokens: unguessable, single use, expiring, bounded."""

from __future__ import annotations

import pytest

from cri_shim.streaming.tokens import TokenCache, TokenCacheFullError


def test_a_token_is_redeemed_once() -> None:
    cache: TokenCache[str] = TokenCache(ttl=60)
    token = cache.put("req", now=0)
    assert len(token) >= 32
    assert cache.consume(token, now=1) == "req"
    assert cache.consume(token, now=1) is None
    assert cache.consume("made-up", now=1) is None


def test_tokens_expire() -> None:
    cache: TokenCache[str] = TokenCache(ttl=60)
    old = cache.put("old", now=0)
    new = cache.put("new", now=30)
    assert cache.consume(old, now=60) is None
    assert len(cache) == 1
    assert cache.consume(new, now=89) == "new"


def test_tokens_differ() -> None:
    cache: TokenCache[int] = TokenCache()
    assert len({cache.put(i, now=0) for i in range(100)}) == 100


def test_outstanding_tokens_are_bounded() -> None:
    cache: TokenCache[int] = TokenCache(ttl=10, max_size=2)
    cache.put(1, now=0)
    cache.put(2, now=0)
    with pytest.raises(TokenCacheFullError):
        cache.put(3, now=5)
    cache.put(3, now=10)  # the first two expired
    assert len(cache) == 1
