from __future__ import annotations

from typing import Any

import pytest

from cri_shim.spec import SpecError
from cri_shim.spec.users import parse_group, parse_passwd, resolve_user
from tests.unit.spec._factories import GROUP, PASSWD


def _resolve(**over: Any) -> Any:
    args: dict[str, Any] = {
        "run_as_user": None,
        "run_as_username": "",
        "run_as_group": None,
        "image_user": "",
        "supplemental_groups": [],
        "strict_groups": False,
        "passwd": PASSWD,
        "group": GROUP,
    }
    args.update(over)
    return resolve_user(**args)


def test_parse_passwd_skips_malformed_lines() -> None:
    text = "# comment\n\nroot:x:0:0:root:/root:/bin/sh\nbroken\nbad:x:uid:0::/:\nshort:x:5:5\n"
    entries = parse_passwd(text)
    assert [(e.name, e.uid, e.gid) for e in entries] == [("root", 0, 0), ("short", 5, 5)]
    assert entries[0].home == "/root"
    assert entries[1].home == ""


def test_parse_group_members() -> None:
    groups = {g.name: g for g in parse_group(GROUP + "bad\nx:x:notanumber:\n")}
    assert groups["other"].members == ("someone", "default-user")
    assert groups["root"].members == ()
    assert "x" not in groups


def test_default_is_root_with_image_groups() -> None:
    user = _resolve()
    assert (user.uid, user.gid, user.username) == (0, 0, "root")
    # root is a member of wheel in the image's /etc/group
    assert user.additional_gids == (0, 10)


def test_no_passwd_file_root_still_works() -> None:
    user = _resolve(passwd=None, group=None)
    assert (user.uid, user.gid, user.additional_gids, user.username) == (0, 0, (0,), "")


def test_run_as_user_with_passwd_entry_takes_its_gid() -> None:
    user = _resolve(run_as_user=65534)
    assert (user.uid, user.gid, user.username) == (65534, 65534, "nobody")


def test_run_as_user_unknown_uid_gets_gid_0() -> None:
    user = _resolve(run_as_user=1001)
    assert (user.uid, user.gid, user.additional_gids, user.username) == (1001, 0, (0,), "")


def test_run_as_user_and_group() -> None:
    user = _resolve(run_as_user=1001, run_as_group=1002)
    assert (user.uid, user.gid, user.additional_gids) == (1001, 1002, (1002,))


def test_run_as_user_overrides_image_user_and_its_group() -> None:
    user = _resolve(run_as_user=1, image_user="nobody:wheel")
    assert (user.uid, user.gid) == (1, 1)


def test_run_as_username() -> None:
    user = _resolve(run_as_username="nobody")
    assert (user.uid, user.gid, user.username) == (65534, 65534, "nobody")


def test_run_as_username_with_group() -> None:
    user = _resolve(run_as_username="nobody", run_as_group=7)
    assert (user.uid, user.gid) == (65534, 7)


def test_run_as_username_unknown_is_an_error() -> None:
    with pytest.raises(SpecError, match="unable to find user 'ghost'"):
        _resolve(run_as_username="ghost")


def test_run_as_username_without_passwd_file() -> None:
    with pytest.raises(SpecError, match="no /etc/passwd"):
        _resolve(run_as_username="nobody", passwd=None)


def test_group_without_user_is_an_error() -> None:
    with pytest.raises(SpecError, match="run_as_group requires"):
        _resolve(run_as_group=1002)


def test_user_and_username_together_is_an_error() -> None:
    with pytest.raises(SpecError, match="cannot both be set"):
        _resolve(run_as_user=1, run_as_username="nobody")


@pytest.mark.parametrize("value", [-1, 2**32 - 1, 2**40])
def test_out_of_range_uid(value: int) -> None:
    with pytest.raises(SpecError, match="out of range"):
        _resolve(run_as_user=value)


def test_out_of_range_gid_and_supplemental() -> None:
    with pytest.raises(SpecError, match="run_as_group"):
        _resolve(run_as_user=1, run_as_group=-5)
    with pytest.raises(SpecError, match="supplemental group"):
        _resolve(supplemental_groups=[-1])


@pytest.mark.parametrize(
    ("image_user", "expected"),
    [
        ("", (0, 0)),
        ("nobody", (65534, 65534)),
        ("1000", (1000, 1000)),
        ("4242", (4242, 0)),
        ("nobody:wheel", (65534, 10)),
        ("nobody:99", (65534, 99)),
        ("4242:4343", (4242, 4343)),
        ("default-user:nogroup", (1000, 65534)),
    ],
)
def test_image_user_forms(image_user: str, expected: tuple[int, int]) -> None:
    user = _resolve(image_user=image_user)
    assert (user.uid, user.gid) == expected


def test_image_user_numeric_needs_no_files() -> None:
    user = _resolve(image_user="4242:4343", passwd=None, group=None)
    assert (user.uid, user.gid, user.additional_gids) == (4242, 4343, (4343,))


def test_image_user_unknown_name() -> None:
    with pytest.raises(SpecError, match="unable to find user 'ghost'"):
        _resolve(image_user="ghost")


def test_image_group_unknown_name() -> None:
    with pytest.raises(SpecError, match="unable to find group 'ghosts'"):
        _resolve(image_user="nobody:ghosts")


def test_image_group_name_without_group_file() -> None:
    with pytest.raises(SpecError, match="no /etc/group"):
        _resolve(image_user="nobody:wheel", group=None)


def test_run_as_group_overrides_image_group() -> None:
    user = _resolve(run_as_username="nobody", run_as_group=3, image_user="root:wheel")
    assert user.gid == 3


def test_supplemental_groups_policy_merge_matches_critest() -> None:
    # critest: image user default-user(1000) is in group-defined-in-image(50000); run as 1000
    # with supplemental 1234 -> groups 1000 1234 50000 (order does not matter to the kernel).
    user = _resolve(run_as_user=1000, supplemental_groups=[1234])
    assert (user.uid, user.gid) == (1000, 1000)
    assert sorted(user.additional_gids) == [1000, 1234, 50000, 50001]
    assert user.additional_gids[0] == 1000


def test_supplemental_groups_policy_strict_leaves_out_image_groups() -> None:
    user = _resolve(run_as_user=1000, supplemental_groups=[1234], strict_groups=True)
    assert user.additional_gids == (1000, 1234)


def test_supplemental_groups_are_deduplicated_in_order() -> None:
    user = _resolve(run_as_user=1001, supplemental_groups=[1234, 5678, 1234, 0])
    assert user.additional_gids == (0, 1234, 5678)


def test_no_image_groups_for_unnamed_uid() -> None:
    user = _resolve(run_as_user=4242, supplemental_groups=[7])
    assert user.additional_gids == (0, 7)
