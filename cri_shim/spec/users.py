"""Who the container's first process runs as: uid, gid and supplementary groups.

Resolved against the image's own /etc/passwd and /etc/group, whose contents the shell reads from
the container's root filesystem and passes in as text (None when the file does not exist).
Precedence, as the CRI and the kubelet define it:

- `run_as_user` (a uid) or `run_as_username` (a name that must exist in the image), never both;
  otherwise the image's `User` ("name", "uid", "name:group", "uid:gid"); otherwise root.
- The primary gid is `run_as_group` when given (only allowed together with a user), else the
  group part of the image's `User` when that decided the user, else the user's passwd entry,
  else 0.
- Supplementary groups: the primary gid, then (policy Merge, the default) every group in the
  image's /etc/group that lists the user's name, then the CRI `supplemental_groups`. Policy
  Strict leaves out the image's groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cri_shim.spec.security import SpecError

__all__ = [
    "GroupEntry",
    "PasswdEntry",
    "ResolvedUser",
    "parse_group",
    "parse_passwd",
    "resolve_user",
]

_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel, so it is no one's id


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedUser:
    """The identity for `process.user`; also what ContainerStatus reports as the user."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    username: str = ""  # "" when the uid has no passwd entry


def _parse_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of an /etc/passwd file; malformed lines are skipped as libc skips them."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        uid, gid = _parse_id(fields[2]), _parse_id(fields[3])
        if not fields[0] or uid is None or gid is None:
            continue
        entries.append(PasswdEntry(fields[0], uid, gid, fields[5] if len(fields) > 5 else ""))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of an /etc/group file; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        gid = _parse_id(fields[2])
        if not fields[0] or gid is None:
            continue
        raw = fields[3] if len(fields) > 3 else ""
        members = tuple(m.strip() for m in raw.split(",") if m.strip())
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _check_id(value: int, what: str) -> int:
    if not 0 <= value <= _MAX_ID:
        raise SpecError(f"{what} {value} is out of range")
    return value


def _by_uid(entries: Sequence[PasswdEntry], uid: int) -> PasswdEntry | None:
    return next((e for e in entries if e.uid == uid), None)


def _by_name(entries: Sequence[PasswdEntry], name: str) -> PasswdEntry | None:
    return next((e for e in entries if e.name == name), None)


def _group_gid(spec: str, group_text: str | None) -> int:
    numeric = _parse_id(spec)
    if numeric is not None:
        return numeric
    if group_text is None:
        raise SpecError(f"unable to find group {spec!r}: the image has no /etc/group")
    found = next((g for g in parse_group(group_text) if g.name == spec), None)
    if found is None:
        raise SpecError(f"unable to find group {spec!r} in the image's /etc/group")
    return found.gid


def _user_by_name(name: str, users: Sequence[PasswdEntry], passwd: str | None) -> PasswdEntry:
    if passwd is None:
        raise SpecError(f"unable to find user {name!r}: the image has no /etc/passwd")
    found = _by_name(users, name)
    if found is None:
        raise SpecError(f"unable to find user {name!r} in the image's /etc/passwd")
    return found


def resolve_user(
    *,
    run_as_user: int | None,
    run_as_username: str,
    run_as_group: int | None,
    image_user: str,
    supplemental_groups: Sequence[int],
    strict_groups: bool,
    passwd: str | None,
    group: str | None,
) -> ResolvedUser:
    """The identity of the container's first process (see the module docstring)."""
    if run_as_user is not None and run_as_username:
        raise SpecError("run_as_user and run_as_username cannot both be set")
    if run_as_group is not None and run_as_user is None and not run_as_username:
        raise SpecError("run_as_group requires run_as_user or run_as_username")
    users = parse_passwd(passwd) if passwd is not None else []
    entry: PasswdEntry | None
    group_override: int | None = None
    if run_as_user is not None:
        uid = _check_id(run_as_user, "run_as_user")
        entry = _by_uid(users, uid)
    elif run_as_username:
        entry = _user_by_name(run_as_username, users, passwd)
        uid = entry.uid
    else:
        user_part, _, group_part = image_user.partition(":")
        numeric = _parse_id(user_part)
        if not user_part:
            uid, entry = 0, _by_uid(users, 0)
        elif numeric is not None:
            uid, entry = numeric, _by_uid(users, numeric)
        else:
            entry = _user_by_name(user_part, users, passwd)
            uid = entry.uid
        if group_part:
            group_override = _group_gid(group_part, group)
    if run_as_group is not None:
        gid = _check_id(run_as_group, "run_as_group")
    elif group_override is not None:
        gid = group_override
    else:
        gid = entry.gid if entry is not None else 0
    gids: list[int] = [gid]
    if not strict_groups and entry is not None and group is not None:
        gids.extend(g.gid for g in parse_group(group) if entry.name in g.members)
    gids.extend(_check_id(g, "supplemental group") for g in supplemental_groups)
    return ResolvedUser(
        uid=uid,
        gid=gid,
        additional_gids=tuple(dict.fromkeys(gids)),
        username=entry.name if entry is not None else "",
    )
