"""Helpers for index tests: a comparable snapshot of everything an index holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codesearch.index import DB_NAME, IndexReader, connect


def index_snapshot(index_dir: Path, cached_extra: bool = False) -> dict[str, object]:
    """Units (by identity, with their text hash and vector), files, FTS and FAISS membership.

    ``cached_extra`` allows cached vectors that no unit uses yet (left by an interrupted run).
    """
    conn = connect(index_dir / DB_NAME, readonly=True)
    try:
        units = {}
        for r in conn.execute("SELECT u.*, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash"):
            key = (r["path"], r["qualified_name"], r["start_line"], r["end_line"], r["kind"])
            units[key] = (r["text_hash"], r["code"], r["docstring"], np.frombuffer(r["vector"], np.float32).tobytes())
        files = {r["path"]: (r["sha256"], r["status"], r["units"]) for r in conn.execute("SELECT * FROM files")}
        ids = [r[0] for r in conn.execute("SELECT id FROM units")]
        conn.execute("CREATE VIRTUAL TABLE temp.fts_rows USING fts5vocab(main, units_fts, 'instance')")
        fts_ids = sorted(r[0] for r in conn.execute("SELECT DISTINCT doc FROM temp.fts_rows"))
        n_vectors_orphan = conn.execute(
            "SELECT COUNT(*) FROM vectors WHERE text_hash NOT IN (SELECT text_hash FROM units)").fetchone()[0]
    finally:
        conn.close()
    reader = IndexReader(index_dir)
    try:
        with reader.snapshot():
            faiss_ids = sorted(_faiss_ids(reader._faiss))
    finally:
        reader.close()
    assert cached_extra or n_vectors_orphan == 0, "vectors left that no unit uses"
    assert faiss_ids == sorted(ids), "faiss and units disagree on membership"
    assert fts_ids == sorted(ids), "the lexical index and units disagree on membership"
    return {"units": units, "files": files}


def _faiss_ids(index) -> list[int]:
    import faiss

    return [int(x) for x in faiss.vector_to_array(index.id_map)]


def lexical_ids(index_dir: Path, token: str) -> set[int]:
    """Unit ids whose FTS row contains ``token``."""
    conn = connect(index_dir / DB_NAME, readonly=True)
    try:
        return {r[0] for r in conn.execute("SELECT rowid FROM units_fts WHERE units_fts MATCH ?", (f'"{token}"',))}
    finally:
        conn.close()
