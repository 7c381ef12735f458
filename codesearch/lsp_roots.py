"""LSP front door, part 4: workspace roots (one index each) and the thread that builds and updates them."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from pygls.uris import from_fs_path

from .config import Settings
from .index import find_index_dir
from .overlay import BufferOverlay
from .search import Searcher

log = logging.getLogger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Workspace roots


class RootIndex:
    """One workspace folder: its settings, searcher, unsaved buffers and index state.

    Args:
        root: The folder (resolved).
        settings: Its settings.
    """

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.uri = from_fs_path(str(root)) or root.as_uri()
        self.settings = settings
        #: starting | indexing | ready | error
        self.state = "starting"
        self.message = "starting"
        #: Who keeps the index fresh: "watcher" (in-process), "daemon", "shared" (another writer),
        #: "saves" (this server, on save only), or "" before the first build.
        self.freshness = ""
        self.searcher: Searcher | None = None
        self.overlay: BufferOverlay | None = None
        self.lock = threading.Lock()
        self.ready = asyncio.Event()
        self.watcher: Any = None
        self.progress: tuple[int, int] | None = None
        self.last_report: dict[str, Any] | None = None
        #: The index's counts as last read (units, files, languages, generation, model).
        self.counts: dict[str, Any] = {}

    @property
    def index_dir(self) -> Path:
        """Where the index lives."""
        return find_index_dir(self.root, self.settings.index_dir)

    def relative(self, path: Path) -> str | None:
        """``path`` relative to the root (forward slashes), or None if outside it or in the index dir."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return None
        try:
            path.relative_to(self.index_dir)
            return None
        except ValueError:
            return rel.as_posix()

    def close(self) -> None:
        """Stop the watcher and close the index."""
        if self.watcher is not None:
            try:
                self.watcher.close()
            except Exception:  # closing must not fail
                log.exception("stopping the watcher failed")
            self.watcher = None
        with self.lock:
            if self.searcher is not None:
                self.searcher.close()
                self.searcher = None


class _IndexWorker:
    """One daemon thread that runs index jobs in order (builds, updates, model loads).

    A daemon thread, so that ``exit`` never waits for a long build: an interrupted build leaves the
    previous index generation intact.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="codesearch-index", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to whoever waits
                fut.set_exception(exc)

    def stop(self) -> None:
        self._jobs.put(None)
