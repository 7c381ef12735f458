"""Watching a tree: filesystem events (watchdog, inotify on Linux) -> pending repository paths.

:class:`TreeWatcher` maps each event to repository-relative paths, drops what is ignored (VCS and
build directories, ``.gitignore``/``.codesearchignore`` rules, ``Settings.ignore``, the index
directory, files of no known language) and marks the rest pending in a
:class:`~codesearch.pending.PendingPaths`. That is all the work an ignored path causes. When the
kernel's event queue overflows (events were lost), it asks for a full incremental pass, which
reconciles the index with the tree at the cost of a stat per file.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parsers import language_for_path

from .errors import UsageError
from .pending import PendingPaths
from .walk import IGNORE_FILES, SKIP_DIRS, Ignorer

log = logging.getLogger(__name__)

#: How long watchdog holds a rename's first half while it waits for the second (its default is 0.5 s,
#: which an editor's atomic save would add to every save-to-searchable time). Both paths of a move are
#: re-checked anyway, so an unpaired move costs nothing but a second look.
MOVE_PAIR_DELAY = 0.05

#: Live watchers, told when any inotify queue of this process overflows.
_OVERFLOW_LISTENERS: weakref.WeakSet[TreeWatcher] = weakref.WeakSet()
_OVERFLOW_HOOK_LOCK = threading.Lock()
_overflow_hooked = False


def _hook_overflow() -> None:
    """Make watchdog's inotify overflow handler (which re-adds its watches) tell our watchers too.

    watchdog 7 handles ``IN_Q_OVERFLOW`` by rebuilding its recursive watches, but it emits no event,
    so without this hook lost events would stay lost until the next start.
    """
    global _overflow_hooked
    with _OVERFLOW_HOOK_LOCK:
        if _overflow_hooked:
            return
        try:
            from watchdog.observers.inotify import InotifyWatchGroup
        except ImportError:  # not Linux: no inotify queue to overflow
            _overflow_hooked = True
            return
        original = InotifyWatchGroup.on_queue_overflow

        def on_queue_overflow(self: Any) -> None:
            original(self)
            for watcher in list(_OVERFLOW_LISTENERS):
                watcher.overflowed()

        InotifyWatchGroup.on_queue_overflow = on_queue_overflow  # type: ignore[method-assign]
        _overflow_hooked = True


class TreeWatcher:
    """Watches ``root`` recursively and feeds ``pending``.

    Args:
        root: Repository root (resolved).
        index_dir: The index directory (its events are dropped when it lies inside the root).
        extra_ignore: ``Settings.ignore`` patterns.
        pending: Where paths go.
        on_overflow: Called (on the observer thread) when events were lost; default: request a full pass.
        is_current: Whether a file is as the index recorded it (``updater.IndexedFiles.unchanged``): its
            events are dropped, since they report writes already indexed (a re-index request can finish
            before watchdog delivers the event of the write it indexed).
    """

    def __init__(self, root: Path, index_dir: Path, extra_ignore: tuple[str, ...] | list[str],
                 pending: PendingPaths, on_overflow: Callable[[], None] | None = None,
                 is_current: Callable[[str], bool] | None = None) -> None:
        self.root = root
        self.pending = pending
        self._is_current = is_current
        self._on_overflow = on_overflow
        self._extra_ignore = list(extra_ignore)
        self._index_rel: str | None = None
        try:
            self._index_rel = index_dir.relative_to(root).as_posix()
            self._extra_ignore.append(f"/{self._index_rel}/")
        except ValueError:
            pass
        self._root_prefix = str(root).rstrip("/") + "/"
        self._ignorer_lock = threading.Lock()
        self._ignorer = Ignorer(root, tuple(self._extra_ignore))
        self._observer: Any = None
        #: Events seen, events dropped as ignored, queue overflows seen.
        self.events = 0
        self.dropped = 0
        self.overflows = 0

    def start(self) -> None:
        """Start the observer thread.

        Raises:
            UsageError: the inotify watch limit is too low for this tree.
        """
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
        _hook_overflow()
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                try:
                    watcher.on_event(event)
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
        _OVERFLOW_LISTENERS.add(self)

    def stop(self) -> None:
        """Stop the observer thread (idempotent)."""
        _OVERFLOW_LISTENERS.discard(self)
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(10)
            except Exception:  # stopping must not fail
                log.debug("stopping the observer failed", exc_info=True)

    def overflowed(self) -> None:
        """Events were lost: reconcile the whole tree (a full incremental pass)."""
        self.overflows += 1
        log.warning("the kernel's event queue overflowed; re-checking the whole tree of %s", self.root)
        if self._on_overflow is not None:
            self._on_overflow()
        else:
            self.pending.request(None)

    def rel(self, path: str | bytes) -> str | None:
        """``path`` relative to the root ("" for the root itself), or None if it lies outside."""
        p = os.fsdecode(path)
        if p == str(self.root):
            return ""
        if not p.startswith(self._root_prefix):
            return None
        rel = os.path.normpath(p[len(self._root_prefix):])
        return None if rel.startswith("..") else rel

    def on_event(self, event: Any) -> None:
        """Map one watchdog event to pending paths (the observer thread; keep it cheap)."""
        self.events += 1
        is_dir = bool(event.is_directory)
        # A closed-after-writing file, a rename's two ends (an atomic save) and a deletion are complete;
        # a creation or a modification may be followed by more writes.
        settled = event.event_type in ("closed", "moved", "deleted")
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            rel = self.rel(raw)
            if rel is None or rel == "":
                continue
            if self._index_rel is not None and (rel == self._index_rel or rel.startswith(self._index_rel + "/")):
                self.dropped += 1
                continue
            name = rel.rsplit("/", 1)[-1]
            if not is_dir and name in IGNORE_FILES:
                with self._ignorer_lock:
                    self._ignorer = Ignorer(self.root, tuple(self._extra_ignore))
                parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
                if self.ignored(parent, True) and parent:
                    self.dropped += 1
                    continue
                self.pending.add(parent, is_dir=True, settled=settled)
                continue
            if not is_dir and language_for_path(name) is None:
                self.dropped += 1
                continue
            if self.ignored(rel, is_dir):
                self.dropped += 1
                continue
            if not is_dir and self._is_current is not None and self._is_current(rel):
                self.dropped += 1
                continue
            self.pending.add(rel, is_dir=is_dir, settled=settled)

    def ignored(self, rel: str, is_dir: bool) -> bool:
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
