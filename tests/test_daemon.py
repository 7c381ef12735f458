"""The watch daemon: real watchdog, real files, real sockets; real processes for crash and end-to-end tests.

Waits poll with a deadline (``wait_for``); nothing sleeps for a fixed time. Index-logic tests use
HashEmbedder; the end-to-end test runs ``codesearch watch`` with the real packaged model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codesearch import client
from codesearch.cli import main
from codesearch.config import Settings
from codesearch.daemon import Daemon
from codesearch.embed import HashEmbedder
from codesearch.errors import IndexLocked, UsageError
from codesearch.indexer import index_repository
from codesearch.pending import PendingPaths
from tests.indexutil import index_snapshot

FAST = Settings(debounce_ms=50, debounce_max_ms=500)


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def py_func(name: str, doc: str, body: str = "return None") -> str:
    return f'def {name}(x):\n    """{doc}"""\n    {body}\n\n\n'


def ask(idir: Path, req: dict[str, Any]) -> dict[str, Any]:
    c = client.connect(idir, timeout=30)
    assert c is not None, "no daemon answers"
    try:
        return c.request(req)
    finally:
        c.close()


def units(idir: Path, paths: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    """Every (path, qualified name) the daemon serves (a semantic query ranks all units)."""
    resp = ask(idir, {"op": "search", "query": "anything", "mode": "semantic", "k": 10_000, "paths": list(paths)})
    return {(r["path"], r["qualified_name"]) for r in resp["results"]}


def idle(idir: Path) -> bool:
    st = client.probe(idir)
    return bool(st and st["state"] == "idle" and st["queue"] == 0 and st["last_update"])


def settle(root: Path, idir: Path, tag: str) -> None:
    """Write a sentinel file last and wait until it is searchable: every earlier event has been applied."""
    (root / f"sentinel_{tag}.py").write_text(py_func(f"sentinel_{tag}", "sentinel"))
    wait_for(lambda: ("sentinel_" + tag + ".py", "sentinel_" + tag) in units(idir), what=f"sentinel {tag}")
    wait_for(lambda: idle(idir), what="idle daemon")


def assert_reader_matches_build(d: Daemon) -> None:
    """The daemon's in-memory FAISS index (kept up to date from id deltas) equals a fresh build of its generation."""
    import faiss
    import numpy as np

    from codesearch.index import build_faiss

    with d.service._search_lock:
        reader = d.service._reader
        assert reader is not None
        with reader.snapshot():
            mine = reader._faiss
            gen = reader.generation
            ids = faiss.vector_to_array(mine.id_map)
            vecs = mine.index.reconstruct_n(0, mine.ntotal)
            other = build_faiss(reader.conn, reader.dim)
    assert gen >= 1
    assert np.array_equal(ids, faiss.vector_to_array(other.id_map))  # same order: ties break alike
    assert np.array_equal(vecs, other.index.reconstruct_n(0, other.ntotal))


def rebuild_snapshot(root: Path, tmp: Path, dim: int = 32) -> dict[str, Any]:
    """The index a full build of the tree as it is now produces (in another index directory)."""
    other = tmp / f"rebuild-{time.monotonic_ns()}"
    index_repository(root, Settings(index_dir=str(other)), embedder=HashEmbedder(dim=dim))
    return index_snapshot(other)


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({
        "pkg/cookies.py": py_func("parse_cookie", "Parse a cookie header.") + py_func("dump_cookie", "Dump one."),
        "pkg/slug.go": "package pkg\n\n// Slugify makes a slug.\nfunc Slugify(t string) string {\n\treturn t\n}\n",
        "web/config.js": "/** Read a config file. */\nfunction readConfig(p) {\n  return p;\n}\n",
        "README.md": "# demo\n",
    })


@pytest.fixture
def daemon(repo: Path) -> Iterator[Daemon]:
    d = Daemon(repo, FAST, embedder=HashEmbedder(dim=32))
    d.start()
    wait_for(lambda: idle(d.index_dir), what="start-up pass")
    yield d
    d.close()


