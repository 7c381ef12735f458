"""Index logic with the fast fake encoder: incremental updates, rebuilds, bad input, locking."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesearch.config import Settings
from codesearch.embed import HashEmbedder
from codesearch.errors import IndexLocked
from codesearch.index import DB_NAME, WriterLock
from codesearch.indexer import index_repository
from codesearch.search import Searcher
from tests.indexutil import index_snapshot, lexical_ids

PY_A = '''
def parse_cookie(header):
    """Parse a Cookie header into a dict."""
    return dict(p.split("=", 1) for p in header.split("; "))


class Backoff:
    def retry(self, fn, attempts=5):
        """Call fn, sleeping exponentially longer between failures."""
        for i in range(attempts):
            try:
                return fn()
            except Exception:
                time.sleep(2 ** i)
'''
GO_B = '''package util

// Slugify turns a title into a URL slug.
func Slugify(title string) string {
	return strings.ToLower(strings.ReplaceAll(title, " ", "-"))
}
'''
JS_C = '''
/** Read a JSON config file. */
function readConfig(path) {
  return JSON.parse(fs.readFileSync(path, "utf8"));
}
'''


def idx(root, emb, **kw):
    return index_repository(root, Settings(), embedder=emb, **kw)


def test_first_index_and_search(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A, "pkg/b.go": GO_B, "web/c.js": JS_C, "README.md": "# hi"})
    rep = idx(root, hash_embedder)
    assert rep.files == 3 and rep.units == 5 and rep.embedded == 5
    s = Searcher.open(root, Settings(), embedder=hash_embedder)
    hits = s.search("parse cookie", k=3, mode="lexical")
    assert hits[0].symbol.qualified_name == "parse_cookie"
    assert hits[0].symbol.path == "a.py" and hits[0].symbol.start_line == 2
    assert [h.symbol.name for h in s.search("slugify title", k=1, mode="semantic")] == ["Slugify"]
    s.close()


def test_noop_reindex_embeds_nothing(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A, "pkg/b.go": GO_B})
    idx(root, hash_embedder)
    before = index_snapshot(root / ".codesearch")
    hash_embedder.calls.clear()
    rep = idx(root, hash_embedder)
    assert rep.embedded == 0 and rep.files_changed == 0
    os.utime(root / "a.py", None)  # touched, same content: no re-parse of units, no embedding
    rep = idx(root, hash_embedder)
    assert rep.embedded == 0 and rep.files_changed == 0
    assert index_snapshot(root / ".codesearch") == before
    assert hash_embedder.calls == []


def test_edit_delete_rename_equals_rebuild(make_repo, tmp_path):
    emb = HashEmbedder(dim=32)
    root = make_repo({"a.py": PY_A, "pkg/b.go": GO_B, "web/c.js": JS_C})
    idx(root, emb)
    emb.calls.clear()
    # edit one function of a.py, delete c.js, rename b.go
    (root / "a.py").write_text(PY_A.replace('"""Parse a Cookie header into a dict."""',
                                            '"""Split a Cookie header."""'))
    (root / "web/c.js").unlink()
    (root / "pkg/b.go").rename(root / "pkg/slug.go")
    rep = idx(root, emb)
    assert rep.files_deleted == 2 and rep.files_changed == 2
    # Only the edited function is re-embedded: the renamed file's units and the untouched method
    # are served from the vector cache.
    assert len(emb.calls) == 1 and "Split a Cookie header" in emb.calls[0]
    incremental = index_snapshot(root / ".codesearch")
    fresh = tmp_path / "fresh"
    shutil.copytree(root, fresh, ignore=shutil.ignore_patterns(".codesearch"))
    idx(fresh, HashEmbedder(dim=32))
    assert incremental == index_snapshot(fresh / ".codesearch")
    assert not any(k[0] in ("web/c.js", "pkg/b.go") for k in incremental["units"])


def test_model_change_rebuilds_with_reason(make_repo):
    root = make_repo({"a.py": PY_A})
    idx(root, HashEmbedder(dim=32))
    rep = idx(root, HashEmbedder(dim=16))
    assert rep.rebuild_reason and "model changed" in rep.rebuild_reason
    assert rep.embedded == 3 and rep.units == 3
    s = Searcher.open(root, Settings(), embedder=HashEmbedder(dim=16))
    assert s.reader.dim == 16
    s.close()


def test_bad_inputs_are_counted_not_fatal(make_repo, hash_embedder):
    root = make_repo({
        "good.py": PY_A,
        "binary.py": b"\x00\x01\x02def f(): pass\n",
        "latin1.py": "def caf\xe9():\n    return '\xe9'\n".encode("latin-1"),
        "broken.py": "def ok():\n    return 1\n\ndef broken(:\n    pass\n\ndef later():\n    return 2\n",
        "min.js": "function a(){return 1};" * 400,
        "huge.py": "x = 1\n" * 300_000,
        "notes.txt": "def not_code(): pass",
    })
    rep = idx(root, hash_embedder)
    assert rep.skipped == {"binary": 1, "invalid_utf8": 1, "minified": 1, "too_large": 1}
    s = Searcher.open(root, Settings(), embedder=hash_embedder)
    names = {h.symbol.qualified_name for h in s.search("ok later parse cookie", k=20, mode="lexical")}
    assert {"ok", "later", "parse_cookie"} <= names  # the syntax error costs only the broken def
    status = s.reader.status()
    assert {f["path"] for f in status["not_indexed"]} == {"binary.py", "latin1.py", "min.js", "huge.py"}
    s.close()


def test_symlinks_are_not_followed(make_repo, tmp_path, hash_embedder):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("def secret():\n    pass\n")
    root = make_repo({"a.py": PY_A})
    (root / "loop").symlink_to(root)
    (root / "out").symlink_to(outside)
    (root / "link.py").symlink_to(outside / "secret.py")
    rep = idx(root, hash_embedder)
    assert rep.files == 1
    assert all(k[0] == "a.py" for k in index_snapshot(root / ".codesearch")["units"])


def test_gitignore_and_codesearchignore(make_repo, hash_embedder):
    root = make_repo({
        ".gitignore": "generated/\n*.gen.py\n",
        "sub/.gitignore": "local.py\n",
        ".codesearchignore": "third/\n",
        "a.py": PY_A, "generated/x.py": PY_A, "b.gen.py": PY_A, "sub/local.py": PY_A, "sub/kept.py": PY_A,
        "third/t.py": PY_A, "node_modules/m.js": JS_C, "build/o.js": JS_C,
    })
    idx(root, hash_embedder)
    paths = {k[0] for k in index_snapshot(root / ".codesearch")["units"]}
    assert paths == {"a.py", "sub/kept.py"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_keeps_previous_units(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A})
    idx(root, hash_embedder)
    (root / "a.py").write_text(PY_A + "\n\ndef more():\n    pass\n")
    os.chmod(root / "a.py", 0)
    try:
        idx(root, hash_embedder)
        assert len(index_snapshot(root / ".codesearch")["units"]) == 3
    finally:
        os.chmod(root / "a.py", 0o644)


def test_second_writer_is_refused(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A})
    with WriterLock(root / ".codesearch"), pytest.raises(IndexLocked, match=r"pid \d+"):
        idx(root, hash_embedder)


def test_corrupt_database_is_rebuilt(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A})
    idx(root, hash_embedder)
    (root / ".codesearch" / DB_NAME).write_bytes(b"garbage" * 100)
    for extra in ("-wal", "-shm"):
        (root / ".codesearch" / (DB_NAME + extra)).unlink(missing_ok=True)
    rep = idx(root, hash_embedder)
    assert rep.units == 3


def test_paths_mode_updates_only_given_paths(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idx(root, hash_embedder)
    (root / "web/c.js").unlink()
    (root / "new.py").write_text("def fresh():\n    pass\n")
    (root / "a.py").write_text(PY_A + "\ndef unseen():\n    pass\n")
    idx(root, hash_embedder, paths=["web/c.js", "new.py", ".git/x.py"])
    names = {k[1] for k in index_snapshot(root / ".codesearch")["units"]}
    assert names == {"parse_cookie", "Backoff", "Backoff.retry", "fresh"}


FILES = {
    "a.py": [PY_A, PY_A.replace("retry", "again"), "def lone():\n    return 0\n"],
    "b.go": [GO_B, GO_B.replace("Slugify", "Kebab")],
    "d/c.js": [JS_C, JS_C + "\nconst helper = (x) => x * 2;\n"],
    "d/e.py": ["def twin():\n    pass\n", PY_A],
}
ops = st.lists(st.tuples(st.sampled_from(sorted(FILES)), st.integers(-1, 2)), min_size=1, max_size=6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(ops, min_size=1, max_size=3))
def test_incremental_equals_rebuild_property(tmp_path_factory, steps):
    """Any sequence of writes/deletes, indexed incrementally after each batch, equals a fresh build."""
    base = tmp_path_factory.mktemp("prop")
    root = base / "repo"
    root.mkdir()
    emb = HashEmbedder(dim=16)
    for batch in steps:
        for rel, choice in batch:
            p = root / rel
            if choice < 0:
                p.unlink(missing_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(FILES[rel][choice % len(FILES[rel])])
        idx(root, emb)
        snap = index_snapshot(root / ".codesearch")
    fresh = base / "fresh"
    shutil.copytree(root, fresh, ignore=shutil.ignore_patterns(".codesearch"))
    idx(fresh, HashEmbedder(dim=16))
    assert snap == index_snapshot(fresh / ".codesearch")


def _snapshot_gens(index_dir):
    from codesearch.index import snapshots

    return [g for g, _ in snapshots(index_dir)]


def _reader_state(index_dir):
    """(generation, ids, vectors) of a fresh reader, and of a fresh build from its SQLite snapshot."""
    import faiss

    from codesearch.index import IndexReader, build_faiss

    reader = IndexReader(index_dir)
    try:
        with reader.snapshot():
            mine, built = reader._faiss, build_faiss(reader.conn, reader.dim)
            out = [(faiss.vector_to_array(x.id_map).tolist(), x.index.reconstruct_n(0, x.ntotal).tolist())
                   for x in (mine, built)]
            return reader.generation, out[0], out[1]
    finally:
        reader.close()


def test_small_updates_write_no_faiss_file(make_repo, hash_embedder):
    """An update writes no FAISS file until the delta since the last snapshot is large; readers add the delta."""
    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idir = root / ".codesearch"
    assert idx(root, hash_embedder).snapshot_written
    assert _snapshot_gens(idir) == [1]
    for i in range(3):
        (root / f"n{i}.py").write_text(f"def added_{i}():\n    return {i}\n")
        (root / "a.py").write_text(PY_A.replace("retry", f"retry{i}"))
        rep = idx(root, hash_embedder)
        assert not rep.snapshot_written
    assert _snapshot_gens(idir) == [1]
    gen, mine, built = _reader_state(idir)
    assert gen == 4 and mine == built  # snapshot of generation 1 + the delta == a fresh build, in order
    names = {k[1] for k in index_snapshot(idir)["units"]}
    assert {"added_0", "added_2", "Backoff.retry2"} <= names and "Backoff.retry" not in names


def test_snapshot_written_once_delta_is_large(make_repo, hash_embedder, monkeypatch):
    import codesearch.index as index_mod

    monkeypatch.setattr(index_mod, "SNAPSHOT_MIN_DELTA", 6)
    root = make_repo({"a.py": PY_A})
    idir = root / ".codesearch"
    idx(root, hash_embedder)
    written = []
    for i in range(4):  # each edit replaces Backoff and Backoff.retry: a delta of 4 per update, more than 6 after two
        (root / "a.py").write_text(PY_A.replace("retry", f"retry{i}"))
        written.append(idx(root, hash_embedder).snapshot_written)
        assert _snapshot_gens(idir) == [i + 2] if written[-1] else len(_snapshot_gens(idir)) == 1
    assert written == [False, True, False, True]
    assert not list(idir.glob(".vectors*.tmp"))
    gen, mine, built = _reader_state(idir)
    assert gen == 5 and mine == built


def test_a_float32_snapshot_of_an_older_version_is_not_loaded_and_is_replaced(make_repo, hash_embedder):
    """Snapshots hold float16 vectors; an IndexFlatIP snapshot (earlier versions) is rebuilt from SQLite."""
    import faiss

    from codesearch.index import IndexReader, build_faiss, connect, is_current_kind, snapshots

    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idir = root / ".codesearch"
    idx(root, hash_embedder)
    [(gen, path)] = snapshots(idir)
    conn = connect(idir / DB_NAME)
    built = build_faiss(conn, hash_embedder.info.dim)
    assert is_current_kind(built) and faiss.downcast_index(built.index).code_size == 2 * hash_embedder.info.dim
    # What an earlier version wrote: the same ids over float32 vectors, and no snapshot_kind in meta.
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(hash_embedder.info.dim))
    old.add_with_ids(built.index.reconstruct_n(0, built.ntotal), faiss.vector_to_array(built.id_map))
    faiss.write_index(old, str(path))
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'snapshot_kind'")
    conn.close()
    reader = IndexReader(idir)
    try:
        with reader.snapshot():
            assert is_current_kind(reader._faiss) and reader._faiss.ntotal == built.ntotal
            q = built.index.reconstruct(0)
            assert reader.vector_search(q, 3, None)[0][0] == int(faiss.vector_to_array(built.id_map)[0])
    finally:
        reader.close()
    assert idx(root, hash_embedder).snapshot_written  # nothing changed, but the file is of the old kind
    [(_, path)] = snapshots(idir)
    assert is_current_kind(faiss.read_index(str(path)))
    assert not idx(root, hash_embedder).snapshot_written


def test_reader_follows_generations_by_delta(make_repo, hash_embedder):
    """A reader that holds an index applies each new generation's delta; it equals a fresh build."""
    import faiss

    from codesearch.index import IndexReader, build_faiss

    root = make_repo({"a.py": PY_A, "pkg/b.go": GO_B})
    idir = root / ".codesearch"
    idx(root, hash_embedder)
    reader = IndexReader(idir)
    try:
        with reader.snapshot():
            held = reader._faiss
        for i in range(3):
            (root / f"m{i}.py").write_text(f"def more_{i}():\n    return {i}\n")
            if i == 1:
                (root / "pkg/b.go").unlink()
            idx(root, hash_embedder)
            with reader.snapshot():
                assert reader._faiss is held  # followed in place, no file read
                built = build_faiss(reader.conn, reader.dim)
                assert faiss.vector_to_array(held.id_map).tolist() == faiss.vector_to_array(built.id_map).tolist()
                assert reader.generation == i + 2
    finally:
        reader.close()


