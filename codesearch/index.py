"""The on-disk index: SQLite metadata + lexical index, raw vectors, and FAISS snapshots.

Layout of ``INDEX_DIR`` (default ``REPO/.codesearch``)::

    index.v{FORMAT}.db     SQLite (WAL): meta, files, units, vectors (float32 blobs), units_fts (FTS5)
    vectors.g{GEN}.faiss   faiss IndexIDMap2(IndexScalarQuantizer fp16, inner product) of the units of
                           generation GEN (id = unit id): a snapshot, written only now and then (see below)
    lock                   writer lock (flock) holding the writer's pid

SQLite is the source of truth. Each index run commits its changes in one transaction that bumps
``meta.generation``. Unit ids are never reused (AUTOINCREMENT) and a unit's vector never changes, so
the FAISS index of generation G is any earlier generation's FAISS index minus the ids that left and
plus the ids that came, both read from G's SQLite snapshot. A reader takes a read transaction (a
consistent snapshot), loads the newest FAISS snapshot file not newer than its generation, and applies
that id delta; a reader that already holds an index applies the delta from the generation it holds.
The writer therefore does not write a FAISS file per generation: it writes a new snapshot (temp file
+ rename) only once the delta since the last one has grown past ``max(SNAPSHOT_MIN_DELTA, units /
SNAPSHOT_FRACTION)`` (``meta.snapshot_delta`` counts it; ``meta.snapshot_generation`` names the file),
so an update costs what changed, not the size of the index. FAISS holds the vectors as float16 (the
SQLite cache keeps float32): half the memory and half the bytes a query scans, for scores within 1e-3
of float32's (docs/benchmarks.md); a snapshot of another kind (the float32 ``IndexFlatIP`` of
earlier versions) is not loaded, and the writer replaces it. Vectors are cached by ``text_hash``
(SHA-256 over model key, text format and text), committed in batches while embedding, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parsers.symbol import Symbol

from .errors import IndexCorrupt, IndexLocked, IndexMissing, IndexStale
from .lexical import query_tokens
from .lexical import tokens as lexical_tokens

log = logging.getLogger(__name__)

# Changelog of INDEX_FORMAT_VERSION (layout/schema; a change means a new database file):
#   1: first release.
#   2: units.role (implementation, test, benchmark, example, generated; parsers/roles.py).
INDEX_FORMAT_VERSION = 2
# Changelog of INDEX_FEATURE_VERSION (what units and texts are; a change re-parses every file):
#   1: first release.
INDEX_FEATURE_VERSION = 1

DB_NAME = f"index.v{INDEX_FORMAT_VERSION}.db"
LOCK_NAME = "lock"
#: BM25 weights of the name, doc and code columns of units_fts (chosen by bench/tune_fusion.py).
LEXICAL_WEIGHTS = (3.0, 2.0, 1.0)
#: A new FAISS snapshot is written once more than this many unit ids (or a SNAPSHOT_FRACTION-th of
#: the units, whichever is more) have come or gone since the last one.
SNAPSHOT_MIN_DELTA = 1000
SNAPSHOT_FRACTION = 20
#: What snapshot files hold (``meta.snapshot_kind``): a snapshot of another kind is replaced.
SNAPSHOT_KIND = "idmap2-sq-fp16-ip"
#: Largest id delta a reader that holds an index applies in memory (above it, and above a tenth of
#: the index, it loads the newest snapshot instead).
MAX_READER_DELTA = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, language TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', units INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS units (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, language TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, qualified_name TEXT NOT NULL, signature TEXT NOT NULL, docstring TEXT NOT NULL,
    summary TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    start_byte INTEGER NOT NULL, end_byte INTEGER NOT NULL, code TEXT NOT NULL,
    doc_start_line INTEGER NOT NULL, doc_end_line INTEGER NOT NULL, text_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'implementation'
);
CREATE INDEX IF NOT EXISTS units_path ON units(path);
CREATE INDEX IF NOT EXISTS units_text_hash ON units(text_hash);
CREATE TABLE IF NOT EXISTS vectors (text_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS units_fts USING fts5(
    name, doc, code, content='', tokenize="porter unicode61 remove_diacritics 0 tokenchars '_'"
);
"""