# ---------------------------------------------------------------------------------------------------------
# debounce logic


def test_pending_paths_debounce_coalesce_and_requests():
    now = [0.0]
    p = PendingPaths(debounce=0.3, max_delay=2.0, settle=0.05, clock=lambda: now[0])
    p.add("a.py")
    now[0] = 0.2
    p.add("a.py")
    now[0] = 0.25
    p.add("b.py")
    assert p.take(0.3) is None and len(p) == 2  # a's last event was at 0.2: due at 0.5
    batch = p.take(0.5)
    assert batch is not None and batch.files == {"a.py"} and not batch.full and batch.ticket == 0
    assert p.take(0.55).files == {"b.py"}
    now[0] = 0.6
    p.add("saved.py")  # written ...
    now[0] = 0.61
    p.add("saved.py", settled=True)  # ... and closed: due after the short settle time
    assert p.take(0.65) is None and p.take(0.66).files == {"saved.py"}
    for i in range(30):  # a file written every 0.1 s never settles: the max delay takes it
        now[0] = 1.0 + i / 10
        p.add("busy.py")
        got = p.take(now[0])
        if got is not None:
            break
    assert got.files == {"busy.py"} and now[0] == pytest.approx(3.0)
    p.add("dir", is_dir=True)
    p.add("c.py")
    ticket = p.request(["c.py"])
    batch = p.take(now[0])  # requested paths are due at once; the directory still waits
    assert batch.files == {"c.py"} and batch.ticket == ticket and batch.reason == "request"
    t2 = p.request(None)
    batch = p.take(now[0])
    assert batch.full and batch.dirs == {"dir"} and batch.ticket == t2 and len(p) == 0
    assert p.next_due() is None
    p.close()
    assert p.wait(timeout=5) is None


# ---------------------------------------------------------------------------------------------------------
# file and directory events (in-process daemon, real watchdog)


def test_pending_drop_if_keeps_entries_that_got_another_event():
    now = [0.0]
    p = PendingPaths(debounce=0.3, max_delay=2.0, clock=lambda: now[0])
    p.add("a.py")
    p.add("b.py")
    p.add("pkg", is_dir=True)

    def unchanged(rel: str) -> bool:
        if rel == "b.py":
            now[0] += 0.01
            p.add("b.py")  # another event while it was checked: kept
        return True

    assert p.drop_if(["a.py", "b.py", "pkg", "c.py"], unchanged) == 1  # directories are never dropped
    assert len(p) == 2
    batch = p.take(now[0] + 1)
    assert batch is not None and batch.files == {"b.py"} and batch.dirs == {"pkg"}


def test_events_of_writes_already_indexed_cause_no_update(daemon: Daemon, repo: Path):
    """An event whose file is as the index recorded it (same size and mtime) is dropped: the write it
    reports was indexed, e.g. by a re-index request that finished before watchdog delivered the event."""
    idir = daemon.index_dir
    before = client.probe(idir)
    with open(repo / "pkg" / "cookies.py", "a"):  # opened for writing and closed: an event, no change
        pass
    wait_for(lambda: client.probe(idir)["events"] > before["events"], what="the close event")
    time.sleep(0.3)  # past the debounce: an update would have run
    after = client.probe(idir)
    assert after["updates"] == before["updates"] and after["queue"] == 0
    assert after["events_ignored"] > before["events_ignored"]
    (repo / "pkg" / "cookies.py").write_text(py_func("parse_cookie", "Parse a cookie header.") + py_func("eat", "Eat."))
    wait_for(lambda: ("pkg/cookies.py", "eat") in units(idir), what="a real change still indexed")


