"""Image metadata in sqlite (WAL): images by id, repo tags and repo digests that point at them.

An image's id is its config digest. A tag or repo digest names exactly one image; tagging a new
image moves the name, and an image left with no name is not deleted here (removal is explicit,
and garbage collection frees its content). Every change is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field

__all__ = ["ImageRecord", "MetadataStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    chain_id TEXT,
    blobs TEXT NOT NULL,
    config TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS names_by_image ON names(image_id);
"""


@dataclass(frozen=True)
class ImageRecord:
    id: str
    manifest_digest: str
    size: int
    chain_id: str | None
    blobs: tuple[str, ...]
    config: dict[str, object]
    pinned: bool
    created_ns: int
    repo_tags: tuple[str, ...] = field(default=())
    repo_digests: tuple[str, ...] = field(default=())


class MetadataStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, rec: ImageRecord, names: list[tuple[str, str]]) -> None:
        """Stores ``rec`` (kept if it exists) and points each (name, kind) at it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO images (id, manifest_digest, size, chain_id, blobs, config,"
                    " pinned, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET pinned = max(pinned, excluded.pinned)",
                    (
                        rec.id,
                        rec.manifest_digest,
                        rec.size,
                        rec.chain_id,
                        json.dumps(list(rec.blobs)),
                        json.dumps(rec.config),
                        int(rec.pinned),
                        rec.created_ns,
                    ),
                )
                for name, kind in names:
                    self._db.execute(
                        "INSERT INTO names (name, kind, image_id) VALUES (?, ?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id,"
                        " kind = excluded.kind",
                        (name, kind, rec.id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _record(self, row: tuple[object, ...]) -> ImageRecord:
        image_id = str(row[0])
        names = self._db.execute(
            "SELECT name, kind FROM names WHERE image_id = ? ORDER BY name", (image_id,)
        ).fetchall()
        return ImageRecord(
            id=image_id,
            manifest_digest=str(row[1]),
            size=int(row[2]),  # type: ignore[call-overload]
            chain_id=None if row[3] is None else str(row[3]),
            blobs=tuple(json.loads(str(row[4]))),
            config=json.loads(str(row[5])),
            pinned=bool(row[6]),
            created_ns=int(row[7]),  # type: ignore[call-overload]
            repo_tags=tuple(n for n, k in names if k == "tag"),
            repo_digests=tuple(n for n, k in names if k == "digest"),
        )

    _COLUMNS = "id, manifest_digest, size, chain_id, blobs, config, pinned, created_ns"

    def get(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM images WHERE id = ?",  # noqa: S608 - constant
                (image_id,),
            ).fetchone()
            return None if row is None else self._record(row)

    def resolve_name(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT image_id FROM names WHERE name = ?", (name,)).fetchone()
            return None if row is None else str(row[0])

    def find_by_prefix(self, prefix: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM images WHERE id LIKE ? ESCAPE '\\'",
                (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
            ).fetchall()
            return [str(r[0]) for r in rows]

    def list(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM images ORDER BY created_ns, id"  # noqa: S608
            ).fetchall()
            return [self._record(r) for r in rows]

    def delete(self, image_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            return cur.rowcount > 0

    def untag(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM names WHERE name = ?", (name,))
