"""Pagination tokens: round trips, stability under deletion, refusal of junk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_hostpath.errors import Aborted, InvalidArgument
from csi_hostpath.pagination import decode_token, encode_token, paginate

ids = st.lists(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True), unique=True)


def items(keys: list[str]) -> list[tuple[str, str]]:
    return [(k, k.upper()) for k in sorted(keys)]


@given(ids, st.integers(min_value=1, max_value=7))
def test_pages_concatenate_to_the_whole_list(keys: list[str], size: int) -> None:
    seen: list[str] = []
    token = ""
    for _ in range(len(keys) + 2):
        page, token = paginate("volumes", items(keys), token, size)
        assert len(page) <= size
        seen.extend(page)
        if not token:
            break
    assert seen == [k.upper() for k in sorted(keys)]


def test_deleting_the_cursor_entry_keeps_the_token_valid() -> None:
    keys = ["a", "b", "c", "d"]
    page, token = paginate("volumes", items(keys), "", 2)
    assert page == ["A", "B"]
    rest, _ = paginate("volumes", items(["a", "c", "d", "e"]), token, 0)
    assert rest == ["C", "D", "E"]


@pytest.mark.parametrize(
    "token",
    [
        "invalid-token",
        "c1.",
        "c1.!!!",
        encode_token("snapshots", "a"),
        "c1." + "A" * 600,
        encode_token("volumes", "../etc"),
    ],
)
def test_bad_tokens_abort(token: str) -> None:
    with pytest.raises(Aborted):
        paginate("volumes", items(["a"]), token, 0)


def test_round_trip() -> None:
    assert decode_token("volumes", encode_token("volumes", "abc")) == "abc"


def test_negative_max_entries() -> None:
    with pytest.raises(InvalidArgument):
        paginate("volumes", [], "", -1)