def test_a_reindex_request_answers_fresh(daemon: Daemon, repo: Path):
    """The answer to a waited re-index counts nothing pending: the update it waited for is over, and the
    watcher's late event for the same write is not a change."""
    for i in range(5):
        (repo / f"fresh{i}.py").write_text(py_func(f"fresh_{i}", "Fresh."))
        out = daemon.service.reindex((f"fresh{i}.py",))
        assert out["pending"] == 0 and out["report"]["files_changed"] == 1, out
        time.sleep(0.2)  # the write's event arrives (it is dropped: the file is as indexed)
        assert daemon.service.freshness()["pending"] == 0


def test_edit_add_delete_rename_atomic_save(daemon: Daemon, repo: Path):
    idir = daemon.index_dir
    assert units(idir) == {("pkg/cookies.py", "parse_cookie"), ("pkg/cookies.py", "dump_cookie"),
                           ("pkg/slug.go", "Slugify"), ("web/config.js", "readConfig")}
    emb = daemon.embedder.inner  # the HashEmbedder behind the daemon's parallel wrapper
    emb.calls.clear()

    # edit one function of two: only its unit is re-embedded
    (repo / "pkg/cookies.py").write_text(py_func("parse_cookie_v2", "Parse a cookie header.")
                                         + py_func("dump_cookie", "Dump one."))
    wait_for(lambda: ("pkg/cookies.py", "parse_cookie_v2") in units(idir), what="edit")
    assert ("pkg/cookies.py", "parse_cookie") not in units(idir)
    assert len(emb.calls) == 1 and "parse_cookie_v2" in emb.calls[0]

    # add
    (repo / "pkg/new.py").write_text(py_func("brand_new", "A new function."))
    wait_for(lambda: ("pkg/new.py", "brand_new") in units(idir), what="add")

    # rename a file
    os.rename(repo / "pkg/new.py", repo / "pkg/renamed.py")
    wait_for(lambda: {u for u in units(idir) if u[1] == "brand_new"} == {("pkg/renamed.py", "brand_new")},
             what="rename")

    # an editor's atomic save: write a temporary file, then rename it over the original
    tmp = repo / "web/.config.js.swp"
    tmp.write_text("/** Read it. */\nfunction readConfigAtomically(p) {\n  return p;\n}\n")
    os.replace(tmp, repo / "web/config.js")
    wait_for(lambda: ("web/config.js", "readConfigAtomically") in units(idir), what="atomic save")
    assert ("web/config.js", "readConfig") not in units(idir)

    # delete
    (repo / "pkg/slug.go").unlink()
    wait_for(lambda: not any(p == "pkg/slug.go" for p, _ in units(idir)), what="delete")

    # a file that no longer parses as UTF-8 is reported, not silently dropped
    (repo / "pkg/broken.py").write_bytes(b"def f():\n    return '\xff\xfe'\n")
    st = wait_for(lambda: (s := client.probe(idir)) and s.get("not_indexed") and s, what="not_indexed")
    assert [f["path"] for f in st["not_indexed"]] == ["pkg/broken.py"]
    settle(repo, idir, "x")
    assert index_snapshot(idir) == rebuild_snapshot(repo, repo.parent)
    assert_reader_matches_build(daemon)


def test_directory_create_move_delete(daemon: Daemon, repo: Path, tmp_path: Path):
    idir = daemon.index_dir
    (repo / "lib/deep/er").mkdir(parents=True)
    (repo / "lib/deep/er/a.py").write_text(py_func("in_new_dir", "Made in a new directory."))
    wait_for(lambda: ("lib/deep/er/a.py", "in_new_dir") in units(idir), what="file in new directory")

    # a directory moved in from outside the watched tree
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub/b.py").write_text(py_func("moved_in", "Moved in."))
    (outside / "c.py").write_text(py_func("moved_in_too", "Moved in too."))
    os.rename(outside, repo / "imported")
    wait_for(lambda: {("imported/sub/b.py", "moved_in"), ("imported/c.py", "moved_in_too")} <= units(idir),
             what="directory moved in")

    # a directory renamed inside the tree
    os.rename(repo / "lib", repo / "library")
    wait_for(lambda: ("library/deep/er/a.py", "in_new_dir") in units(idir)
             and not any(p.startswith("lib/") for p, _ in units(idir)), what="directory rename")

    # a directory moved out of the tree (no event for its files) and one deleted
    os.rename(repo / "imported", tmp_path / "gone")
    shutil.rmtree(repo / "library")
    wait_for(lambda: not any(p.startswith(("imported/", "library/")) for p, _ in units(idir)),
             what="directories gone")
    settle(repo, idir, "d")
    assert index_snapshot(idir) == rebuild_snapshot(repo, tmp_path)


