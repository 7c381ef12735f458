"""Talking to a running ``codesearch watch`` daemon: where it listens, a small client, stale files.

The daemon of a repository listens on a Unix domain socket inside its index directory
(``INDEX_DIR/daemon.sock``, mode 0600; see :func:`socket_path` for paths too long for a socket) and
records itself in ``INDEX_DIR/daemon.pid``. The protocol is one JSON object per line in each
direction; every request has an ``op``:

- ``{"op": "search", "query": str, "k": int|null, "mode": str|null, "languages": [...], "paths": [...],
  "kinds": [...], "settings": {...}}`` -> ``{"results": [hit_record(hit, explain=True), ...], "generation": int}``
- ``{"op": "get", "id": int} | {"op": "get", "path": str, "line": int, "max_bytes": int?}`` -> ``{"unit": {...,
  "code": str, "truncated": bool}, ...freshness}``: one unit's full indexed text
- ``{"op": "similar", "id" | "path" + "line" | "code": ..., "k", "languages", "paths", "kinds"}`` ->
  ``{"results": [...], ...freshness}``: the units nearest to a unit or a snippet
- ``{"op": "status"}`` -> queue length, state, last update, units, files not indexed, memory, ...
- ``{"op": "reindex", "paths": [...] | null, "wait": bool}`` -> re-check those paths (null: the whole tree)
- ``{"op": "stop"}`` -> ``{"ok": true}``, then the daemon shuts down
- ``{"op": "ping"}`` -> ``{"ok": true, "pid": int, "version": str}``

Answers to searches carry their freshness: ``generation`` (the index generation read), ``pending``
(changes seen but not yet applied), ``state`` and ``updated_at``. ``version`` is :func:`build_id`: a
client that finds a daemon of another build stops it and starts its own (:func:`ensure_daemon`).

A failed request is answered ``{"error": message, "type": error class}`` and the connection stays
usable. This module imports nothing heavy: ``codesearch query`` uses it before deciding whether it
needs numpy, faiss and torch at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .types import Hit

SOCKET_NAME = "daemon.sock"
PID_NAME = "daemon.pid"
LOG_NAME = "daemon.log"
#: Longest socket path used as is (the kernel's limit is 107 bytes).
_MAX_SOCKET_PATH = 100
#: Longest request or response line accepted.
MAX_LINE = 16 << 20


_BUILD_ID: str | None = None


def build_id() -> str:
    """This codesearch's identity: a hash of its Python sources.

    Two processes with the same build id run the same code; an upgrade, or a development checkout
    that changed any module, gets a new one, so a daemon left running from before is noticed.
    """
    global _BUILD_ID
    if _BUILD_ID is None:
        digest = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            digest.update(path.name.encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
        _BUILD_ID = digest.hexdigest()[:16]
    return _BUILD_ID


class DaemonUnavailable(Exception):
    """No usable daemon (none running, it went away mid-request, or it cannot answer this request)."""


def find_repo(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.codesearch/`` (as ``search.find_repo``, import-light)."""
    start = start.resolve()
    for cand in (start, *start.parents):
        if (cand / ".codesearch").is_dir():
            return cand
    return None


def index_dir_for(repo: Path, index_dir: str | None) -> Path:
    """The index directory of ``repo``: the same rule as ``index.find_index_dir`` (kept import-light)."""
    return Path(index_dir).expanduser().resolve() if index_dir else repo / ".codesearch"


def socket_path(index_dir: Path) -> Path:
    """Where the daemon of ``index_dir`` listens.

    ``INDEX_DIR/daemon.sock`` unless that path is too long for a Unix socket; then a name derived
    from the index directory inside a private per-user directory (``$TMPDIR/codesearch-UID``, mode 0700).
    """
    path = index_dir / SOCKET_NAME
    if len(os.fsencode(str(path))) <= _MAX_SOCKET_PATH:
        return path
    import tempfile

    digest = hashlib.sha256(os.fsencode(str(index_dir))).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"codesearch-{os.getuid()}" / f"{digest}.sock"


def private_socket_dir(path: Path) -> None:
    """Create the parent of a fallback socket path as a directory only this user can enter."""
    parent = path.parent
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    st = parent.lstat()
    if st.st_uid != os.getuid() or (st.st_mode & 0o077) or not parent.is_dir() or parent.is_symlink():
        raise errors.UsageError(f"{parent} is not a private directory of this user; cannot put the daemon's "
                                "socket there")


def pid_path(index_dir: Path) -> Path:
    """The daemon's pid file."""
    return index_dir / PID_NAME