_UNIT_COLS = ("path", "language", "kind", "name", "qualified_name", "signature", "docstring", "summary",
              "start_line", "end_line", "start_byte", "end_byte", "code", "doc_start_line", "doc_end_line", "role")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What the index knows of one file."""

    path: str
    language: str
    size: int
    mtime_ns: int
    sha256: str
    status: str
    error: str = ""
    units: int = 0


@dataclass(frozen=True, slots=True)
class Filters:
    """Metadata filters applied before ranking.

    Attributes:
        languages: Allowed languages (empty: all).
        kinds: Allowed kinds (empty: all).
        paths: Path prefixes or globs; a unit matches if it matches any (empty: all).
        roles: Allowed roles (empty: all).
        not_roles: Excluded roles.
        repos: Allowed repositories (empty: all); applied by the store (``store.py``).
    """

    languages: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    not_roles: tuple[str, ...] = ()
    repos: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.languages or self.kinds or self.paths or self.roles or self.not_roles or self.repos)

    def role_ok(self, role: str) -> bool:
        """Whether a unit of ``role`` passes the role filters."""
        return (not self.roles or role in self.roles) and role not in self.not_roles

    def path_ok(self, path: str) -> bool:
        """Whether ``path`` passes the path filters: a glob if it has ``* ? [`` (``*`` crosses ``/``), else a prefix."""
        if not self.paths:
            return True
        for pat in self.paths:
            pat = pat.removeprefix("./")
            if any(c in pat for c in "*?["):
                if fnmatch.fnmatchcase(path, pat):
                    return True
            elif path.startswith(pat):
                return True
        return False


def fts_columns(unit: Symbol | sqlite3.Row) -> tuple[str, str, str]:
    """The pre-tokenised (name, doc, code) strings stored in units_fts for a unit."""
    name = " ".join(lexical_tokens(unit["qualified_name"] if isinstance(unit, sqlite3.Row) else unit.qualified_name))
    if isinstance(unit, sqlite3.Row):
        doc, code = unit["docstring"], unit["code"]
    else:
        doc, code = unit.docstring, unit.code
    return name, " ".join(lexical_tokens(doc)), " ".join(lexical_tokens(code))


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression OR-ing the code-aware tokens of ``text`` ("" if none)."""
    seen = dict.fromkeys(query_tokens(text))
    return " OR ".join(f'"{t}"' for t in seen)


def connect(db_path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open the index database (WAL mode for the writer; read-only URI for readers)."""
    if readonly:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30, check_same_thread=False,
                               isolation_level=None)
    else:
        conn = sqlite3.connect(db_path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    return conn


def faiss_path(index_dir: Path, generation: int) -> Path:
    """File name of the FAISS snapshot of one generation."""
    return index_dir / f"vectors.g{generation}.faiss"


def snapshots(index_dir: Path, upto: int | None = None) -> list[tuple[int, Path]]:
    """The FAISS snapshot files (generation, path), newest first; only generations <= ``upto`` if given."""
    out = []
    for path in index_dir.glob("vectors.g*.faiss"):
        num = path.name[len("vectors.g"):-len(".faiss")]
        if num.isdigit() and (upto is None or int(num) <= upto):
            out.append((int(num), path))
    return sorted(out, reverse=True)


def snapshot_due(delta: int, units: int) -> bool:
    """Whether a delta of ``delta`` ids since the last snapshot asks for a new one."""
    return delta > max(SNAPSHOT_MIN_DELTA, units // SNAPSHOT_FRACTION)


def new_faiss(dim: int) -> Any:
    """An empty FAISS index of the kind snapshots hold: ids mapped over float16 codes, inner product."""
    import faiss

    return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                        faiss.METRIC_INNER_PRODUCT))


def is_current_kind(index: Any) -> bool:
    """Whether a FAISS index read from a snapshot is of the kind :func:`new_faiss` makes."""
    import faiss

    if not isinstance(index, faiss.IndexIDMap2):
        return False
    inner = faiss.downcast_index(index.index)
    return (isinstance(inner, faiss.IndexScalarQuantizer) and inner.sq.qtype == faiss.ScalarQuantizer.QT_fp16
            and inner.metric_type == faiss.METRIC_INNER_PRODUCT)


def apply_delta(conn: sqlite3.Connection, index: Any, dim: int, limit: int | None = None) -> bool:
    """Bring ``index`` (an IndexIDMap2) to the units of ``conn``'s snapshot: drop ids that left, add ids that came.

    Ids that came are newer than every id the index holds (ids are never reused), so appending them
    keeps the ids ascending, as :func:`build_faiss` orders them: the result equals a fresh build,
    ties included. Returns False (``index`` untouched) when the delta exceeds ``limit`` or a unit has
    no vector.
    """
    import faiss

    ids = unit_ids(conn)
    have = faiss.vector_to_array(index.id_map).astype(np.int64)
    removed = np.setdiff1d(have, ids, assume_unique=True)
    added = np.setdiff1d(ids, have, assume_unique=True)
    if limit is not None and len(removed) + len(added) > limit:
        return False
    if len(added) and len(have) and added[0] < have.max():
        return False  # not a delta of this index (ids out of order): build it afresh
    rows: list[tuple[int, bytes]] = []
    for start in range(0, len(added), 500):
        chunk = [int(x) for x in added[start:start + 500]]
        rows += conn.execute(
            f"SELECT u.id, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash "
            f"WHERE u.id IN ({','.join('?' * len(chunk))}) ORDER BY u.id", chunk).fetchall()
    if len(rows) != len(added):
        return False
    if len(removed):
        index.remove_ids(removed)
    if rows:
        new_ids, vecs = _rows_to_arrays(rows, dim)
        index.add_with_ids(vecs, new_ids)
    return True


def unit_ids(conn: sqlite3.Connection) -> np.ndarray:
    """Every unit id (unordered), read as one string: a Python row per id costs 60-120 ms at 100k units,
    this about 16 ms."""
    cur = conn.cursor()
    cur.row_factory = None
    text = cur.execute("SELECT group_concat(id) FROM units").fetchone()[0]
    return np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, dtype=np.int64)


def load_snapshot(conn: sqlite3.Connection, index_dir: Path, generation: int, dim: int) -> Any:
    """The FAISS index of ``conn``'s snapshot (generation ``generation``): newest snapshot file + delta, else built."""
    import faiss

    for _gen, path in snapshots(index_dir, generation)[:2]:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:  # gone (a writer replaced it) or damaged: try the next, then build
            continue
        if index.d == dim and is_current_kind(index) and apply_delta(conn, index, dim):
            return index
    return build_faiss(conn, dim)


def row_to_symbol(row: sqlite3.Row) -> Symbol:
    """Rebuild a Symbol from a units row."""
    return Symbol(**{c: row[c] for c in _UNIT_COLS})


class WriterLock:
    """The single-writer lock: an exclusive flock on ``INDEX_DIR/lock`` (released on exit or crash)."""

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock or raise IndexLocked naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexLocked(
                f"another codesearch process (pid {holder}) is updating the index in {self.path.parent}; "
                "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class IndexWriter:
    """Writes one index directory; the caller holds the WriterLock.

    Args:
        index_dir: The index directory (created if missing).
        meta: The meta values this run will publish (model identity, text format, versions, ...).
    """

    def __init__(self, index_dir: Path, meta: dict[str, str]) -> None:
        index_dir.mkdir(parents=True, exist_ok=True)
        self.index_dir = index_dir
        self.db_path = index_dir / DB_NAME
        try:
            self.conn = connect(self.db_path)
            self.conn.executescript(_SCHEMA)
            old = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            log.warning("index database unreadable (%s); starting a new one", exc)
            self._discard_db()
            self.conn = connect(self.db_path)
            self.conn.executescript(_SCHEMA)
            old = {}
        self.old_meta = old
        self.meta = meta
        self.rebuild_reason = self._rebuild_reason(old, meta)
        if not old.get("generation"):
            # A new database numbers its units from 1 again: snapshots of an earlier one would pass
            # for its own (same ids, other vectors).
            self._remove_snapshots(keep=None)
            self._seed_from_older_format()

    def _seed_from_older_format(self) -> None:
        """Copy the vector cache of an index of an older format version, so a format change re-embeds nothing.

        Vectors are keyed by a hash over model key, text format, max length and text, so a vector
        copied from another database can only ever be found for the very text it encodes; those no
        unit uses are dropped by the first whole-tree run.
        """
        others = sorted(p for p in self.index_dir.glob("index.v*.db") if p.name != DB_NAME)
        for other in reversed(others):
            try:
                src = sqlite3.connect(f"file:{other}?mode=ro", uri=True, timeout=5)
                try:
                    rows = src.execute("SELECT text_hash, vector FROM vectors").fetchall()
                finally:
                    src.close()
            except sqlite3.Error as exc:
                log.info("cannot read vectors of %s (%s); not seeding from it", other.name, exc)
                continue
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT OR IGNORE INTO vectors(text_hash, vector) VALUES (?, ?)", rows)
            log.info("seeded %d cached vectors from %s", len(rows), other.name)
            return

    def _remove_older_formats(self) -> None:
        for other in self.index_dir.glob("index.v*.db*"):
            if not other.name.startswith(DB_NAME):
                with contextlib.suppress(FileNotFoundError):
                    other.unlink()

    def _discard_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.index_dir / (DB_NAME + suffix)).unlink()

    def _remove_snapshots(self, keep: Path | None) -> None:
        for old in [*self.index_dir.glob("vectors.g*.faiss"), *self.index_dir.glob(".vectors.g*.faiss.tmp")]:
            if old != keep:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    @staticmethod
    def _rebuild_reason(old: dict[str, str], new: dict[str, str]) -> str | None:
        if not old.get("generation"):
            return None
        for key, what in (("model_key", "model"), ("doc_text_format", "document text format"),
                          ("max_length", "max length"), ("feature_version", "feature version")):
            if old.get(key) != new.get(key):
                return f"{what} changed ({old.get(key)} -> {new.get(key)})"
        return None

    @property
    def generation(self) -> int:
        """The last committed generation (0 for a new index)."""
        return int(self.old_meta.get("generation", "0"))

    def file_records(self, paths: Iterable[str] | None = None) -> dict[str, FileRecord]:
        """Every file the index knows (or those of ``paths`` it knows), by path."""
        if paths is None:
            rows = self.conn.execute("SELECT * FROM files").fetchall()
        else:
            items, rows = sorted(set(paths)), []
            for start in range(0, len(items), 500):
                chunk = items[start:start + 500]
                rows += self.conn.execute(f"SELECT * FROM files WHERE path IN ({','.join('?' * len(chunk))})",
                                          chunk).fetchall()
        return {r["path"]: FileRecord(**dict(r)) for r in rows}

    def missing_vectors(self, text_hashes: Iterable[str]) -> set[str]:
        """The text hashes that have no cached vector."""
        wanted = set(text_hashes)
        have: set[str] = set()
        items = list(wanted)
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            q = f"SELECT text_hash FROM vectors WHERE text_hash IN ({','.join('?' * len(chunk))})"
            have.update(r[0] for r in self.conn.execute(q, chunk))
        return wanted - have

    def store_vectors(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Cache vectors (committed at once, so an interrupted run keeps them)."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO vectors(text_hash, vector) VALUES (?, ?)",
                                  [(h, _blob(v)) for h, v in zip(hashes, vectors, strict=True)])

    def _delete_units(self, paths: Iterable[str], gone_hashes: set[str]) -> list[int]:
        removed: list[int] = []
        for path in paths:
            rows = self.conn.execute("SELECT * FROM units WHERE path = ?", (path,)).fetchall()
            for row in rows:
                self.conn.execute("INSERT INTO units_fts(units_fts, rowid, name, doc, code) "
                                  "VALUES ('delete', ?, ?, ?, ?)", (row["id"], *fts_columns(row)))
                removed.append(row["id"])
                gone_hashes.add(row["text_hash"])
            self.conn.execute("DELETE FROM units WHERE path = ?", (path,))
        return removed

    def _keep_unchanged_units(self, path: str, units: Sequence[tuple[Symbol, str]], removed: list[int],
                              gone_hashes: set[str]) -> list[tuple[Symbol, str]]:
        """Match a changed file's new units with its old rows; returns the units that need new rows.

        A unit whose text hash, qualified name, doc comment and code are those of an old row keeps
        that row (its id, vector and lexical row stay; lines and other columns are updated in
        place), so editing one function of a file re-tokenises and re-adds only that function.
        Old rows left unmatched are deleted (ids into ``removed``).
        """
        pool: dict[tuple[str, str, str, str], list[sqlite3.Row]] = {}
        for row in self.conn.execute("SELECT * FROM units WHERE path = ? ORDER BY id", (path,)):
            pool.setdefault((row["text_hash"], row["qualified_name"], row["docstring"], row["code"]), []).append(row)
        fresh: list[tuple[Symbol, str]] = []
        for sym, text_hash in units:
            bucket = pool.get((text_hash, sym.qualified_name, sym.docstring, sym.code))
            if not bucket:
                fresh.append((sym, text_hash))
                continue
            row = bucket.pop(0)
            changed = [c for c in _UNIT_COLS if row[c] != getattr(sym, c)]
            if changed:
                self.conn.execute(f"UPDATE units SET {', '.join(f'{c} = ?' for c in changed)} WHERE id = ?",
                                  (*[getattr(sym, c) for c in changed], row["id"]))
        for row in (r for bucket in pool.values() for r in bucket):
            self.conn.execute("INSERT INTO units_fts(units_fts, rowid, name, doc, code) "
                              "VALUES ('delete', ?, ?, ?, ?)", (row["id"], *fts_columns(row)))
            self.conn.execute("DELETE FROM units WHERE id = ?", (row["id"],))
            removed.append(row["id"])
            gone_hashes.add(row["text_hash"])
        return fresh

    def _delete_unused_vectors(self, hashes: Iterable[str]) -> None:
        items = list(hashes)
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            self.conn.execute(f"DELETE FROM vectors WHERE text_hash IN ({','.join('?' * len(chunk))}) "
                              "AND NOT EXISTS (SELECT 1 FROM units u WHERE u.text_hash = vectors.text_hash)", chunk)

    def commit(self, deleted: Iterable[str], updated: Sequence[tuple[FileRecord, Sequence[tuple[Symbol, str]]]],
               touched: Sequence[FileRecord], full: bool, sweep: bool = True) -> tuple[int, list[int], list[int]]:
        """Apply one run's changes in a single transaction and bump the generation.

        Args:
            deleted: Paths that are gone from the repository.
            updated: Files whose content changed, each with its (symbol, text_hash) units; their
                old units are replaced (an unchanged unit keeps its row, see ``_keep_unchanged_units``).
            touched: Files whose stat changed but content did not (only the record is updated).
            full: Drop everything not in ``updated``/``touched`` (a rebuild).
            sweep: Drop every cached vector no unit uses (also those an interrupted run left);
                otherwise only those of the texts whose units this run removed, so that an
                update of a few files costs what changed, not a scan of the whole index.

        Returns:
            (new generation, removed unit ids, added unit ids).
        """
        removed: list[int] = []
        added: list[int] = []
        gone_hashes: set[str] = set()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if full:
                keep = {f.path for f, _ in updated} | {f.path for f in touched}
                deleted = [p for (p,) in conn.execute("SELECT path FROM files") if p not in keep]
                removed += self._delete_units(
                    [p for (p,) in conn.execute("SELECT DISTINCT path FROM units") if p not in keep], gone_hashes)
            removed += self._delete_units(deleted, gone_hashes)
            conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in deleted])
            insert = (f"INSERT INTO units({', '.join(_UNIT_COLS)}, text_hash) "
                      f"VALUES ({', '.join('?' * (len(_UNIT_COLS) + 1))})")
            for record, units in updated:
                fresh = self._keep_unchanged_units(record.path, units, removed, gone_hashes)
                for sym, text_hash in fresh:
                    cur = conn.execute(insert, (*[getattr(sym, c) for c in _UNIT_COLS], text_hash))
                    uid = int(cur.lastrowid or 0)
                    conn.execute("INSERT INTO units_fts(rowid, name, doc, code) VALUES (?, ?, ?, ?)",
                                 (uid, *fts_columns(sym)))
                    added.append(uid)
            records = [r for r, _ in updated] + list(touched)
            conn.executemany(
                "INSERT OR REPLACE INTO files(path, language, size, mtime_ns, sha256, status, error, units) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.path, r.language, r.size, r.mtime_ns, r.sha256, r.status, r.error, r.units) for r in records])
            if full or sweep:
                conn.execute("DELETE FROM vectors WHERE text_hash NOT IN (SELECT text_hash FROM units)")
            else:  # only the texts this run took units from can have lost their last unit
                self._delete_unused_vectors(gone_hashes)
            missing = len(self.missing_vectors(sym_hash for _r, units in updated for _s, sym_hash in units))
            if missing:
                raise IndexCorrupt(f"{missing} units have no vector; refusing to publish")
            generation = self.generation + 1
            meta = dict(self.meta, generation=str(generation), updated_at=str(time.time()))
            if self.old_meta.get("snapshot_generation"):
                meta["snapshot_generation"] = self.old_meta["snapshot_generation"]
                if self.old_meta.get("snapshot_kind"):
                    meta["snapshot_kind"] = self.old_meta["snapshot_kind"]
                delta = int(self.old_meta.get("snapshot_delta", "0")) + len(removed) + len(added)
                meta["snapshot_delta"] = str(delta)
            meta.setdefault("created_at", self.old_meta.get("created_at", meta["updated_at"]))
            if self.old_meta.get("created_at") and not self.rebuild_reason:
                meta["created_at"] = self.old_meta["created_at"]
            conn.execute("DELETE FROM meta")
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if generation == 1:
            self._remove_older_formats()  # the new format is published: the old file is no longer read
        self.old_meta = meta
        return generation, removed, added

    def publish_vectors(self, generation: int) -> bool:
        """Write a FAISS snapshot of ``generation`` if the delta since the last one asks for it.

        Readers build a generation's index from the newest snapshot plus the id delta, so most
        updates write no FAISS file at all. Returns whether a snapshot was written.
        """
        import faiss

        dim = int(self.meta["dim"])
        prev = self.old_meta.get("snapshot_generation")
        current = snapshots(self.index_dir, generation)
        units = self.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        if (prev and current and str(current[0][0]) == prev
                and self.old_meta.get("snapshot_kind") == SNAPSHOT_KIND
                and not snapshot_due(int(self.old_meta.get("snapshot_delta", "0")), units)):
            return False
        self.conn.execute("BEGIN")  # read the index of ``generation`` in one snapshot
        try:
            if self.generation != generation:
                raise IndexCorrupt(f"generation {generation} is not the committed one")
            index = load_snapshot(self.conn, self.index_dir, generation, dim)
        finally:
            self.conn.execute("COMMIT")
        path = faiss_path(self.index_dir, generation)
        tmp = self.index_dir / f".vectors.g{generation}.faiss.tmp"
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.index_dir)
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                  [("snapshot_generation", str(generation)), ("snapshot_delta", "0"),
                                   ("snapshot_kind", SNAPSHOT_KIND)])
        self.old_meta = dict(self.old_meta, snapshot_generation=str(generation), snapshot_delta="0",
                             snapshot_kind=SNAPSHOT_KIND)
        self._remove_snapshots(keep=path)
        return True

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rows_to_arrays(rows: Sequence[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vecs


def build_faiss(conn: sqlite3.Connection, dim: int) -> Any:
    """Build the FAISS index of every unit from the vectors in ``conn`` (inside its current snapshot)."""

    index = new_faiss(dim)
    rows = conn.execute("SELECT u.id, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash "
                        "ORDER BY u.id").fetchall()
    if rows:
        ids, vecs = _rows_to_arrays(rows, dim)
        index.add_with_ids(vecs, ids)
    return index


def find_index_dir(repo: Path, index_dir: str | None) -> Path:
    """The index directory for ``repo`` (``--index-dir`` relative to the current directory)."""
    return Path(index_dir).expanduser().resolve() if index_dir else repo / ".codesearch"


class IndexReader:
    """Reads a published index; follows a new generation by its id delta (or the newest snapshot).

    Args:
        index_dir: The index directory.
    """

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        db = index_dir / DB_NAME
        if not db.is_file():
            others = sorted(index_dir.glob("index.v*.db")) if index_dir.is_dir() else []
            if others:
                raise IndexStale(f"index in {index_dir} has another format version; run `codesearch index` "
                                 "to rebuild it")
            raise IndexMissing(f"no index in {index_dir}; run `codesearch index` first")
        try:
            self.conn = connect(db, readonly=True)
            self.meta = self._read_meta()
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"cannot read index {db}: {exc}; run `codesearch index` to rebuild") from None
        if not self.meta.get("generation"):
            raise IndexMissing(f"index in {index_dir} is not complete yet; run `codesearch index`")
        self.generation = -1
        self._faiss: Any = None
        self._unit_count: tuple[tuple[int, str | None], int] | None = None

    def _read_meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.meta["dim"])

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: everything read inside sees one generation; reloads FAISS if it changed."""
        self.conn.execute("BEGIN")
        try:
            meta = self._read_meta()
            gen = int(meta.get("generation", "0"))
            if gen != self.generation:
                self.meta = meta
                self._load_faiss(gen)
            yield
        finally:
            self.conn.execute("COMMIT")

    def _load_faiss(self, gen: int) -> None:
        held = self._faiss
        if held is not None and held.d == self.dim and gen > self.generation >= 0:
            limit = max(MAX_READER_DELTA, held.ntotal // 10)
            if apply_delta(self.conn, held, self.dim, limit):
                self.generation = gen
                return
        self._faiss = load_snapshot(self.conn, self.index_dir, gen, self.dim)
        self.generation = gen

    def count_units(self) -> int:
        """Number of units; inside a snapshot counted once per published generation (a count costs a few ms
        at 100k units, and every hybrid query asks)."""
        if not self.conn.in_transaction:
            return int(self.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0])
        key = (self.generation, self.meta.get("updated_at"))
        if self._unit_count is None or self._unit_count[0] != key:
            self._unit_count = (key, int(self.conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]))
        return self._unit_count[1]

    def allowed_ids(self, filters: Filters) -> np.ndarray | None:
        """Unit ids passing ``filters`` (None when there are no filters)."""
        if not filters:
            return None
        sql, args = "SELECT id, path FROM units WHERE 1=1", []
        for column, op, values in (("language", "IN", filters.languages), ("kind", "IN", filters.kinds),
                                   ("role", "IN", filters.roles), ("role", "NOT IN", filters.not_roles)):
            if values:
                sql += f" AND {column} {op} ({','.join('?' * len(values))})"
                args += list(values)
        ids = [r[0] for r in self.conn.execute(sql, args) if filters.path_ok(r[1])]
        return np.asarray(ids, dtype=np.int64)

    def vector_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Top-k (unit id, cosine) for one query vector (dim,), restricted to ``allowed`` ids if given."""
        import faiss

        if self._faiss is None or self._faiss.ntotal == 0 or k <= 0:
            return []
        # A reader searches one query vector at a time: OpenMP's threads only add their start-up and
        # spinning (6.2 ms on one thread vs 8.0 on two at 100k units, idle; 25 ms on two under load). The
        # setting can be the calling thread's own (an OpenMP ICV: a new thread may start at all cores),
        # and queries come on many threads (daemon connections, LSP workers): set here, before each search.
        faiss.omp_set_num_threads(1)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is not None:
            if len(allowed) == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            dist, ids = self._faiss.search(q, min(k, len(allowed)), params=params)
        else:
            dist, ids = self._faiss.search(q, min(k, self._faiss.ntotal))
        return [(int(i), float(d)) for i, d in zip(ids[0], dist[0], strict=True) if i >= 0]

    def lexical_search(self, text: str, k: int, allowed: np.ndarray | None,
                       must: Sequence[str] = ()) -> list[tuple[int, float]]:
        """Top-k (unit id, bm25 score; higher is better) over the code-aware tokens of ``text``.

        Args:
            text: Query text.
            k: How many.
            allowed: Restrict to these unit ids (None: all).
            must: Phrases that must appear (each an FTS5 phrase over its tokens).
        """
        expr = fts_query(text)
        phrases = [" ".join(lexical_tokens(p)) for p in must]
        required = " AND ".join(f'"{p}"' for p in phrases if p)
        if required:
            expr = f"({required}) AND ({expr})" if expr else required
        if not expr:
            return []
        w = ", ".join(str(x) for x in LEXICAL_WEIGHTS)
        sql = f"SELECT rowid, -bm25(units_fts, {w}) AS score FROM units_fts WHERE units_fts MATCH ? ORDER BY score DESC"
        try:
            if allowed is None:
                rows = self.conn.execute(sql + " LIMIT ?", (expr, k)).fetchall()
            else:
                ok = set(allowed.tolist())
                rows = [r for r in self.conn.execute(sql, (expr,)) if r[0] in ok][:k]
        except sqlite3.OperationalError as exc:  # a query FTS5 cannot parse
            log.debug("fts query %r failed: %s", expr, exc)
            return []
        return [(int(r[0]), float(r[1])) for r in rows]

    def roles(self, ids: Sequence[int]) -> dict[int, str]:
        """Roles by unit id."""
        out: dict[int, str] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.update(self.conn.execute(f"SELECT id, role FROM units WHERE id IN ({','.join('?' * len(chunk))})",
                                         chunk).fetchall())
        return out

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many units contain each lexical token (as FTS5 matches it; 0 for one it cannot parse)."""
        out: dict[str, int] = {}
        for term in dict.fromkeys(terms):
            try:
                row = self.conn.execute("SELECT COUNT(*) FROM units_fts WHERE units_fts MATCH ?",
                                        (f'"{term}"',)).fetchone()
            except sqlite3.OperationalError:
                row = (0,)
            out[term] = int(row[0])
        return out

    def symbols(self, ids: Sequence[int]) -> dict[int, Symbol]:
        """Symbols by unit id."""
        out: dict[int, Symbol] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.conn.execute(f"SELECT * FROM units WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            out.update((r["id"], row_to_symbol(r)) for r in rows)
        return out

    def unit_at(self, path: str, line: int) -> int | None:
        """The id of the innermost unit of ``path`` spanning ``line`` (the smallest span; ties by id)."""
        row = self.conn.execute(
            "SELECT id FROM units WHERE path = ? AND start_line <= ? AND end_line >= ? "
            "ORDER BY end_line - start_line, id LIMIT 1", (path, line, line)).fetchone()
        return None if row is None else int(row[0])

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The vector of each unit id (those that exist)."""
        out: dict[int, np.ndarray] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.conn.execute(
                "SELECT u.id, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash "
                f"WHERE u.id IN ({','.join('?' * len(chunk))})", chunk)
            out.update((int(uid), np.frombuffer(blob, dtype=np.float32)) for uid, blob in rows)
        return out

    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The vector cache's entries for these text hashes (those it has, of the index's dimension)."""
        dim = self.dim
        out: dict[str, np.ndarray] = {}
        hashes = list(dict.fromkeys(text_hashes))
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            rows = self.conn.execute(
                f"SELECT text_hash, vector FROM vectors WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk)
            for h, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (dim,):
                    out[h] = vec
        return out

    def status(self) -> dict[str, Any]:
        """Counts and identity of the index, for ``codesearch status``."""
        with self.snapshot():
            files = self.conn.execute("SELECT status, COUNT(*) AS n FROM files GROUP BY status").fetchall()
            langs = self.conn.execute("SELECT language, COUNT(*) AS n FROM units GROUP BY language").fetchall()
            roles = self.conn.execute("SELECT role, COUNT(*) AS n FROM units GROUP BY role").fetchall()
            failed = [dict(r) for r in self.conn.execute(
                "SELECT path, status, error FROM files WHERE status != 'indexed' ORDER BY path LIMIT 50")]
            size = sum(p.stat().st_size for p in self.index_dir.iterdir() if p.is_file())
            return {
                "index_dir": str(self.index_dir),
                "units": self.count_units(),
                "files": {r["status"]: r["n"] for r in files},
                "languages": {r["language"]: r["n"] for r in langs},
                "roles": {r["role"]: r["n"] for r in roles},
                "model": self.meta.get("model_id"),
                "model_path": self.meta.get("model_path"),
                "doc_text_format": self.meta.get("doc_text_format"),
                "generation": self.generation,
                "updated_at": float(self.meta.get("updated_at", "0")),
                "index_bytes": size,
                "not_indexed": failed,
                "format_version": int(self.meta.get("format_version", "0")),
            }

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def dumps_meta(values: dict[str, Any]) -> dict[str, str]:
    """Meta values as strings (JSON for non-strings)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