def test_ignored_paths_cause_no_work(daemon: Daemon, repo: Path):
    idir = daemon.index_dir
    start = client.probe(idir)
    (repo / ".gitignore").write_text("generated/\n*.min.js\n")  # at the root: a full pass
    wait_for(lambda: client.probe(idir)["updates"] > start["updates"] and idle(idir), what="root .gitignore pass")
    before = client.probe(idir)
    assert before["last_update"]["full"]
    emb = daemon.embedder.inner
    emb.calls.clear()
    (repo / "generated").mkdir()
    (repo / "generated/g.py").write_text(py_func("generated_fn", "x"))
    (repo / "node_modules/pkg").mkdir(parents=True)
    (repo / "node_modules/pkg/index.js").write_text("function inNodeModules() {}\n")
    (repo / "app.min.js").write_text("function minified() {}\n")
    (repo / "notes.txt").write_text("not source\n")
    (idir / "scratch.py").write_text(py_func("in_index_dir", "x"))
    (repo / "pkg/sentinel.py").write_text(py_func("sentinel_fn", "x"))
    wait_for(lambda: ("pkg/sentinel.py", "sentinel_fn") in units(idir) and idle(idir), what="sentinel")
    after = client.probe(idir)
    assert after["updates"] == before["updates"] + 1  # one update, for the sentinel only
    assert after["full_passes"] == before["full_passes"]  # and not a whole-tree pass
    assert after["last_update"]["paths_checked"] == 1
    assert after["events_ignored"] > before["events_ignored"]
    assert [c for c in emb.calls if "sentinel_fn" not in c] == []
    names = {n for _, n in units(idir)}
    assert not names & {"generated_fn", "inNodeModules", "minified", "in_index_dir"}

    # a rule added to a nested ignore file drops what it now covers
    (repo / "pkg/.codesearchignore").write_text("sentinel.py\n")
    wait_for(lambda: ("pkg/sentinel.py", "sentinel_fn") not in units(idir), what="newly ignored file removed")
    assert ("pkg/cookies.py", "parse_cookie") in units(idir)


def test_storm_of_events_equals_full_rebuild(daemon: Daemon, repo: Path, tmp_path: Path):
    """About 600 mixed events, as a branch switch makes them; the result equals a rebuild of the final tree."""
    idir = daemon.index_dir
    for i in range(80):
        (repo / f"src/m{i // 20}").mkdir(parents=True, exist_ok=True)
        text = py_func(f"fn_{i}", f"Function {i}.") + py_func(f"aux_{i}", "Aux.")
        (repo / f"src/m{i // 20}/f{i}.py").write_text(text)
    settle(repo, idir, "s1")
    for i in range(80):
        p = repo / f"src/m{i // 20}/f{i}.py"
        if i % 5 == 0:
            p.unlink()
        elif i % 5 == 1:
            os.rename(p, p.with_name(f"r{i}.py"))
        elif i % 5 == 2:
            p.write_text(py_func(f"fn_{i}_changed", "Changed.") + py_func(f"aux_{i}", "Aux."))
        elif i % 5 == 3:
            t = p.with_name(f".f{i}.tmp")
            t.write_text(py_func(f"fn_{i}_atomic", "Atomic.") + py_func(f"aux_{i}", "Aux."))
            os.replace(t, p)
    for i in range(120):
        d = repo / f"new/n{i // 30}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"g{i}.py").write_text(py_func(f"gen_{i}", f"Generated {i}."))
        if i % 4 == 0:
            (d / f"g{i}.py").write_text(py_func(f"gen_{i}_v2", f"Generated {i} again."))
    os.rename(repo / "src/m3", repo / "src/m3_moved")
    shutil.rmtree(repo / "new/n2")
    os.rename(repo / "new/n1", repo / "src/n1")
    settle(repo, idir, "s2")
    st = client.probe(idir)
    assert st["events"] > 500
    assert index_snapshot(idir) == rebuild_snapshot(repo, tmp_path)
    assert_reader_matches_build(daemon)


