from __future__ import annotations

from images.metadata import ImageRecord, MetadataStore


def _rec(n: str) -> ImageRecord:
    return ImageRecord(
        id="sha256:" + n * 64,
        manifest_digest="sha256:" + "f" * 64,
        size=1,
        chain_id=None,
        blobs=("sha256:" + n * 64,),
        config={"config": {}},
        pinned=False,
        created_ns=int(n, 16),
    )


def test_tags_move_and_delete_cascades(tmp_path: str) -> None:
    db = MetadataStore(str(tmp_path / "m.db"))
    db.put(
        _rec("a"),
        [("docker.io/library/x:1", "tag"), ("docker.io/library/x@sha256:" + "f" * 64, "digest")],
    )
    db.put(_rec("b"), [("docker.io/library/x:1", "tag")])
    a = db.get("sha256:" + "a" * 64)
    b = db.get("sha256:" + "b" * 64)
    assert a is not None
    assert b is not None
    assert a.repo_tags == ()
    assert a.repo_digests == ("docker.io/library/x@sha256:" + "f" * 64,)
    assert b.repo_tags == ("docker.io/library/x:1",)
    assert db.resolve_name("docker.io/library/x:1") == b.id
    assert db.delete(b.id)
    assert db.resolve_name("docker.io/library/x:1") is None
    assert [r.id for r in db.list()] == [a.id]
    assert db.find_by_prefix("sha256:aaaa") == [a.id]
    assert db.find_by_prefix("sha256:%") == []
    db.close()


def test_survives_reopen(tmp_path: str) -> None:
    db = MetadataStore(str(tmp_path / "m.db"))
    db.put(_rec("c"), [("docker.io/library/y:2", "tag")])
    db.close()
    db = MetadataStore(str(tmp_path / "m.db"))
    assert db.resolve_name("docker.io/library/y:2") == "sha256:" + "c" * 64
    db.close()
