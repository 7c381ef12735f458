"""The watch daemon: keeps one repository's index fresh and answers queries from a warm process.

Threads and their jobs:

- watchdog's observer (inotify on Linux) calls :meth:`Daemon._on_event`, which maps each event to
  repository-relative paths, drops what is ignored (VCS/build directories, ``.gitignore`` and
  ``.codesearchignore`` rules, ``Settings.ignore``, the index directory, files of no known language)
  and marks the rest pending in :class:`PendingPaths`. That is all the work an ignored path causes.
- The writer thread takes the paths whose events have settled (per-path debounce, ``debounce_ms``;
  a path that keeps changing waits at most ``debounce_max_ms``), expands directory events into the
  files below them (known to the index or on disk), and runs ``indexer.index_repository(paths=...)``
  with the warm encoder, under the writer lock that the daemon holds for its whole life. Units are
  re-embedded only when their text hash is not cached. Each batch is one SQLite transaction (a new
  generation), so kill -9 loses at most the pending events; the next start runs a full incremental
  pass first, which reconciles the index with the tree.
- A socket server (one thread per connection) answers the newline-delimited JSON protocol described
  in :mod:`codesearch.client`. Searches run on one :class:`~codesearch.search.Searcher` over a reader
  that sees one generation per query (an SQLite read snapshot plus the FAISS file of the same
  generation), so a query sees a file either before or after an update, never half of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import socketserver
import sqlite3
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parsers import language_for_path

from . import client
from .config import SEARCH_MODES, Settings
from .embed import Embedder, TransformerEmbedder, cpu_threads
from .errors import CodesearchError, IndexLocked, IndexMissing, UsageError
from .index import DB_NAME, IndexReader, WriterLock, connect, faiss_path, find_index_dir
from .indexer import IndexReport, index_repository
from .search import Searcher
from .walk import IGNORE_FILES, SKIP_DIRS, Ignorer, walk

log = logging.getLogger(__name__)

#: How long watchdog holds a rename's first half while it waits for the second (its default is 0.5 s,
#: which an editor's atomic save would add to every save-to-searchable time). Both paths of a move are
#: re-checked anyway, so an unpaired move costs nothing but a second look.
MOVE_PAIR_DELAY = 0.05
#: Quiet time after an event that completes a write (close after writing, rename into place, delete):
#: an editor's save is searchable this long after it, not ``debounce_ms`` after it.
SETTLE_SECONDS = 0.05
#: Longest wait for a generation's FAISS file while the writer is publishing it.
_PUBLISH_WAIT = 30.0
#: Largest id delta the daemon's reader applies in memory (above it, and above a tenth of the index,
#: it loads the generation's FAISS file).
_MAX_DELTA = 5000
#: Back-off after a failed update, doubling per consecutive failure.
_RETRY_FIRST, _RETRY_MAX = 1.0, 60.0
#: Fewest texts one encoder call gets when the writer encodes in parallel.
_MIN_PART = 16


class _Stopping(Exception):
    """Raised inside an index run to abandon it because the daemon is shutting down."""


class _Mismatch(Exception):
    """A request this daemon cannot answer the way an in-process search would (the client falls back)."""


# ---------------------------------------------------------------------------------------------------------
# Pending paths: per-path debounce and coalescing


@dataclass
class Batch:
    """One unit of writer work.

    Attributes:
        files: Repository-relative file paths to re-check.
        dirs: Repository-relative directories whose files (known or on disk) must be re-checked.
        full: Walk the whole tree instead (start-up reconcile, a ``reindex`` of everything, an
            ignore file at the root changed).
        ticket: The highest request ticket this batch completes (0: none).
        reason: Why it runs ("start", "events", "request").
    """

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    full: bool = False
    ticket: int = 0
    reason: str = "events"


class PendingPaths:
    """Paths waiting for the writer, debounced per path and coalesced.

    A path becomes due once no event has touched it for ``debounce`` seconds, or only ``settle``
    seconds when its last event says the write is complete (the file was closed after writing,
    renamed into place as an editor's atomic save does, or deleted), and at the latest
    ``max_delay`` seconds after its first pending event. Paths asked for explicitly
    (:meth:`request`) are due at once. Everything due is taken as one batch.

    Args:
        debounce: Quiet time per path after an event that may be followed by more writes, seconds.
        max_delay: Longest wait per path, seconds.
        settle: Quiet time after an event that completes a write (at most ``debounce``), seconds.
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(self, debounce: float, max_delay: float, settle: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.settle = min(settle, debounce)
        self._clock = clock
        self._cond = threading.Condition()
        self._paths: dict[str, tuple[float, float, bool]] = {}  # rel -> (first event, due at, is_dir)
        self._forced: set[str] = set()
        self._full = False
        self._last_ticket = 0
        self._waiting_ticket = 0
        self._closed = False

    def add(self, rel: str, is_dir: bool = False, settled: bool = False) -> None:
        """Record an event on ``rel`` (a directory event if ``is_dir``; ``settled``: it completes a write)."""
        with self._cond:
            now = self._clock()
            first, _, was_dir = self._paths.get(rel, (now, now, False))
            due = min(now + (self.settle if settled else self.debounce), first + self.max_delay)
            self._paths[rel] = (first, due, is_dir or was_dir)
            self._cond.notify_all()

    def request(self, paths: Iterable[str] | None, dirs: Iterable[str] = ()) -> int:
        """Ask for ``paths`` (None: the whole tree) and ``dirs`` to be re-checked now.

        Returns:
            A ticket for :meth:`Daemon.wait_ticket`.
        """
        with self._cond:
            if paths is None:
                self._full = True
            else:
                now = self._clock()
                for rel in paths:
                    first, _, was_dir = self._paths.get(rel, (now, now, False))
                    self._paths[rel] = (first, now, was_dir)
                    self._forced.add(rel)
                for rel in dirs:
                    self._paths[rel] = (now, now, True)
                    self._forced.add(rel)
            self._last_ticket += 1
            self._waiting_ticket = self._last_ticket
            self._cond.notify_all()
            return self._last_ticket

    def __len__(self) -> int:
        with self._cond:
            return len(self._paths) + int(self._full)

    def take(self, now: float | None = None) -> Batch | None:
        """Remove and return everything that is due (None if nothing is)."""
        with self._cond:
            return self._take(self._clock() if now is None else now)

    def _take(self, now: float) -> Batch | None:
        due = [rel for rel, (_, due_at, _) in self._paths.items() if due_at <= now or rel in self._forced]
        if not due and not self._full:
            return None
        batch = Batch(full=self._full, reason="events")
        if self._full:
            due = list(self._paths)  # the walk covers them all
        for rel in due:
            _, _, is_dir = self._paths.pop(rel)
            (batch.dirs if is_dir else batch.files).add(rel)
        if self._full or self._forced & set(due):
            batch.ticket, batch.reason = self._waiting_ticket, "request"
        self._forced -= set(due)
        self._full = False
        return batch

    def next_due(self) -> float | None:
        """Clock time at which the next path becomes due (None if nothing is pending)."""
        with self._cond:
            return self._next_due()

    def _next_due(self) -> float | None:
        if self._full or self._forced:
            return self._clock()
        return min((due for _, due, _ in self._paths.values()), default=None)

    def wait(self, timeout: float | None = None) -> Batch | None:
        """Block until something is due (or :meth:`close`, or ``timeout``) and take it."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                batch = self._take(now)
                if batch is not None:
                    return batch
                if deadline is not None and now >= deadline:
                    return None
                limits = [t for t in (self._next_due(), deadline) if t is not None]
                self._cond.wait(max(0.0, min(limits) - now) + 0.001 if limits else None)
        return None

    def close(self) -> None:
        """Wake every waiter; :meth:`wait` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# ---------------------------------------------------------------------------------------------------------
# Encoder and reader wrappers


class ParallelEmbedder:
    """Encodes documents on several Python threads with one torch thread each.

    The daemon keeps torch at one intra-op thread so that its query vectors equal those of an
    in-process ``codesearch query`` bit for bit (torch's results vary in the last bits with its
    thread count); document batches still use every core, one encoder call per thread. The stop
    check between chunks lets a shutdown abandon a long re-embedding within about one chunk.

    Args:
        inner: The encoder (thread-safe: TransformerEmbedder is).
        workers: Encoder calls in flight at once.
        stopping: Raises to abandon the current run (checked between chunks).
    """

    def __init__(self, inner: Embedder, workers: int, stopping: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.info = inner.info
        self.workers = max(1, workers)
        self._stopping = stopping
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed") if self.workers > 1 else None

    @property
    def tokens_encoded(self) -> int:
        """Tokens encoded so far (the indexer reports throughput from it)."""
        return int(getattr(self.inner, "tokens_encoded", 0))

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode ``texts``; documents split by length into one part per worker."""
        self._check()
        if kind != "document" or self._pool is None or len(texts) < 2 * _MIN_PART:
            return self.inner.encode(texts, kind=kind)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        size = max(_MIN_PART, -(-len(order) // self.workers))
        parts = [order[i:i + size] for i in range(0, len(order), size)]
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)

        def run(part: list[int]) -> None:
            self._check()
            out[part] = self.inner.encode([texts[i] for i in part], kind=kind)

        for fut in [self._pool.submit(run, part) for part in parts]:
            fut.result()
        return out

    def _check(self) -> None:
        if self._stopping is not None:
            self._stopping()

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _DaemonReader(IndexReader):
    """The daemon's IndexReader: it follows new generations from their id delta.

    Unit ids are never reused and a unit's vector never changes, so the FAISS index of a new
    generation is the previous one minus the ids that left and plus the ids that came, read from
    the same SQLite snapshot; FAISS keeps ids in ascending order either way, so the result equals
    the generation's FAISS file. That serves a generation as soon as SQLite has committed it,
    without waiting for the writer to write its FAISS file, and without reading that file (154 MB
    at 100k units). Large deltas (a storm, a rebuild) load the file as the base class does, waiting
    while the writer publishes it rather than rebuilding the whole index from SQLite.
    """

    def __init__(self, index_dir: Path, wait_published: Callable[[int], None]) -> None:
        super().__init__(index_dir)
        self._wait_published = wait_published

    def _load_faiss(self, gen: int) -> None:
        if self._faiss is not None and self._faiss.d == self.dim and self._apply_delta():
            self.generation = gen
            return
        if not faiss_path(self.index_dir, gen).is_file():
            self._wait_published(gen)
        super()._load_faiss(gen)

    def drop_faiss(self) -> None:
        """Forget the FAISS index: the next snapshot loads its generation's file."""
        self._faiss = None
        self.generation = -1

    def _apply_delta(self) -> bool:
        import faiss

        ids = np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM units")), dtype=np.int64)
        have = faiss.vector_to_array(self._faiss.id_map).astype(np.int64)
        removed = np.setdiff1d(have, ids, assume_unique=True)
        added = np.setdiff1d(ids, have, assume_unique=True)
        if len(removed) + len(added) > max(_MAX_DELTA, len(ids) // 10):
            return False
        rows: list[tuple[int, bytes]] = []
        for start in range(0, len(added), 500):
            chunk = [int(x) for x in added[start:start + 500]]
            rows += self.conn.execute(
                f"SELECT u.id, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash "
                f"WHERE u.id IN ({','.join('?' * len(chunk))}) ORDER BY u.id", chunk).fetchall()
        if len(rows) != len(added):
            return False  # a unit without its vector: let the base class decide
        if len(removed):
            self._faiss.remove_ids(removed)
        if rows:
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            self._faiss.add_with_ids(vecs, np.asarray([r[0] for r in rows], dtype=np.int64))
        return True


# ---------------------------------------------------------------------------------------------------------
# The daemon


def _rss_mb() -> dict[str, float]:
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


class Daemon:
    """Watches ``root``, keeps its index fresh, and serves queries on a Unix socket.

    Use :meth:`run` for a blocking daemon (signals handled), or :meth:`start` ... :meth:`close`
    to run one inside another process (tests, the LSP server).

    Args:
        root: Repository root.
        settings: Settings (index_dir, model, ignores, debounce_ms, debounce_max_ms, threads, ...).
        embedder: Encoder to use; None loads the configured model once at start.
    """

    def __init__(self, root: Path, settings: Settings, embedder: Embedder | None = None) -> None:
        root = root.expanduser()
        if not root.is_dir():
            raise UsageError(f"not a directory: {root}")
        self.root = root.resolve()
        self.settings = settings
        self.index_dir = find_index_dir(self.root, settings.index_dir)
        self.socket_path = client.socket_path(self.index_dir)
        self.pid_path = client.pid_path(self.index_dir)
        self._given_embedder = embedder
        self.embedder: Embedder | None = None
        self.pending = PendingPaths(settings.debounce_ms / 1000, settings.debounce_max_ms / 1000, SETTLE_SECONDS)
        self._extra_ignore = list(settings.ignore)
        self._index_rel: str | None = None
        try:
            self._index_rel = self.index_dir.relative_to(self.root).as_posix()
            self._extra_ignore.append(f"/{self._index_rel}/")
        except ValueError:
            pass
        self._root_prefix = str(self.root).rstrip("/") + "/"
        self._ignorer_lock = threading.Lock()
        self._ignorer = Ignorer(self.root, tuple(self._extra_ignore))
        self._lock: WriterLock | None = None
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._socket_ino: int | None = None
        self._observer: Any = None
        self._threads: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        self._signalled = False
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        self._started = False
        # writer state (read by status)
        self._state = "starting"
        self._current: dict[str, Any] | None = None
        self._progress_info: tuple[str, int, int] | None = None
        self._last_update: dict[str, Any] | None = None
        self._last_error: str | None = None
        self._updates = 0
        self._failed_since_file = False
        self._events = 0
        self._dropped = 0
        self._started_at = time.time()
        self.fatal: BaseException | None = None
        #: Called once the daemon listens and watches (the CLI prints a line).
        self.on_ready: Callable[[], None] | None = None
        # publication: the writer tells readers which generations are complete
        self._pub = threading.Condition()
        self._updating = False
        self._done_ticket = 0
        self._ticket_reports: dict[int, dict[str, Any]] = {}
        # searching
        self._search_lock = threading.Lock()
        self._reader: _DaemonReader | None = None
        self._searchers: dict[tuple[Any, ...], Searcher] = {}

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the writer lock, load the encoder, listen on the socket, start watching and indexing.

        Raises:
            IndexLocked: another daemon watches this repository, or an index run is in progress.
            UsageError: the root is not a directory, or the inotify watch limit is too low.
        """
        if self._started:
            raise UsageError("daemon already started")
        self._started = True
        lock = WriterLock(self.index_dir)
        try:
            lock.acquire()
        except IndexLocked:
            info = client.probe(self.index_dir)
            if info is not None:
                raise IndexLocked(
                    f"a codesearch watch daemon (pid {info.get('pid')}) already keeps {info.get('root')} up to date; "
                    f"`codesearch watch --stop {info.get('root')}` stops it") from None
            raise
        self._lock = lock
        try:
            self._remove_own_files(force=True)  # left by a daemon that crashed: we hold the lock, so it is gone
            self.embedder = self._load_embedder()
            self._listen()
            self._write_pid_file()
            self._spawn(self._serve, "socket")
            self._start_observer()
            self._spawn(self._writer_main, "writer")
        except BaseException:
            self.close()
            raise
        log.info("watching %s (index %s, socket %s)", self.root, self.index_dir, self.socket_path)

    def _load_embedder(self) -> Embedder:
        intra = self.settings.threads or 1
        workers = max(1, (self.settings.threads or cpu_threads()) // intra)
        inner = self._given_embedder
        if inner is None:
            inner = TransformerEmbedder(self.settings.model, max_length=self.settings.max_length,
                                        batch_size=self.settings.batch_size, threads=intra)
        return ParallelEmbedder(inner, workers, stopping=self._check_stop)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT or a ``stop`` request, then shut down cleanly.

        Returns:
            0, or 1 if the writer failed fatally.
        """
        in_main = threading.current_thread() is threading.main_thread()
        previous: dict[int, Any] = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            if self.on_ready is not None:
                self.on_ready()
            while not (self._signalled or self._stop_requested.wait(0.2)):
                pass
        finally:
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.fatal is not None else 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signalled = True  # only a flag: the main loop polls it

    def request_stop(self) -> None:
        """Ask the daemon to stop (thread-safe, returns at once)."""
        self._stop_requested.set()
        self.pending.close()

    def _check_stop(self) -> None:
        if self._stop_requested.is_set() or self._signalled:
            raise _Stopping

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`close` has finished."""
        return self._closed.wait(timeout)

    def close(self) -> None:
        """Shut down: stop listening and remove the socket and pid file, stop watching, abandon the
        current update (its committed state stays), release the writer lock. Idempotent."""
        with self._close_lock:
            if self._closed.is_set():
                return
            self.request_stop()
            self._state = "stopping"
            if self._server is not None:
                with contextlib.suppress(Exception):
                    self._server.shutdown()
                self._server.server_close()
            if self._lock is not None:
                self._remove_own_files()
            if self._observer is not None:
                with contextlib.suppress(Exception):
                    self._observer.stop()
                    self._observer.join(10)
            with self._pub:
                self._pub.notify_all()
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join(60)
            if isinstance(self.embedder, ParallelEmbedder):
                self.embedder.close()
            with self._search_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
                self._searchers.clear()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._state = "stopped"
            self._closed.set()
            log.info("stopped watching %s", self.root)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=f"codesearch-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    # -- socket and pid file ----------------------------------------------------------------------------

    def _listen(self) -> None:
        path = self.socket_path
        if path.parent != self.index_dir:
            client.private_socket_dir(path)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                daemon._handle_connection(self.connection, self.rfile, self.wfile)

        old = os.umask(0o177)  # the socket is born 0600: no window in which others could connect
        try:
            server = socketserver.ThreadingUnixStreamServer(os.fspath(path), Handler, bind_and_activate=False)
            server.daemon_threads = True
            server.server_bind()
            server.server_activate()
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._socket_ino = os.stat(path).st_ino
        self._server = server

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.2)

    def _write_pid_file(self) -> None:
        info = {"pid": os.getpid(), "root": str(self.root), "index_dir": str(self.index_dir),
                "socket": str(self.socket_path), "started_at": self._started_at}
        tmp = self.pid_path.with_name(f".{self.pid_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(tmp, self.pid_path)

    def _remove_own_files(self, force: bool = False) -> None:
        """Remove the pid file and socket if they are ours (or, with ``force``, whoever left them)."""
        pid = client.read_pid_file(self.index_dir)
        if force or (pid is not None and pid.get("pid") == os.getpid()):
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if force or (stat.S_ISSOCK(st.st_mode) and st.st_ino == self._socket_ino):
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    # -- protocol ---------------------------------------------------------------------------------------

    def _handle_connection(self, conn: socket.socket, rfile: Any, wfile: Any) -> None:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
        except OSError:
            uid = os.getuid()
        if uid not in (os.getuid(), 0):
            log.warning("refused a connection from uid %d", uid)
            return
        while not self._closed.is_set():
            try:
                line = rfile.readline(client.MAX_LINE + 1)
            except (OSError, ValueError):
                return
            if not line:
                return
            stop_after = False
            if len(line) > client.MAX_LINE:
                resp: dict[str, Any] = {"error": "request too long", "type": "UsageError"}
            else:
                try:
                    req = json.loads(line)
                except ValueError as exc:
                    resp = {"error": f"bad JSON: {exc}", "type": "UsageError"}
                else:
                    resp = self.handle_request(req)
                    stop_after = isinstance(req, dict) and req.get("op") == "stop" and "error" not in resp
            try:
                wfile.write(json.dumps(resp).encode() + b"\n")
                wfile.flush()
            except (OSError, ValueError):
                return
            if stop_after:
                self.request_stop()
                threading.Thread(target=self.close, name="codesearch-close", daemon=True).start()
                return

    def handle_request(self, req: Any) -> dict[str, Any]:
        """Answer one protocol request (see :mod:`codesearch.client`); never raises."""
        try:
            if not isinstance(req, dict):
                raise UsageError("a request must be a JSON object")
            op = req.get("op")
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            if op == "search":
                return self._op_search(req)
            if op == "status":
                return self.status()
            if op == "reindex":
                return self._op_reindex(req)
            if op == "stop":
                return {"ok": True, "pid": os.getpid()}
            raise UsageError(f"unknown op {op!r} (ping, search, status, reindex, stop)")
        except CodesearchError as exc:
            return {"error": str(exc), "type": type(exc).__name__}
        except _Mismatch as exc:
            return {"error": str(exc), "type": "Mismatch"}
        except Exception as exc:  # a bug must not kill the daemon; the client falls back
            log.exception("request failed: %r", req)
            return {"error": f"internal error: {type(exc).__name__}: {exc}", "type": "InternalError"}

    @staticmethod
    def _str_list(req: dict[str, Any], key: str) -> tuple[str, ...]:
        value = req.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{key} must be a list of strings")
        return tuple(value)

    def _op_search(self, req: dict[str, Any]) -> dict[str, Any]:
        text = req.get("query")
        if not isinstance(text, str):
            raise UsageError("query must be a string")
        k = req.get("k")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 10_000):
            raise UsageError("k must be an integer from 1 to 10000")
        mode = req.get("mode")
        if mode is not None and mode not in SEARCH_MODES:
            raise UsageError(f"unknown mode {mode!r} (choose from {', '.join(SEARCH_MODES)})")
        langs, paths, kinds = (self._str_list(req, key) for key in ("languages", "paths", "kinds"))
        settings = self._request_settings(req.get("settings"))
        with self._search_lock:
            searcher = self._searcher(settings)
            hits = searcher.search(text, k=k, mode=mode, languages=langs, paths=paths, kinds=kinds)
            generation = searcher.reader.generation
        return {"results": [client.hit_record(h, explain=True) for h in hits], "generation": generation}

    def _request_settings(self, raw: Any) -> Settings:
        """The client's settings for ranking (so results equal an in-process search with them)."""
        if raw is None:
            return self.settings
        if not isinstance(raw, dict):
            raise UsageError("settings must be an object")
        names = {f.name for f in dataclasses.fields(Settings)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in names}
        try:
            settings = Settings(**values)
        except TypeError as exc:
            raise UsageError(f"bad settings: {exc}") from None
        if (settings.model or None) != (self.settings.model or None):
            raise _Mismatch("the daemon runs another model than this query asks for")
        return settings

    def _searcher(self, settings: Settings) -> Searcher:
        if self._reader is None:
            try:
                self._reader = _DaemonReader(self.index_dir, self._wait_published)
            except IndexMissing:
                if self._state in ("starting", "indexing"):
                    raise IndexMissing("the watch daemon is still building the first index; try again when "
                                       "`codesearch watch --status` says idle") from None
                raise
        key = tuple(dataclasses.astuple(settings))
        searcher = self._searchers.get(key)
        if searcher is None:
            if len(self._searchers) > 8:
                self._searchers.clear()
            assert self.embedder is not None
            searcher = Searcher(self._reader, settings, embedder=self.embedder)
            self._searchers[key] = searcher
        return searcher

    def _wait_published(self, gen: int) -> None:
        """Called by the reader for a generation without a FAISS file: wait while the writer publishes it."""
        deadline = time.monotonic() + _PUBLISH_WAIT
        with self._pub:
            while self._updating and not faiss_path(self.index_dir, gen).is_file() and not self._closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._pub.wait(min(left, 0.5))

    def _op_reindex(self, req: dict[str, Any]) -> dict[str, Any]:
        raw = req.get("paths")
        if raw is not None:
            paths = self._str_list(req, "paths")
            rels = []
            for p in paths:
                rel = self._rel(os.path.join(self.root, p)) if not os.path.isabs(p) else self._rel(p)
                if rel is None:
                    raise UsageError(f"not inside {self.root}: {p}")
                rels.append(rel)
            files = [r for r in rels if not (self.root / r).is_dir()]
            dirs = [r for r in rels if (self.root / r).is_dir()]
            ticket = self.pending.request(files, dirs)
        else:
            ticket = self.pending.request(None)
        if not req.get("wait", True):
            return {"ok": True, "ticket": ticket}
        report = self.wait_ticket(ticket)
        if report is None:
            raise IndexLocked("the daemon stopped before the update finished")
        if "error" in report:
            raise IndexLocked(f"the daemon's update failed: {report['error']}")
        return {"ok": True, "ticket": ticket, "report": report}

    def wait_ticket(self, ticket: int, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait until the batch answering request ``ticket`` is done; its report (None if stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._pub:
            while self._done_ticket < ticket and not self._closed.is_set() and not self._stop_requested.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._pub.wait(0.5 if left is None else min(left, 0.5))
            if self._done_ticket < ticket:
                return None
            return self._ticket_reports.get(ticket, self._last_update or {})

    def status(self) -> dict[str, Any]:
        """What the daemon is doing: state, queue, last update, units, files not indexed, memory."""
        out: dict[str, Any] = {
            "pid": os.getpid(), "root": str(self.root), "index_dir": str(self.index_dir),
            "socket": str(self.socket_path), "started_at": self._started_at, "state": self._state,
            "queue": len(self.pending), "current": self._current, "last_update": self._last_update,
            "last_error": self._last_error, "updates": self._updates, "events": self._events,
            "events_ignored": self._dropped,
            "settings": {"debounce_ms": self.settings.debounce_ms, "debounce_max_ms": self.settings.debounce_max_ms,
                         "model": self.settings.model},
        }
        if self._progress_info and self._current is not None:
            phase, done, total = self._progress_info
            out["current"] = dict(self._current, phase=phase, done=done, total=total)
        out.update(_rss_mb())
        try:
            with self._search_lock:
                if self._reader is None:
                    self._reader = _DaemonReader(self.index_dir, self._wait_published)
                info = self._reader.status()
            out.update(units=info["units"], files=info["files"], generation=info["generation"],
                       not_indexed=info["not_indexed"], updated_at=info["updated_at"], model=info["model"])
        except CodesearchError as exc:
            out.update(units=0, files={}, generation=0, not_indexed=[], index_error=str(exc))
        return out

    # -- events -----------------------------------------------------------------------------------------

    def _start_observer(self) -> None:
        from watchdog.events import (
            DirCreatedEvent,
            DirDeletedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

        InotifyMoveEventGrouper.delay = MOVE_PAIR_DELAY
        daemon = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                try:
                    daemon._on_event(event)
                except Exception:  # an odd path must not stop the observer
                    log.exception("cannot handle %r", event)

        observer = Observer()
        try:
            observer.schedule(Handler(), str(self.root), recursive=True, event_filter=[
                FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
                DirCreatedEvent, DirDeletedEvent, DirMovedEvent])
            observer.start()
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC: out of inotify watches
                raise UsageError("the inotify watch limit is too low for this tree: raise "
                                 "fs.inotify.max_user_watches (sysctl) or ignore large directories") from None
            raise
        self._observer = observer

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if p == str(self.root):
            return ""
        if not p.startswith(self._root_prefix):
            return None
        rel = os.path.normpath(p[len(self._root_prefix):])
        return None if rel.startswith("..") else rel

    def _on_event(self, event: Any) -> None:
        """Map one watchdog event to pending paths (the observer thread; keep it cheap)."""
        self._events += 1
        is_dir = bool(event.is_directory)
        # A closed-after-writing file, a rename's two ends (an atomic save) and a deletion are complete;
        # a creation or a modification may be followed by more writes.
        settled = event.event_type in ("closed", "moved", "deleted")
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            rel = self._rel(raw)
            if rel is None or rel == "":
                continue
            if self._index_rel is not None and (rel == self._index_rel or rel.startswith(self._index_rel + "/")):
                self._dropped += 1
                continue
            name = rel.rsplit("/", 1)[-1]
            if not is_dir and name in IGNORE_FILES:
                with self._ignorer_lock:
                    self._ignorer = Ignorer(self.root, tuple(self._extra_ignore))
                parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
                if self._ignored(parent, True) and parent:
                    self._dropped += 1
                    continue
                self.pending.add(parent, is_dir=True, settled=settled)
                continue
            if not is_dir and language_for_path(name) is None:
                self._dropped += 1
                continue
            if self._ignored(rel, is_dir):
                self._dropped += 1
                continue
            self.pending.add(rel, is_dir=is_dir, settled=settled)

    def _ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` is excluded by the walk's rules (skipped directory names, ignore files)."""
        if rel == "":
            return False
        parts = rel.split("/")
        if any(p in SKIP_DIRS for p in (parts if is_dir else parts[:-1])):
            return True
        with self._ignorer_lock:
            ign = self._ignorer
            for depth in range(len(parts)):
                base = "/".join(parts[:depth])
                ign.load_dir(base)
                if depth and ign.ignored(base, True):
                    return True
            return ign.ignored(rel, is_dir)

    # -- writer -----------------------------------------------------------------------------------------

    def _writer_main(self) -> None:
        failures = 0
        batch: Batch | None = Batch(full=True, reason="start")
        try:
            while not self._stop_requested.is_set():
                if batch is None:
                    batch = self.pending.wait()
                    if batch is None:
                        break
                ok = self._update(batch)
                if ok:
                    failures = 0
                else:
                    failures += 1
                    if self._stop_requested.wait(min(_RETRY_FIRST * 2 ** (failures - 1), _RETRY_MAX)):
                        break
                batch = None
        except _Stopping:
            pass
        except BaseException as exc:  # noqa: BLE001 - record it, then stop the daemon
            log.exception("the writer failed; stopping")
            self.fatal = exc
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.request_stop()
        finally:
            with self._pub:
                self._updating = False
                self._pub.notify_all()

    def _expand_dirs(self, dirs: set[str]) -> set[str]:
        """The files below ``dirs``: those the index knows and those on disk now."""
        out: set[str] = set()
        if not dirs:
            return out
        db = self.index_dir / DB_NAME
        if db.is_file():
            conn = connect(db, readonly=True)
            try:
                for d in dirs:
                    rows = conn.execute("SELECT path FROM files WHERE path > ? AND path < ?", (d + "/", d + "0"))
                    out.update(r[0] for r in rows)
            finally:
                conn.close()
        for d in dirs:
            base = self.root / d
            if base.is_dir() and not base.is_symlink():
                out.update(f"{d}/{e.path}" for e in walk(base, ()))
        return out

    def _update(self, batch: Batch) -> bool:
        """Run one index update; False if it failed (its paths are queued again)."""
        full = batch.full or "" in batch.dirs
        paths = None if full else sorted(batch.files | self._expand_dirs(batch.dirs))
        if paths is not None and not paths:
            self._finish(batch, {"files_changed": 0, "skipped": True})
            return True
        self._current = {"reason": batch.reason, "full": full, "paths": len(paths) if paths is not None else None,
                         "started_at": time.time()}
        self._progress_info = None
        with self._pub:
            self._updating = True
        self._state = "indexing"
        t0 = time.perf_counter()
        try:
            report = index_repository(self.root, self.settings, embedder=self.embedder, paths=paths,
                                      progress=self._progress, lock=False)
        except _Stopping:
            self._end_update()
            raise
        except Exception as exc:  # the daemon keeps serving queries and retries with back-off
            what = "the tree" if full else f"{len(paths or [])} paths"
            if isinstance(exc, CodesearchError | sqlite3.Error | OSError):
                log.error("update of %s failed: %s", what, exc)
            else:
                log.exception("update of %s failed", what)
            self._last_error = f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}"
            if full:
                self.pending.request(None)
            else:
                for rel in batch.files:
                    self.pending.add(rel)
                for rel in batch.dirs:
                    self.pending.add(rel, is_dir=True)
            self._failed_since_file = True
            self._end_update()
            self._finish(batch, {"error": str(exc)})
            return False
        seconds = time.perf_counter() - t0
        with self._pub:
            self._updating = False
            self._pub.notify_all()
        self._warm_reader(report, from_file=batch.full or self._failed_since_file)
        self._failed_since_file = False
        summary = self._summary(report, batch, paths, seconds)
        self._finish(batch, summary)
        self._end_update()  # idle only once the status tells of this update
        if report.rebuild_reason or batch.full:
            log.info("%s pass: %d files, %d units; %d files changed, %d deleted, %d units embedded in %.2fs",
                     "start-up" if batch.reason == "start" else "full", report.files, report.units,
                     report.files_changed, report.files_deleted, report.embedded, seconds)
        elif report.files_changed or report.files_deleted:
            shown = ", ".join(summary["changed"][:5]) + (" ..." if len(summary["changed"]) > 5 else "")
            log.info("re-indexed %d files (%d changed, %d deleted; %d units embedded, +%d/-%d units) in %.2fs: %s",
                     len(paths or []), report.files_changed, report.files_deleted, report.embedded,
                     report.units_added, report.units_removed, seconds, shown)
        else:
            log.debug("checked %d paths, nothing changed (%.2fs)", len(paths or []), seconds)
        return True

    def _end_update(self) -> None:
        with self._pub:
            self._updating = False
            self._pub.notify_all()
        self._current = None
        self._progress_info = None
        self._state = "idle"

    def _progress(self, phase: str, done: int, total: int) -> None:
        self._check_stop()
        self._progress_info = (phase, done, total)

    def _warm_reader(self, report: IndexReport, from_file: bool) -> None:
        """Load the new generation into the reader now, not on the next query.

        ``from_file``: load the generation's FAISS file instead of applying the id delta. After a
        full pass or a failed update the writer may have built its file from scratch, and its
        order of equal-scoring vectors then differs from a delta's; loading the file keeps the
        daemon's ties broken exactly as an in-process search breaks them.
        """
        with self._search_lock:
            if report.rebuild_reason:
                self._searchers.clear()
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            if from_file and self._reader is not None:
                self._reader.drop_faiss()
            try:
                if self._reader is None:
                    self._reader = _DaemonReader(self.index_dir, self._wait_published)
                with self._reader.snapshot():
                    pass
            except (CodesearchError, sqlite3.Error) as exc:
                log.warning("cannot open the new index generation: %s", exc)

    def _summary(self, report: IndexReport, batch: Batch, paths: list[str] | None,
                 seconds: float) -> dict[str, Any]:
        changed: list[str] = []
        if paths is not None and (report.files_changed or report.files_deleted):
            changed = paths[:50]
        out = dataclasses.asdict(report)
        out.update(at=time.time(), seconds=round(seconds, 4), reason=batch.reason,
                   full=paths is None, paths_checked=None if paths is None else len(paths), changed=changed)
        return out

    def _finish(self, batch: Batch, summary: dict[str, Any]) -> None:
        if "error" not in summary and not summary.get("skipped"):
            self._last_update = summary
            self._updates += 1
        with self._pub:
            if batch.ticket:
                self._ticket_reports[batch.ticket] = summary
                for old in [t for t in self._ticket_reports if t < batch.ticket - 100]:
                    del self._ticket_reports[old]
                self._done_ticket = max(self._done_ticket, batch.ticket)
            self._pub.notify_all()