def test_stale_snapshots_of_a_discarded_database_are_removed(make_repo, hash_embedder):
    """A new database numbers units from 1 again: FAISS files of the old one must not pass for its own."""
    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idir = root / ".codesearch"
    idx(root, hash_embedder)
    for i in range(3):
        (root / f"n{i}.py").write_text(f"def added_{i}():\n    return {i}\n")
        idx(root, hash_embedder)
    for suffix in ("", "-wal", "-shm"):
        (idir / (DB_NAME + suffix)).unlink(missing_ok=True)
    (root / "a.py").write_text("def other():\n    return 2\n")
    idx(root, HashEmbedder(dim=32))
    assert _snapshot_gens(idir) == [1]
    gen, mine, built = _reader_state(idir)
    assert gen == 1 and mine == built


def test_missing_or_damaged_snapshot_is_rebuilt_from_sqlite(make_repo, hash_embedder):
    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idir = root / ".codesearch"
    idx(root, hash_embedder)
    (root / "n.py").write_text("def added():\n    return 1\n")
    idx(root, hash_embedder)
    from codesearch.index import snapshots

    (_g, path), = snapshots(idir)
    path.write_bytes(b"not a faiss file")
    gen, mine, built = _reader_state(idir)
    assert gen == 2 and mine == built and len(mine[0]) == 5
    path.unlink()
    gen, mine, built = _reader_state(idir)
    assert gen == 2 and mine == built
    rep = idx(root, hash_embedder)  # the writer notices the snapshot is gone and writes one
    assert rep.snapshot_written and _snapshot_gens(idir) == [rep.generation]