def test_queries_see_old_or_new_state_never_a_mix(daemon: Daemon, repo: Path):
    idir = daemon.index_dir
    versions = [{f"alpha_{i}" for i in range(6)}, {f"beta_{i}" for i in range(6)}]

    def write(v: int) -> None:
        tmp = repo / ".mixed.py.tmp"
        tmp.write_text("".join(py_func(n, f"Doc of {n}.") for n in sorted(versions[v])))
        os.replace(tmp, repo / "mixed.py")

    def names() -> set[str]:
        return {n for _, n in units(idir, ("mixed.py",))}

    write(0)
    wait_for(lambda: names() == versions[0], what="first version")
    seen: list[set[str]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def hammer() -> None:
        c = client.connect(idir, timeout=30)
        assert c is not None
        try:
            while not done.is_set():
                resp = c.request({"op": "search", "query": "doc", "mode": "hybrid", "k": 100, "paths": ["mixed.py"]})
                seen.append({r["name"] for r in resp["results"]})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for round_ in range(1, 9):
            write(round_ % 2)
            wait_for(lambda r=round_: names() == versions[r % 2], what=f"version of round {round_}")
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert not errors
    assert len(seen) > 20
    assert all(s in versions for s in seen), [s for s in seen if s not in versions][:3]


# ---------------------------------------------------------------------------------------------------------
# protocol robustness, permissions, writers


def test_bad_requests_get_json_errors_and_the_daemon_survives(daemon: Daemon):
    idir = daemon.index_dir
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(client.socket_path(idir)))
        f = s.makefile("rwb")
        for line, message in [
            (b"this is not json", "bad JSON"),
            (b"[1, 2]", "JSON object"),
            (b'{"op": "launch"}', "unknown op"),
            (b'{"op": "search", "query": 5}', "query must be a string"),
            (b'{"op": "search", "query": "x", "k": "ten"}', "k must be"),
            (b'{"op": "search", "query": "x", "mode": "psychic"}', "unknown mode"),
            (b'{"op": "search", "query": "x", "paths": "notalist"}', "paths must be"),
            (b'{"op": "search", "query": "x", "settings": {"k": -3}}', "at least 1"),
            (b'{"op": "search", "query": "   "}', "empty query"),
            (b'{"op": "search", "query": "x", "languages": ["cobol"]}', "unknown language"),
            (b'{"op": "reindex", "paths": ["../../etc/passwd"]}', "not inside"),
        ]:
            f.write(line + b"\n")
            f.flush()
            resp = json.loads(f.readline())
            assert message in resp["error"], (line, resp)
        f.write(b'{"op": "ping"}\n')
        f.flush()
        assert json.loads(f.readline())["ok"] is True
    with socket.socket(socket.AF_UNIX) as s:  # a client that leaves mid-request
        s.connect(str(client.socket_path(idir)))
        s.sendall(b'{"op": "sea')
    with pytest.raises(UsageError, match="empty query"):
        ask(idir, {"op": "search", "query": ""})
    assert ask(idir, {"op": "ping"})["pid"] == os.getpid()
    assert units(idir)