def read_pid_file(index_dir: Path) -> dict[str, Any] | None:
    """The daemon's pid file contents, or None if missing or unreadable."""
    try:
        data = json.loads(pid_path(index_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


@contextlib.contextmanager
def _writer_lock_if_free(index_dir: Path) -> Iterator[bool]:
    """Hold the index's writer lock for the block if no one else holds it; yields whether it was free."""
    from .index import LOCK_NAME

    try:
        fd = os.open(index_dir / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        yield True
        return
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # closing drops the lock if we took it


def writer_lock_free(index_dir: Path) -> bool:
    """Whether no process holds the index's writer lock right now (checked without keeping it)."""
    with _writer_lock_if_free(index_dir) as free:
        return free


def clean_stale(index_dir: Path) -> bool:
    """Remove the socket and pid file of a daemon that is gone (one that crashed or was killed).

    Done only while holding the writer lock, which a live daemon holds for its whole life, so a
    daemon that is starting cannot lose its fresh socket to this.

    Returns:
        True if something was removed.
    """
    sock, pid = socket_path(index_dir), pid_path(index_dir)
    if not (sock.exists() or pid.exists()):
        return False
    removed = False
    with _writer_lock_if_free(index_dir) as free:
        if not free:
            return False
        for path in (sock, pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
    return removed


class DaemonClient:
    """One connection to a daemon.

    Args:
        index_dir: The index directory the daemon serves.
        connect_timeout: Seconds to wait for the connection.
        timeout: Seconds to wait for each answer (None: no limit).

    Raises:
        DaemonUnavailable: nothing listens there (a stale socket is cleaned on the way).
    """

    def __init__(self, index_dir: Path, connect_timeout: float = 0.5, timeout: float | None = 30.0) -> None:
        self.index_dir = index_dir
        self.path = socket_path(index_dir)
        self.timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ECONNREFUSED:
                clean_stale(index_dir)
            elif isinstance(exc, FileNotFoundError) and pid_path(index_dir).exists():
                clean_stale(index_dir)
            raise DaemonUnavailable(f"no daemon at {self.path}: {exc.strerror or exc}") from None
        sock.settimeout(timeout)
        self._sock = sock
        self._buf = b""

    def request(self, req: dict[str, Any], timeout: float | None | bool = False) -> dict[str, Any]:
        """Send one request and return the answer.

        Args:
            req: The request object.
            timeout: Seconds to wait for this answer (None: no limit; False: the client's default).

        Raises:
            DaemonUnavailable: the daemon went away, did not answer in time, or cannot serve this request.
            CodesearchError: the daemon answered with one of our errors (the same one an in-process
                call would raise, e.g. UsageError for a bad query).
        """
        self._sock.settimeout(self.timeout if timeout is False else timeout)
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
            line = self._read_line()
        except OSError as exc:
            raise DaemonUnavailable(f"daemon connection failed: {exc}") from None
        try:
            resp = json.loads(line)
        except ValueError:
            raise DaemonUnavailable("daemon sent a malformed answer") from None
        if not isinstance(resp, dict):
            raise DaemonUnavailable("daemon sent a malformed answer")
        if "error" in resp:
            cls = getattr(errors, str(resp.get("type")), None)
            if isinstance(cls, type) and issubclass(cls, errors.CodesearchError):
                raise cls(str(resp["error"]))
            raise DaemonUnavailable(str(resp["error"]))
        return resp

    def _read_line(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionResetError("daemon closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise ConnectionResetError("answer too long")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(index_dir: Path, connect_timeout: float = 0.5, timeout: float | None = 30.0) -> DaemonClient | None:
    """A connection to the daemon serving ``index_dir``, or None if there is none."""
    try:
        return DaemonClient(index_dir, connect_timeout=connect_timeout, timeout=timeout)
    except DaemonUnavailable:
        return None


def probe(index_dir: Path, timeout: float = 10.0) -> dict[str, Any] | None:
    """The status of the daemon serving ``index_dir``, or None if none runs.

    A daemon that accepts the connection but does not answer within ``timeout`` seconds is
    reported as ``{"state": "not answering", ...}`` with the pid from its pid file.
    """
    client = connect(index_dir, timeout=timeout)
    if client is None:
        return None
    try:
        return client.request({"op": "status"})
    except (DaemonUnavailable, errors.CodesearchError) as exc:
        info = read_pid_file(index_dir) or {}
        return {"pid": info.get("pid"), "root": info.get("root"), "state": "not answering", "queue": "?",
                "error": str(exc)}
    finally:
        client.close()


def hit_record(hit: Hit, explain: bool) -> dict[str, Any]:
    """The JSON shape of one result (``codesearch query --json`` and the daemon's answers)."""
    s = hit.symbol
    out: dict[str, Any] = {
        "path": s.path, "start_line": s.start_line, "end_line": s.end_line, "name": s.name,
        "qualified_name": s.qualified_name, "kind": s.kind, "language": s.language, "role": s.role,
        "score": round(hit.score, 6), "signature": s.signature, "summary": s.summary,
    }
    if hit.unit_id is not None:
        out["id"] = hit.unit_id
    if hit.repo is not None:
        out["repo"] = hit.repo
    if explain:
        out["explain"] = {"semantic_rank": hit.semantic_rank, "semantic_score": hit.semantic_score,
                          "lexical_rank": hit.lexical_rank, "lexical_score": hit.lexical_score}
    return out


def spawn_daemon(root: Path, index_dir: Path, model: str | None = None, verbose: bool = False,
                 idle_seconds: int = 0) -> int:
    """Start ``codesearch watch ROOT`` in its own session, detached (log: ``INDEX_DIR/daemon.log``).

    Returns:
        The new process's pid (it may still be loading; :func:`wait_for_daemon` waits for it).
    """
    import sys

    index_dir.mkdir(parents=True, exist_ok=True)
    log_path = index_dir / LOG_NAME
    # -P: the working directory is not put on sys.path, so a repository's own top-level modules
    # (a `logging/` or `types.py` of its own) cannot shadow the standard library in the daemon.
    cmd = [sys.executable, "-P", "-m", "codesearch.cli", "watch", str(root), "--index-dir", str(index_dir)]
    cmd += (["--model", model] if model else []) + (["-v"] if verbose else [])
    cmd += ["--idle-seconds", str(idle_seconds)] if idle_seconds else []
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return os.posix_spawn(sys.executable, cmd, dict(os.environ), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)])
    finally:
        os.close(log_fd)


def wait_for_daemon(index_dir: Path, pid: int, timeout: float = 300.0) -> dict[str, Any]:
    """Wait until the daemon ``pid`` answers on its socket; its status.

    Raises:
        CodesearchError: it exited first (with the last lines of its log), or did not answer in time.
    """
    import time

    deadline = time.monotonic() + timeout
    log_path = index_dir / LOG_NAME
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise errors.CodesearchError("the watch daemon did not start: "
                                         + (" / ".join(tail) or f"exit {os.waitstatus_to_exitcode(status)}"))
        info = probe(index_dir, timeout=1.0)
        if info is not None and info.get("pid") == pid:
            return info
        time.sleep(0.1)
    raise errors.CodesearchError(f"the watch daemon (pid {pid}) did not answer within {timeout:.0f}s; see {log_path}")


def ensure_daemon(root: Path, index_dir: Path, idle_seconds: int) -> tuple[str, int | None]:
    """Make sure a daemon of this build serves an indexed repository, without waiting for it to load.

    Used by ``codesearch query`` and ``codesearch mcp`` (when ``Settings.auto_daemon`` is on): a
    daemon that answers with another :func:`build_id` is stopped and replaced; with none running,
    one is started in the background (it exits after ``idle_seconds`` without work). Nothing is
    started for a repository without an index, or while another process holds the writer lock (an
    index run, a daemon still loading).

    Returns:
        ("running" (one of this build answers), "started", "replaced" or "skipped", the pid of a daemon
        this call started or None).
    """
    replaced = False
    c = connect(index_dir, timeout=5.0)
    if c is not None:
        try:
            version = c.request({"op": "ping"}).get("version")
        except (DaemonUnavailable, errors.CodesearchError):
            version = None
        finally:
            c.close()
        if version == build_id():
            return "running", None
        if version is None:
            return "skipped", None  # it does not answer (busy or wedged): leave it to `codesearch watch --stop`
        import logging

        logging.getLogger(__name__).info("replacing a daemon of another codesearch build (%s)", version)
        try:
            stop_daemon(index_dir, timeout=30.0)
        except errors.IndexLocked:
            return "skipped", None
        replaced = True
    if not any(index_dir.glob("index.v*.db")) or not writer_lock_free(index_dir):
        return "skipped", None
    clean_stale(index_dir)
    pid = spawn_daemon(root, index_dir, idle_seconds=idle_seconds)
    return ("replaced" if replaced else "started"), pid


class QueryRunner:
    """Answers queries through the daemon when one serves the index, else in-process (same records).

    The daemon gets this process's settings with each request, so its ranking is the one an
    in-process search would make; a daemon that cannot serve the request (another model, gone
    mid-way, an internal error) makes the runner fall back to searching in-process.

    Args:
        index_dir: The index directory.
        settings: Settings of this process (ranking, model).
        use_daemon: Try the daemon first.
        timeout: Seconds to wait for the daemon's answer before falling back.
    """

    def __init__(self, index_dir: Path, settings: Any, use_daemon: bool = True, timeout: float = 30.0) -> None:
        import dataclasses

        self.index_dir = index_dir
        self.settings = settings
        self._settings_json = json.loads(json.dumps(dataclasses.asdict(settings)))
        self._client = connect(index_dir, timeout=timeout) if use_daemon else None
        self._searcher: Any = None
        if self._client is not None:
            try:
                same = self._client.request({"op": "ping"}).get("version") == build_id()
            except (DaemonUnavailable, errors.CodesearchError):
                same = False
            if not same:  # another build (or not answering): its ranking may differ; search here
                self._client.close()
                self._client = None

    @property
    def via(self) -> str:
        """"daemon" or "local": where the next query goes."""
        return "daemon" if self._client is not None else "local"

    def search(self, text: str, k: int | None = None, mode: str | None = None, languages: Any = (),
               paths: Any = (), kinds: Any = ()) -> list[dict[str, Any]]:
        """Rank units for ``text``; records as :func:`hit_record` with ``explain=True``."""
        if self._client is not None:
            req = {"op": "search", "query": text, "k": k, "mode": mode, "languages": list(languages),
                   "paths": list(paths), "kinds": list(kinds), "settings": self._settings_json}
            try:
                return list(self._client.request(req)["results"])
            except DaemonUnavailable as exc:
                import logging

                logging.getLogger(__name__).info("daemon unavailable (%s); searching in-process", exc)
                self._client.close()
                self._client = None
        if self._searcher is None:
            from .index import IndexReader
            from .search import Searcher

            self._searcher = Searcher(IndexReader(self.index_dir), self.settings)
        hits = self._searcher.search(text, k=k, mode=mode, languages=languages, paths=paths, kinds=kinds)
        return [hit_record(h, explain=True) for h in hits]

    def close(self) -> None:
        """Close the connection or the index."""
        if self._client is not None:
            self._client.close()
        if self._searcher is not None:
            self._searcher.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holder(index_dir: Path) -> int | None:
    from .index import LOCK_NAME

    try:
        text = (index_dir / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stop_daemon(index_dir: Path, timeout: float = 60.0) -> int | None:
    """Stop the daemon serving ``index_dir`` and wait until it is gone.

    Asks over the socket; a daemon that does not answer but still holds the writer lock (its pid
    is both in the pid file and in the lock file) gets SIGTERM. Stale files are removed.

    Returns:
        The pid of the daemon that was stopped, or None if none was running.

    Raises:
        IndexLocked: it was still running after ``timeout`` seconds.
    """
    import signal
    import time

    pid: int | None = None
    c = connect(index_dir, timeout=10.0)
    if c is not None:
        try:
            pid = int(c.request({"op": "stop"})["pid"])
        except (DaemonUnavailable, errors.CodesearchError, KeyError, TypeError, ValueError):
            pid = None
        finally:
            c.close()
    if pid is None:
        info = read_pid_file(index_dir)
        if info is None or writer_lock_free(index_dir) or _lock_holder(index_dir) != info["pid"]:
            clean_stale(index_dir)
            return None
        pid = int(info["pid"])
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and not writer_lock_free(index_dir):
        if time.monotonic() > deadline:
            raise errors.IndexLocked(f"the daemon (pid {pid}) is still running after {timeout:.0f}s")
        time.sleep(0.05)
    clean_stale(index_dir)
    return pid


def reindex_via_daemon(index_dir: Path, model: str | None) -> tuple[int, dict[str, Any]] | None:
    """Hand a full ``codesearch index`` run to the daemon serving ``index_dir``, if one runs.

    Returns:
        (daemon pid, its index report as a dict), or None if no daemon serves the index.

    Raises:
        UsageError: the daemon runs another model than ``model``.
    """
    c = connect(index_dir, timeout=10.0)
    if c is None:
        return None
    try:
        status = c.request({"op": "status"})
        if model is not None and status.get("settings", {}).get("model") != model:
            raise errors.UsageError(
                f"a codesearch watch daemon (pid {status.get('pid')}) keeps this index with its own model; "
                "stop it first (`codesearch watch --stop`) to index with another")
        resp = c.request({"op": "reindex", "paths": None, "wait": True}, timeout=None)
        return int(status["pid"]), dict(resp["report"])
    except DaemonUnavailable:
        return None
    finally:
        c.close()