def test_an_edit_keeps_the_rows_of_unchanged_units(make_repo, hash_embedder):
    """Editing one function re-adds only it: the file's other units keep their ids, lines follow the edit."""
    from codesearch.index import IndexReader

    def rows(root):
        reader = IndexReader(root / ".codesearch")
        try:
            return {r["qualified_name"]: (r["id"], r["start_line"])
                    for r in reader.conn.execute("SELECT id, qualified_name, start_line FROM units")}
        finally:
            reader.close()

    root = make_repo({"a.py": PY_A})
    idx(root, hash_embedder)
    before = rows(root)
    (root / "a.py").write_text("import time\n\n" + PY_A.replace("Parse a Cookie header", "Parse a cookie string"))
    rep = idx(root, hash_embedder)
    after = rows(root)
    assert (rep.units_added, rep.units_removed, rep.embedded) == (1, 1, 1)
    assert after["Backoff.retry"] == (before["Backoff.retry"][0], before["Backoff.retry"][1] + 2)
    assert after["Backoff"][0] == before["Backoff"][0]
    assert after["parse_cookie"][0] > max(i for i, _ in before.values())
    assert lexical_ids(root / ".codesearch", "exponentially") == {after["Backoff.retry"][0], after["Backoff"][0]}
    fresh = root.parent / "fresh"
    shutil.copytree(root, fresh, ignore=shutil.ignore_patterns(".codesearch"))
    idx(fresh, hash_embedder)
    assert index_snapshot(root / ".codesearch") == index_snapshot(fresh / ".codesearch")


