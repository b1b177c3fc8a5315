"""Pagination for ListVolumes and ListSnapshots (pure).

A token is a cursor, not an index: it names the last key returned, and the next page starts
after that key in sorted order. Deleting the entry a token names therefore cannot shift or
break later pages, and entries created meanwhile appear if they sort after the cursor. Tokens
carry a prefix and a kind so that a token of the other list, or junk, is refused (the spec's
ABORTED) instead of being misread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from csi_hostpath.errors import Aborted, InvalidArgument
from csi_hostpath.paths import is_valid_id

__all__ = ["decode_token", "encode_token", "paginate"]

T = TypeVar("T")
_PREFIX = "c1."


def encode_token(kind: str, last_key: str) -> str:
    raw = f"{kind}\0{last_key}".encode()
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> str:
    if not token.startswith(_PREFIX) or len(token) > 512:
        raise Aborted(f"invalid starting_token {token[:64]!r}")
    body = token[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise Aborted(f"invalid starting_token {token[:64]!r}") from exc
    token_kind, sep, key = raw.partition("\0")
    if not sep or token_kind != kind or not is_valid_id(key):
        raise Aborted(f"invalid starting_token {token[:64]!r}")
    return key


def paginate(
    kind: str, items: Sequence[tuple[str, T]], starting_token: str, max_entries: int
) -> tuple[list[T], str]:
    """``items`` are (key, value) pairs sorted by key. Returns one page and the next token
    ("" when the page is the last)."""
    if max_entries < 0:
        raise InvalidArgument("max_entries must not be negative")
    start = decode_token(kind, starting_token) if starting_token else None
    rest = [(k, v) for k, v in items if start is None or k > start]
    if max_entries == 0 or len(rest) <= max_entries:
        return [v for _, v in rest], ""
    page = rest[:max_entries]
    return [v for _, v in page], encode_token(kind, page[-1][0])
