"""Applying updates: the writer thread that turns pending paths into new index generations.

:class:`Updater` takes the paths whose events have settled (per-path debounce, see
:mod:`codesearch.pending`), expands directory events into the files below them (known to the index
or on disk), and runs ``indexer.index_repository(paths=...)`` with the warm encoder, under the writer
lock that its owner (:class:`codesearch.service.Service`) holds. Units are re-embedded only when
their text hash is not cached. Each batch is one SQLite transaction (a new generation), so kill -9
loses at most the pending events; the next start runs a full incremental pass first, which
reconciles the index with the tree. A failed update is retried with back-off; requests
(:meth:`Updater.request`) get a ticket whose report :meth:`Updater.wait_ticket` returns.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .config import Settings
from .embed import Embedder
from .errors import CodesearchError
from .index import DB_NAME, connect
from .indexer import IndexReport, index_repository
from .pending import Batch, PendingPaths
from .walk import walk

log = logging.getLogger(__name__)

_malloc_trim: Any = None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; elsewhere nothing).

    An update's encoder batches and index writes allocate and free hundreds of MB; glibc keeps much of it
    mapped, so a daemon idle after one update held 100-200 MB it did not use (measured with the ONNX
    Runtime encoder: 322 MB above the start after a batch of documents, 106 MB after a trim).
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)

#: Back-off after a failed update, doubling per consecutive failure.
_RETRY_FIRST, _RETRY_MAX = 1.0, 60.0
#: Fewest texts one encoder call gets when the writer encodes in parallel.
_MIN_PART = 16


class Stopping(Exception):
    """Raised inside an index run to abandon it because the service is shutting down."""



class IndexedFiles:
    """Whether a file is as the index last recorded it: the same size and mtime (the indexer's own test
    for "unchanged"), or gone and not in the index. Thread-safe; one read-only connection, opened lazily.

    The watcher asks it before queueing an event, and the updater after an update: an event that only
    reports the write an explicit re-index request already indexed (watchdog delivers events tens of
    milliseconds late) is not a pending change.
    """

    def __init__(self, root: Path, index_dir: Path) -> None:
        self.root = root
        self.db = index_dir / DB_NAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def unchanged(self, rel: str) -> bool:
        """Whether ``rel`` is as indexed (False when in doubt: the event is kept)."""
        try:
            with self._lock:
                if self._conn is None:
                    if not self.db.is_file():
                        return False
                    self._conn = connect(self.db, readonly=True)
                row = self._conn.execute("SELECT size, mtime_ns FROM files WHERE path = ?", (rel,)).fetchone()
        except sqlite3.Error:
            return False
        try:
            st = (self.root / rel).stat()
        except OSError:
            return row is None
        return row is not None and (row[0], row[1]) == (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class ParallelEmbedder:
    """Encodes documents on several Python threads with one encoder (torch or ONNX Runtime) thread each.

    The daemon keeps its encoder at one intra-op thread, so that its query vectors do not vary with a
    thread count (torch's results vary in the last bits with it) and a query does not contend with
    itself; document batches still use every core, one encoder call per thread. The stop
    check between chunks lets a shutdown abandon a long re-embedding within about one chunk.

    Args:
        inner: The encoder (thread-safe: TransformerEmbedder, NumpyEmbedder and the ONNX encoders are).
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


class Updater:
    """The writer thread of a service: pending batches -> ``index_repository`` -> new generations.

    Args:
        root: Repository root (resolved).
        settings: The service's settings.
        index_dir: The index directory.
        embedder: The warm encoder (wrapped in :class:`ParallelEmbedder` by the service).
        pending: Where the watcher puts paths.
        check_stop: Raises :class:`Stopping` once the service shuts down (checked during runs).
        on_updated: Called after each successful update with its report.
        on_fatal: Called when the writer thread fails in a way it cannot retry.
        indexed: The service's :class:`IndexedFiles` (default: one of its own).
    """

    def __init__(self, root: Path, settings: Settings, index_dir: Path, embedder: Embedder, pending: PendingPaths,
                 check_stop: Callable[[], None], on_updated: Callable[[IndexReport], None],
                 on_fatal: Callable[[BaseException], None], indexed: IndexedFiles | None = None) -> None:
        self.root = root
        self.settings = settings
        self.index_dir = index_dir
        self.embedder = embedder
        self.pending = pending
        self._check_stop = check_stop
        self._on_updated = on_updated
        self._on_fatal = on_fatal
        self.indexed = indexed if indexed is not None else IndexedFiles(root, index_dir)
        #: starting | indexing | idle | stopping | stopped (the service sets the last two).
        self.state = "starting"
        self.current: dict[str, Any] | None = None
        self.progress_info: tuple[str, int, int] | None = None
        self.last_update: dict[str, Any] | None = None
        self.last_error: str | None = None
        self.updates = 0
        #: Of those, whole-tree passes (start-up, overflow repairs, ``update --full``).
        self.full_passes = 0
        #: When the writer last finished anything (monotonic), for idle time-outs.
        self.last_activity = time.monotonic()
        self._closed = threading.Event()
        # publication: the writer tells readers which generations are complete
        self._pub = threading.Condition()
        self._done_ticket = 0
        self._ticket_reports: dict[int, dict[str, Any]] = {}

    # -- requests -------------------------------------------------------------------------------------

    def request(self, files: Iterable[str] | None, dirs: Iterable[str] = ()) -> int:
        """Re-check ``files`` and ``dirs`` now (``files`` None: the whole tree); returns a ticket."""
        return self.pending.request(None if files is None else list(files), list(dirs))

    def wait_ticket(self, ticket: int, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait until the batch answering request ``ticket`` is done; its report (None if stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._pub:
            while self._done_ticket < ticket and not self._closed.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._pub.wait(0.5 if left is None else min(left, 0.5))
            if self._done_ticket < ticket:
                return None
            return self._ticket_reports.get(ticket, self.last_update or {})

    @property
    def busy(self) -> bool:
        """Whether an update runs or paths wait."""
        return self.state in ("starting", "indexing") or len(self.pending) > 0

    def close(self) -> None:
        """Wake every waiter (the service stops the thread by closing ``pending``)."""
        self._closed.set()
        with self._pub:
            self._pub.notify_all()

    # -- the thread -----------------------------------------------------------------------------------

    def run(self) -> None:
        """The writer thread's body: a full pass first, then batches until ``pending`` closes."""
        failures = 0
        batch: Batch | None = Batch(full=True, reason="start")
        try:
            while not self._closed.is_set():
                if batch is None:
                    batch = self.pending.wait()
                    if batch is None:
                        break
                ok = self._update(batch)
                if ok:
                    failures = 0
                else:
                    failures += 1
                    if self._closed.wait(min(_RETRY_FIRST * 2 ** (failures - 1), _RETRY_MAX)):
                        break
                batch = None
        except Stopping:
            pass
        except BaseException as exc:  # noqa: BLE001 - record it, then stop the service
            log.exception("the writer failed; stopping")
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._on_fatal(exc)
        finally:
            with self._pub:
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
        self.current = {"reason": batch.reason, "full": full, "paths": len(paths) if paths is not None else None,
                        "started_at": time.time()}
        self.progress_info = None
        self.state = "indexing"
        t0 = time.perf_counter()
        try:
            report = index_repository(self.root, self.settings, embedder=self.embedder, paths=paths,
                                      progress=self._progress, lock=False)
        except Stopping:
            self._end_update()
            raise
        except Exception as exc:  # the daemon keeps serving queries and retries with back-off
            what = "the tree" if full else f"{len(paths or [])} paths"
            if isinstance(exc, CodesearchError | sqlite3.Error | OSError):
                log.error("update of %s failed: %s", what, exc)
            else:
                log.exception("update of %s failed", what)
            self.last_error = f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}"
            if full:
                self.pending.request(None)
            else:
                for rel in batch.files:
                    self.pending.add(rel)
                for rel in batch.dirs:
                    self.pending.add(rel, is_dir=True)
            self._end_update()
            self._finish(batch, {"error": str(exc)})
            return False
        seconds = time.perf_counter() - t0
        if paths:  # events that came while this update ran, on files it indexed as they are now
            self.pending.drop_if(paths, self.indexed.unchanged)
        with self._pub:
            self._pub.notify_all()
        self._on_updated(report)
        summary = self._summary(report, batch, paths, seconds)
        # Idle only once the status tells of this update, and before the request's waiter hears of it (its
        # answer's freshness must not count this update as still running).
        self._finish(batch, summary, idle=True)
        trim_heap()
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
            self._pub.notify_all()
        self.current = None
        self.progress_info = None
        self.state = "idle"
        self.last_activity = time.monotonic()

    def _progress(self, phase: str, done: int, total: int) -> None:
        self._check_stop()
        self.progress_info = (phase, done, total)

    def _summary(self, report: IndexReport, batch: Batch, paths: list[str] | None,
                 seconds: float) -> dict[str, Any]:
        changed: list[str] = []
        if paths is not None and (report.files_changed or report.files_deleted):
            changed = paths[:50]
        out = dataclasses.asdict(report)
        out.update(at=time.time(), seconds=round(seconds, 4), reason=batch.reason,
                   full=paths is None, paths_checked=None if paths is None else len(paths), changed=changed)
        return out

    def _finish(self, batch: Batch, summary: dict[str, Any], idle: bool = False) -> None:
        """Record ``summary`` as the last update (unless it failed or was skipped), end the update if
        ``idle``, then tell the waiters of ``batch``'s ticket."""
        if "error" not in summary and not summary.get("skipped"):
            self.last_update = summary
            self.updates += 1
            self.full_passes += bool(summary.get("full"))
        if idle:
            self._end_update()
        with self._pub:
            if batch.ticket:
                self._ticket_reports[batch.ticket] = summary
                for old in [t for t in self._ticket_reports if t < batch.ticket - 100]:
                    del self._ticket_reports[old]
                self._done_ticket = max(self._done_ticket, batch.ticket)
            self._pub.notify_all()