def test_a_new_format_version_reuses_the_old_vectors(make_repo, hash_embedder):
    """An index of an older format version seeds the new database's vector cache: nothing is re-embedded."""
    from codesearch.errors import IndexStale
    from codesearch.index import IndexReader

    root = make_repo({"a.py": PY_A, "web/c.js": JS_C})
    idir = root / ".codesearch"
    assert idx(root, hash_embedder).embedded == 4
    for suffix in ("", "-wal", "-shm"):
        if (idir / (DB_NAME + suffix)).exists():
            (idir / (DB_NAME + suffix)).rename(idir / ("index.v0.db" + suffix))
    with pytest.raises(IndexStale):
        IndexReader(idir)
    rep = idx(root, hash_embedder)
    assert (rep.units, rep.embedded) == (4, 0)
    assert sorted(p.name for p in idir.glob("index.v*.db*")) == [n for n in sorted(p.name for p in idir.iterdir())
                                                                 if n.startswith(DB_NAME)]
    assert not list(idir.glob("index.v0.db*"))


def test_unit_ids_are_every_unit_id(make_repo, hash_embedder):
    import numpy as np

    from codesearch.index import connect, unit_ids

    root = make_repo({f"pkg/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(40)})
    index_repository(root, Settings(), embedder=hash_embedder)
    conn = connect(root / ".codesearch" / DB_NAME, readonly=True)
    want = sorted(r[0] for r in conn.execute("SELECT id FROM units"))
    got = unit_ids(conn)
    assert got.dtype == np.int64 and sorted(got.tolist()) == want and len(want) == 40
    conn.close()
