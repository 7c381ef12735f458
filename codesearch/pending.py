"""Pending paths: what the file watcher saw, debounced per path and coalesced into writer batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


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
            A ticket for :meth:`codesearch.updater.Updater.wait_ticket`.
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

    def drop_if(self, rels: Iterable[str], unchanged: Callable[[str], bool]) -> int:
        """Forget the pending events on ``rels`` for which ``unchanged(rel)`` is true (checked outside the
        lock); an entry that gets another event meanwhile is kept. Returns how many were dropped.

        The updater calls this after indexing ``rels``: an event that arrived while it did (the write that
        an explicit re-index request raced) is not a change if the file is as the update indexed it.
        """
        with self._cond:
            seen = {rel: self._paths[rel] for rel in rels if rel in self._paths and rel not in self._forced}
        stale = [rel for rel, entry in seen.items() if not entry[2] and unchanged(rel)]
        dropped = 0
        with self._cond:
            for rel in stale:
                if self._paths.get(rel) == seen[rel] and rel not in self._forced:
                    del self._paths[rel]
                    dropped += 1
        return dropped

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

