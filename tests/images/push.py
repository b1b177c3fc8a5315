"""Push OCI layouts to a registry with the distribution API (plain HTTP, no auth).

Deliberately minimal and independent of `images/registry.py`, so the test fixtures do not
depend on the code under test: HEAD each blob and upload only the missing ones (one POST to
open an upload, one monolithic PUT with `?digest=`), then PUT the manifest under each tag
with its media type as Content-Type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tests.images.catalog import split_reference
from tests.images.oci_layout import blob_path, read_layout

__all__ = ["PushError", "push_all", "push_layout"]


class PushError(Exception):
    """The registry refused an upload."""


def _check(resp: httpx.Response, what: str, ok: tuple[int, ...]) -> None:
    if resp.status_code not in ok:
        raise PushError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")


def _push_blob(client: httpx.Client, base: str, repo: str, digest: str, path: Path) -> None:
    head = client.head(f"{base}/v2/{repo}/blobs/{digest}")
    if head.status_code == 200:
        return
    start = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    _check(start, f"start upload of {digest} to {repo}", (202,))
    # Location may be relative and may already carry a query (the upload state).
    location = urljoin(f"{base}/v2/{repo}/blobs/uploads/", start.headers["Location"])
    sep = "&" if "?" in location else "?"
    put = client.put(
        f"{location}{sep}digest={digest}",
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(put, f"upload {digest} to {repo}", (201,))


def push_layout(
    layout: Path,
    base_url: str,
    repository: str,
    tags: set[str] | None = None,
    client: httpx.Client | None = None,
) -> list[str]:
    """Push the tagged images of `layout` (all, or those in `tags`); return the tags pushed."""
    base = base_url.rstrip("/")
    own = client is None
    # trust_env=False: the registry is local; a proxy from the environment must not apply.
    http = client or httpx.Client(timeout=60.0, trust_env=False)
    pushed: list[str] = []
    try:
        for ref in read_layout(layout):
            if tags is not None and ref.tag not in tags:
                continue
            manifest_bytes = blob_path(layout, ref.digest).read_bytes()
            manifest = json.loads(manifest_bytes)
            for desc in [manifest["config"], *manifest["layers"]]:
                _push_blob(
                    http, base, repository, desc["digest"], blob_path(layout, desc["digest"])
                )
            put = http.put(
                f"{base}/v2/{repository}/manifests/{ref.tag}",
                content=manifest_bytes,
                headers={"Content-Type": ref.media_type},
            )
            _check(put, f"put manifest {repository}:{ref.tag}", (201,))
            pushed.append(ref.tag)
    finally:
        if own:
            http.close()
    return pushed


def push_all(layouts: Mapping[str, str], base_url: str) -> list[str]:
    """Push `build_all`'s result: upstream reference -> layout. Returns "repo:tag" pushed.

    References that differ only by host (pause:3.9 from two registries) share one local
    repository and tag, and are pushed once.
    """
    wanted: dict[tuple[str, str], set[str]] = {}
    for ref, layout in layouts.items():
        _, repo, tag = split_reference(ref)
        wanted.setdefault((repo, layout), set()).add(tag)
    done: list[str] = []
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        for (repo, layout), tags in sorted(wanted.items()):
            for tag in push_layout(Path(layout), base_url, repo, tags, client):
                done.append(f"{repo}:{tag}")
    return done