def test_socket_and_pid_file_are_private(daemon: Daemon):
    sock = client.socket_path(daemon.index_dir)
    assert sock.parent == daemon.index_dir
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(client.pid_path(daemon.index_dir)).st_mode) == 0o600
    assert client.read_pid_file(daemon.index_dir)["pid"] == os.getpid()
    daemon.close()
    assert not sock.exists() and not client.pid_path(daemon.index_dir).exists()


def test_long_index_path_uses_a_private_socket_dir(repo: Path, tmp_path: Path):
    long_dir = tmp_path / ("x" * 60) / ("y" * 60) / "index"
    settings = FAST.replace(index_dir=str(long_dir))
    d = Daemon(repo, settings, embedder=HashEmbedder(dim=32))
    d.start()
    try:
        sock = client.socket_path(long_dir.resolve())
        assert sock.parent != long_dir and len(str(sock)) < 100
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        wait_for(lambda: idle(long_dir.resolve()), what="start-up pass")
        assert ("pkg/slug.go", "Slugify") in units(long_dir.resolve())
    finally:
        d.close()
    assert not client.socket_path(long_dir.resolve()).exists()


def test_one_writer_second_daemon_refused_index_handed_off(daemon: Daemon, repo: Path, capsys):
    with pytest.raises(IndexLocked, match="pid"):
        index_repository(repo, Settings(), embedder=HashEmbedder(dim=32))
    with pytest.raises(IndexLocked, match="already keeps"):
        Daemon(repo, FAST, embedder=HashEmbedder(dim=32)).start()
    assert client.socket_path(daemon.index_dir).exists()  # the refused one removed nothing
    (repo / "pkg/late.py").write_text(py_func("late_fn", "Late."))
    code = main(["index", str(repo), "--json"])  # handed to the daemon: it runs the pass
    out, err = capsys.readouterr()
    assert code == 0 and "the watch daemon" in err
    assert json.loads(out)["files"] == 4
    assert ("pkg/late.py", "late_fn") in units(daemon.index_dir)
    code = main(["watch", str(repo)])
    assert code == 1 and "already keeps" in capsys.readouterr().err
    code = main(["status", "--repo", str(repo), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["daemon"]["pid"] == os.getpid() and info["daemon"]["state"] == "idle"
    code = main(["watch", "--status", str(repo), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["units"] == info["units"]


def test_stale_socket_and_pid_file_are_cleaned(repo: Path, capsys):
    idir = repo / ".codesearch"
    idir.mkdir()
    with socket.socket(socket.AF_UNIX) as s:  # a socket whose owner is gone: connections are refused
        s.bind(str(client.socket_path(idir)))
    client.pid_path(idir).write_text(json.dumps({"pid": 999_999_999}))
    code = main(["watch", "--status", str(repo)])
    assert code == 1 and "no watch daemon is running" in capsys.readouterr().err
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()
    assert main(["watch", "--stop", str(repo)]) == 0
    assert "no watch daemon" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# real daemon processes

SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from codesearch.config import Settings
    from codesearch.daemon import Daemon
    from codesearch.embed import HashEmbedder

    class SlowEmbedder(HashEmbedder):
        def encode(self, texts, kind="document"):
            if kind == "document":
                time.sleep(0.2)
            return super().encode(texts, kind)

    sys.exit(Daemon(Path(sys.argv[1]), Settings(debounce_ms=300), embedder=SlowEmbedder(dim=32)).run())
""")


def start_process(root: Path) -> subprocess.Popen[bytes]:
    log = root.parent / f"daemon-{time.monotonic_ns()}.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], stderr=f)
    idir = root / ".codesearch"
    wait_for(lambda: proc.poll() is not None or client.probe(idir), timeout=60, what="daemon process")
    assert proc.poll() is None, log.read_text()
    return proc


def burst_until_embedding(repo: Path, idir: Path, tag: str) -> None:
    """Write 150 new files and wait until the daemon is embedding them."""
    (repo / tag).mkdir()
    for i in range(150):
        (repo / f"{tag}/b{i}.py").write_text(py_func(f"{tag}_{i}", f"Burst {i}.") + py_func(f"more_{i}", "More."))

    def embedding() -> bool:
        cur = (client.probe(idir) or {}).get("current") or {}
        return cur.get("reason") == "events" and cur.get("phase") == "embed"

    wait_for(embedding, timeout=30, what="an update embedding the burst")


def test_sigterm_and_kill_9_mid_update_then_restart_equals_rebuild(repo: Path, tmp_path: Path, capsys):
    idir = repo / ".codesearch"
    proc = start_process(repo)
    try:  # SIGTERM in the middle of an update: a clean exit that abandons the update
        wait_for(lambda: idle(idir), timeout=30, what="start-up pass")
        burst_until_embedding(repo, idir, "first")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()
    assert index_snapshot(idir, cached_extra=True)

    proc = start_process(repo)
    try:  # kill -9 in the middle of an update
        wait_for(lambda: idle(idir), timeout=60, what="reconciling start-up pass")
        assert ("first/b149.py", "first_149") in units(idir)
        assert index_snapshot(idir) == rebuild_snapshot(repo, tmp_path)
        burst_until_embedding(repo, idir, "second")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert client.socket_path(idir).exists() and client.pid_path(idir).exists()  # left behind
    assert client.probe(idir) is None  # connection refused: cleaned on the way
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()
    assert index_snapshot(idir, cached_extra=True)  # the last committed generation is intact and consistent

    proc = start_process(repo)  # the start-up pass reconciles the index with the tree
    try:
        wait_for(lambda: idle(idir), timeout=60, what="reconciling start-up pass")
        assert ("second/b149.py", "second_149") in units(idir)
        assert index_snapshot(idir) == rebuild_snapshot(repo, tmp_path)
        assert main(["watch", "--stop", str(repo)]) == 0
        assert "stopped the watch daemon" in capsys.readouterr().err
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()


def _floats_apart(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: floats beyond 1e-5, anything else at all."""
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= 1e-5 else [f"{path}: {a} != {b}"]
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in _floats_apart(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _floats_apart(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def assert_same_hits(remote: list[dict[str, Any]], local: list[dict[str, Any]]) -> None:
    """The daemon's hits are the in-process ones: the same units in the same order with the same records; the
    scores equal up to float rounding (the daemon encodes on ONNX Runtime, a one-shot query on numpy: the
    same vectors to a cosine of 0.9999999)."""
    assert remote and not _floats_apart(remote, local), _floats_apart(remote, local)


def test_cli_watch_end_to_end_with_the_real_model(make_repo, capsys):
    """`codesearch watch` as a process: warm queries equal in-process ones; edits become searchable; SIGTERM."""
    root = make_repo({
        "http/cookies.py": py_func("parse_cookie_header", "Parse an HTTP Cookie header into a dict of names and "
                                   "values.", "return dict(p.split('=', 1) for p in x.split('; '))"),
        "util/retry.py": py_func("call_with_backoff", "Call fn until it succeeds, waiting exponentially longer "
                                 "after each failure.", "return x()"),
        "text/slug.go": "package text\n\n// Slugify lowercases a title and joins its words with dashes.\n"
                        "func Slugify(title string) string {\n\treturn title\n}\n",
    }, name="e2e")
    idir = root / ".codesearch"
    exe = Path(sys.executable).parent / "codesearch"
    log_path = root.parent / "watch.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen([str(exe), "watch", str(root), "-v"], stderr=log_file)
    try:
        from codesearch.config import load_settings

        settings = load_settings(root)
        wait_for(lambda: proc.poll() is not None or idle(idir), timeout=120, what="daemon start-up pass")
        assert proc.poll() is None
        local = client.QueryRunner(idir, settings, use_daemon=False)
        remote = client.QueryRunner(idir, settings)
        assert remote.via == "daemon" and local.via == "local"
        for args in [("read the cookies a browser sent", None, ()), ("retry with exponential delay", "semantic", ()),
                     ("slug title", "lexical", ()), ("parse header", "hybrid", ("go",))]:
            text, mode, langs = args
            assert_same_hits(remote.search(text, k=5, mode=mode, languages=langs),
                             local.search(text, k=5, mode=mode, languages=langs))
        code = main(["query", "exponential backoff", "--repo", str(root), "--json", "-k", "1"])
        assert code == 0 and json.loads(capsys.readouterr().out)["name"] == "call_with_backoff"

        # an atomic save adding a function: searchable through the daemon within the deadline
        tmp = root / "util/.retry.py.tmp"
        tmp.write_text((root / "util/retry.py").read_text()
                       + py_func("compute_crc32_checksum", "Compute the CRC-32 checksum of a byte string.",
                                 "return zlib.crc32(x)"))
        os.replace(tmp, root / "util/retry.py")
        wait_for(lambda: remote.search("checksum of bytes", k=1, mode="semantic")[0]["name"]
                 == "compute_crc32_checksum", timeout=30, what="the new function")
        assert_same_hits(remote.search("checksum of bytes", k=3), local.search("checksum of bytes", k=3))
        remote.close()
        local.close()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log = log_path.read_text()
        assert "re-indexed 1 files" in log and "util/retry.py" in log
    finally:
        if proc.poll() is None:
            proc.kill()
        log_file.close()
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()
    assert client.QueryRunner(idir, settings).via == "local"  # without a daemon, queries run in-process


def test_detach_then_stop(make_repo, capsys):
    """`codesearch watch --detach` returns once the background daemon answers; --stop ends it."""
    root = make_repo({"a.py": py_func("detached_fn", "Runs in the background.")}, name="detached")
    idir = root / ".codesearch"
    assert main(["watch", "--detach", str(root)]) == 0
    assert "in the background" in capsys.readouterr().err
    info = client.probe(idir)
    assert info is not None and info["pid"] != os.getpid()
    pid = info["pid"]
    try:
        wait_for(lambda: idle(idir), timeout=60, what="start-up pass")
        assert ("a.py", "detached_fn") in units(idir)
        assert main(["watch", "--detach", str(root)]) == 1  # one daemon per index
        assert "already keeps" in capsys.readouterr().err
    finally:
        assert main(["watch", "--stop", str(root)]) == 0
    _, status = os.waitpid(pid, 0)  # the daemon is this process's child here: reap it
    assert os.waitstatus_to_exitcode(status) == 0
    assert not client.socket_path(idir).exists() and not client.pid_path(idir).exists()
    assert "watching" in (idir / client.LOG_NAME).read_text()


def test_find_repo_agrees_with_the_searcher(tmp_path: Path):
    from codesearch.search import find_repo

    (tmp_path / "r/.codesearch").mkdir(parents=True)
    (tmp_path / "r/a/b").mkdir(parents=True)
    for start in (tmp_path / "r/a/b", tmp_path / "r", tmp_path):
        assert client.find_repo(start) == find_repo(start)
    assert client.index_dir_for(tmp_path, None) == tmp_path / ".codesearch"


def test_trim_heap_gives_freed_memory_back():
    """After an update the daemon trims the C heap: freed blocks below a live one go back to the system."""
    from codesearch.service import rss_mb
    from codesearch.updater import trim_heap

    blocks = [bytes(2048) for _ in range(100_000)]  # 200 MB of malloc'd blocks (too large for pymalloc)
    keep = blocks[-1]  # the top of the heap stays in use, so free() alone cannot shrink it
    del blocks
    before = rss_mb()["rss_mb"]
    trim_heap()
    after = rss_mb()["rss_mb"]
    assert keep and before - after > 100, (before, after)
