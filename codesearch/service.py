"""The service core: one repository's warm searcher, freshness, status and re-index.

:class:`Service` owns what every front door needs: the writer lock, the warm encoder, the
:class:`~codesearch.watcher.TreeWatcher` (events -> pending paths), the
:class:`~codesearch.updater.Updater` (pending paths -> generations) and a reader that follows new
generations from their id delta. Its methods (:meth:`Service.search`, :meth:`Service.get_code`,
:meth:`Service.similar`, :meth:`Service.status`, :meth:`Service.reindex`) and the JSON request API
over them (:meth:`Service.handle_request`, the protocol of :mod:`codesearch.client`) are what the
front doors call: the socket of :mod:`codesearch.daemon`, the LSP server (:mod:`codesearch.lsp`, in
process) and the MCP server (:mod:`codesearch.mcp_server`, through the socket). Every answer to a
search carries its freshness: the generation it read, whether changes are pending, the last update.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import client
from .config import SEARCH_MODES, Settings
from .embed import Embedder, cpu_threads, load_embedder
from .errors import CodesearchError, IndexLocked, IndexMissing, UsageError
from .index import IndexReader, WriterLock, find_index_dir
from .indexer import IndexReport
from .pending import PendingPaths
from .search import Searcher, resolve
from .store import LocalStore, VectorStore
from .types import Hit, Symbol
from .updater import IndexedFiles, ParallelEmbedder, Stopping, Updater
from .watcher import TreeWatcher

log = logging.getLogger(__name__)

#: Quiet time after an event that completes a write (close after writing, rename into place, delete):
#: an editor's save is searchable this long after it, not ``debounce_ms`` after it.
SETTLE_SECONDS = 0.05
#: Most results one request may ask for.
MAX_K = 10_000
#: Most bytes of code :meth:`Service.get_code` returns unless asked for more.
MAX_CODE_BYTES = 200_000


class Mismatch(Exception):
    """A request this service cannot answer the way an in-process search would (the client falls back)."""


def rss_mb() -> dict[str, float]:
    """This process's resident and peak memory, MB (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def _str_list(req: dict[str, Any], key: str) -> tuple[str, ...]:
    value = req.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{key} must be a list of strings")
    return tuple(value)


def _int(req: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = req.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
        raise UsageError(f"{key} must be an integer from {low} to {high}")
    return value


def search_args(req: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """A search request's query text, ``k`` and mode, checked."""
    text = req.get("query")
    if not isinstance(text, str):
        raise UsageError("query must be a string")
    mode = req.get("mode")
    if mode is not None and mode not in SEARCH_MODES:
        raise UsageError(f"unknown mode {mode!r} (choose from {', '.join(SEARCH_MODES)})")
    return text, _int(req, "k", 1, MAX_K), mode


def answer(req: Any, ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> dict[str, Any]:
    """Answer one request of the :mod:`codesearch.client` protocol with ``ops`` (by op name); never raises.

    ``ping`` is answered here; a failure becomes ``{"error", "type"}`` (the client reports it or falls back).
    """
    try:
        if not isinstance(req, dict):
            raise UsageError("a request must be a JSON object")
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "version": client.build_id()}
        handler = ops.get(op) if isinstance(op, str) else None
        if handler is None:
            raise UsageError(f"unknown op {op!r} ({', '.join(['ping', *ops])})")
        return handler(req)
    except CodesearchError as exc:
        return {"error": str(exc), "type": type(exc).__name__}
    except Mismatch as exc:
        return {"error": str(exc), "type": "Mismatch"}
    except Exception as exc:  # a bug must not kill the service; the client falls back
        log.exception("request failed: %r", req)
        return {"error": f"internal error: {type(exc).__name__}: {exc}", "type": "InternalError"}


def _find_unit(store: VectorStore, unit_id: int | None, path: str | None, line: int | None, repo: str | None,
               where: str) -> tuple[int, Symbol]:
    """The unit a request names: by id, or the innermost unit of ``path`` (in ``repo``) around ``line``.

    Raises:
        UsageError: neither given, or a path held by several repositories and no ``repo``.
        IndexMissing: no such unit.
    """
    if unit_id is None:
        if path is None or line is None:
            raise UsageError("give an id, or a path and a line")
        found = store.unit_at(path, line, repo)
        if not found:
            raise IndexMissing(f"no indexed unit of {path} spans line {line}"
                               + (f" in repository {repo}" if repo else ""))
        if len(found) > 1:
            names = ", ".join(r for r, _ in found[:10])
            raise UsageError(f"{path} is in several repositories ({names}); say which (repo)")
        unit_id = found[0][1]
    sym = store.symbols([unit_id]).get(unit_id)
    if sym is None:
        raise IndexMissing(f"no unit with id {unit_id} in {where} (its file changed since the search); search again")
    return unit_id, sym


def unit_record(store: VectorStore, unit_id: int | None, path: str | None, line: int | None, repo: str | None,
                max_bytes: int, where: str) -> dict[str, Any]:
    """The full indexed text of one unit as a JSON record (``get`` requests, local index and backend alike).

    Args:
        store: The index (inside its snapshot).
        unit_id: The unit's id, or None to find it by ``path`` and ``line``.
        path: A repository-relative path.
        line: A 1-based line inside the unit.
        repo: The repository of ``path`` (a backend); None: any.
        max_bytes: Cut the code after this many bytes.
        where: What the store is, for the error message ("generation 7", "backend org.db").
    """
    uid, sym = _find_unit(store, unit_id, path, line, repo, where)
    code = sym.code
    data = code.encode("utf-8")
    truncated = len(data) > max_bytes
    if truncated:
        code = data[:max_bytes].decode("utf-8", errors="ignore")
    out = client.hit_record(Hit(sym, 0.0, unit_id=uid, repo=store.repos([uid]).get(uid)), explain=False)
    out.pop("score", None)
    out.update(code=code, truncated=truncated, docstring=sym.docstring)
    return out


def similar_units(store: VectorStore, embedder: Embedder, settings: Settings, unit_id: int | None,
                  path: str | None, line: int | None, repo: str | None, code: str | None, k: int | None,
                  languages: tuple[str, ...] = (), paths: tuple[str, ...] = (), kinds: tuple[str, ...] = (),
                  repos: tuple[str, ...] = (), where: str = "the index") -> list[Hit]:
    """Units most similar to a unit (by id, or path + line) or to a code snippet (cosine, the unit excluded).

    Call inside the store's snapshot. Filters are those of a search (``languages``, ``paths``, ``kinds``,
    ``repos``).

    Raises:
        UsageError: no unit or snippet given, or an empty snippet.
        IndexMissing: no such unit.
    """
    if code is None and unit_id is None and (path is None or line is None):
        raise UsageError("give a unit (id, or path and line) or a code snippet")
    k = k or settings.k
    filters = resolve("similar", settings, k, "semantic", languages, paths, kinds, repos).filters
    exclude = None
    if code is not None:
        if not code.strip():
            raise UsageError("the code snippet is empty")
        qvec = embedder.encode([code], kind="document")[0]
    else:
        exclude, _ = _find_unit(store, unit_id, path, line, repo, where)
        vec = store.unit_vectors([exclude]).get(exclude)
        if vec is None:
            raise IndexMissing(f"unit {exclude} left the index; search again")
        qvec = vec
    allowed = store.allowed_ids(filters)
    found = store.vector_search(qvec, k + 1, allowed)
    found = [(uid, s) for uid, s in found if uid != exclude][:k]
    symbols = store.symbols([uid for uid, _ in found])
    repo_of = store.repos([uid for uid, _ in found])
    return [Hit(symbols[uid], float(s), rank, float(s), unit_id=uid, repo=repo_of.get(uid))
            for rank, (uid, s) in enumerate(found, 1) if uid in symbols]


class Service:
    """Keeps one repository's index fresh and answers requests from a warm process.

    Use :meth:`start` ... :meth:`close`; front doors call the request methods from any thread.

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
        self._given_embedder = embedder
        self.embedder: Embedder | None = None
        self.pending = PendingPaths(settings.debounce_ms / 1000, settings.debounce_max_ms / 1000, SETTLE_SECONDS)
        self.indexed = IndexedFiles(self.root, self.index_dir)
        self.watcher = TreeWatcher(self.root, self.index_dir, settings.ignore, self.pending,
                                   is_current=self.indexed.unchanged)
        self.updater: Updater | None = None
        self._lock: WriterLock | None = None
        self._threads: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        self._started = False
        self._started_at = time.time()
        #: When a front door last asked something (monotonic), for idle time-outs.
        self.last_request = time.monotonic()
        self.fatal: BaseException | None = None
        #: Called (from the writer thread) when the writer fails fatally; the owner stops.
        self.on_fatal: Callable[[], None] | None = None
        self._search_lock = threading.Lock()
        self._reader: IndexReader | None = None
        self._searchers: dict[tuple[Any, ...], Searcher] = {}

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the writer lock, load the encoder, start indexing and watching.

        Raises:
            IndexLocked: another daemon watches this repository, or an index run is in progress.
            UsageError: the inotify watch limit is too low.
        """
        if self._started:
            raise UsageError("service already started")
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
            self.embedder = self._load_embedder()
            self.updater = Updater(self.root, self.settings, self.index_dir, self.embedder, self.pending,
                                   self._check_stop, self._warm_reader, self._writer_failed, self.indexed)
        except BaseException:
            self.close()
            raise

    def start_threads(self) -> None:
        """Start the writer thread (a full incremental pass first) and the file watcher."""
        assert self.updater is not None
        try:
            self.watcher.start()
            self._spawn(self.updater.run, "writer")
        except BaseException:
            self.close()
            raise

    def _load_embedder(self) -> Embedder:
        intra = self.settings.threads or 1
        workers = max(1, (self.settings.threads or cpu_threads()) // intra)
        inner = self._given_embedder
        if inner is None:
            inner = load_embedder(self.settings.model, max_length=self.settings.max_length,
                                  batch_size=self.settings.batch_size, threads=intra, runtime=self.settings.runtime,
                                  serving=True)
        return ParallelEmbedder(inner, workers, stopping=self._check_stop)

    def _writer_failed(self, exc: BaseException) -> None:
        self.fatal = exc
        self.request_stop()
        if self.on_fatal is not None:
            self.on_fatal()

    def request_stop(self) -> None:
        """Ask the service to stop (thread-safe, returns at once)."""
        self._stop_requested.set()
        self.pending.close()
        if self.updater is not None:
            self.updater.close()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_requested.is_set()

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            raise Stopping

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`close` has finished."""
        return self._closed.wait(timeout)

    def close(self) -> None:
        """Stop watching, abandon the current update (its committed state stays), release the lock. Idempotent."""
        with self._close_lock:
            if self._closed.is_set():
                return
            self.request_stop()
            if self.updater is not None:
                self.updater.state = "stopping"
            self.watcher.stop()
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
            self.indexed.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if self.updater is not None:
                self.updater.state = "stopped"
            self._closed.set()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=f"codesearch-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def state(self) -> str:
        """starting | indexing | idle | stopping | stopped."""
        return self.updater.state if self.updater is not None else "starting"

    def idle_for(self) -> float:
        """Seconds since the last request or update (0 while an update runs or paths wait)."""
        if self.updater is None or self.updater.busy:
            return 0.0
        return time.monotonic() - max(self.last_request, self.updater.last_activity)

    # -- the warm reader --------------------------------------------------------------------------------

    def _open_reader(self) -> IndexReader:
        if self._reader is None:
            self._reader = IndexReader(self.index_dir)
        return self._reader

    def _warm_reader(self, report: IndexReport) -> None:
        """Load the new generation into the reader now (its id delta), not on the next query."""
        with self._search_lock:
            if report.rebuild_reason:
                self._searchers.clear()
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            try:
                with self._open_reader().snapshot():
                    pass
            except (CodesearchError, sqlite3.Error) as exc:
                log.warning("cannot open the new index generation: %s", exc)

    def _searcher(self, settings: Settings) -> Searcher:
        """The warm searcher for ``settings`` (call under ``_search_lock``)."""
        try:
            reader = self._open_reader()
        except IndexMissing:
            if self.state in ("starting", "indexing"):
                raise IndexMissing("the watch daemon is still building the first index; try again when "
                                   "`codesearch watch --status` says idle") from None
            raise
        key = tuple(dataclasses.astuple(settings))
        searcher = self._searchers.get(key)
        if searcher is None:
            if len(self._searchers) > 8:
                self._searchers.clear()
            assert self.embedder is not None
            searcher = Searcher(reader, settings, embedder=self.embedder)
            self._searchers[key] = searcher
        return searcher

    def freshness(self, generation: int | None = None) -> dict[str, Any]:
        """How fresh an answer is: the generation read, pending changes, the last update's time."""
        updater = self.updater
        last = updater.last_update if updater is not None else None
        updated_at = None
        reader = self._reader
        if reader is not None:
            updated_at = float(reader.meta.get("updated_at", "0")) or None
        return {
            "generation": generation if generation is not None else (reader.generation if reader else 0),
            "pending": len(self.pending) + (1 if updater is not None and updater.state == "indexing" else 0),
            "state": self.state,
            "updated_at": updated_at if updated_at is not None else (last or {}).get("at"),
        }

    # -- requests ---------------------------------------------------------------------------------------

    def rel_path(self, path: str) -> str:
        """``path`` (relative to the root or absolute) as a root-relative path inside the root.

        Raises:
            UsageError: the path leaves the root (``..``, an absolute path elsewhere, or a symbolic
                link that resolves outside it).
        """
        if not isinstance(path, str) or not path or "\0" in path:
            raise UsageError("a path must be a non-empty string")
        full = Path(path) if os.path.isabs(path) else self.root / path
        real = Path(os.path.realpath(full))
        try:
            rel = real.relative_to(self.root)
        except ValueError:
            raise UsageError(f"not inside the repository {self.root}: {path}") from None
        return rel.as_posix() if rel.parts else ""

    def search(self, text: str, k: int | None = None, mode: str | None = None, languages: tuple[str, ...] = (),
               paths: tuple[str, ...] = (), kinds: tuple[str, ...] = (),
               settings: Settings | None = None) -> tuple[list[Hit], dict[str, Any]]:
        """Rank units for ``text`` on the warm searcher; returns the hits and the answer's freshness."""
        self.last_request = time.monotonic()
        with self._search_lock:
            searcher = self._searcher(settings or self.settings)
            hits = searcher.search(text, k=k, mode=mode, languages=languages, paths=paths, kinds=kinds)
            generation = searcher.reader.generation
        return hits, self.freshness(generation)

    def get_code(self, unit_id: int | None = None, path: str | None = None, line: int | None = None,
                 max_bytes: int = MAX_CODE_BYTES) -> dict[str, Any]:
        """The full indexed text of one unit: by id, or the innermost unit of ``path`` around ``line``.

        Raises:
            UsageError: neither an id nor a path and line, or a path outside the root.
            IndexMissing: no such unit in the current generation.
        """
        self.last_request = time.monotonic()
        rel = None
        if unit_id is None:
            if path is None or line is None:
                raise UsageError("give an id, or a path and a line")
            rel = self.rel_path(path)
        with self._search_lock:
            reader = self._open_reader()
            with reader.snapshot():
                out = unit_record(LocalStore(reader), unit_id, rel, line, None, max_bytes,
                                  f"generation {reader.generation}")
                generation = reader.generation
        return {"unit": out, **self.freshness(generation)}

    def similar(self, unit_id: int | None = None, path: str | None = None, line: int | None = None,
                code: str | None = None, k: int | None = None, languages: tuple[str, ...] = (),
                paths: tuple[str, ...] = (), kinds: tuple[str, ...] = ()) -> tuple[list[Hit], dict[str, Any]]:
        """Units most similar to a unit (by id, or path + line) or to a code snippet (cosine, the unit excluded).

        Raises:
            UsageError: no unit or snippet given, or a path outside the root.
        """
        self.last_request = time.monotonic()
        if code is None and unit_id is None and (path is None or line is None):
            raise UsageError("give a unit (id, or path and line) or a code snippet")
        rel = self.rel_path(path) if unit_id is None and code is None and path is not None else None
        with self._search_lock:
            reader = self._open_reader()
            with reader.snapshot():
                assert self.embedder is not None
                hits = similar_units(LocalStore(reader), self.embedder, self.settings, unit_id, rel, line, None,
                                     code, k, languages, paths, kinds, where=f"generation {reader.generation}")
                generation = reader.generation
        return hits, self.freshness(generation)

    def reindex(self, paths: tuple[str, ...] | None = None, wait: bool = True,
                timeout: float | None = None) -> dict[str, Any]:
        """Re-check ``paths`` (None: the whole tree) now; with ``wait``, return once that update is published."""
        self.last_request = time.monotonic()
        assert self.updater is not None
        if paths is not None:
            rels = [self.rel_path(p) for p in paths]
            files = [r for r in rels if r and not (self.root / r).is_dir()]
            dirs = [r for r in rels if not r or (self.root / r).is_dir()]
            ticket = self.updater.request(files, dirs)
        else:
            ticket = self.updater.request(None)
        if not wait:
            return {"ok": True, "ticket": ticket}
        report = self.updater.wait_ticket(ticket, timeout)
        if report is None:
            raise IndexLocked("the daemon stopped (or timed out) before the update finished")
        if "error" in report:
            raise IndexLocked(f"the daemon's update failed: {report['error']}")
        return {"ok": True, "ticket": ticket, "report": report, **self.freshness()}

    def status(self) -> dict[str, Any]:
        """What the service is doing: state, queue, last update, units, files not indexed, memory."""
        updater = self.updater
        out: dict[str, Any] = {
            "pid": os.getpid(), "version": client.build_id(), "root": str(self.root),
            "index_dir": str(self.index_dir), "socket": str(client.socket_path(self.index_dir)),
            "started_at": self._started_at, "state": self.state, "queue": len(self.pending),
            "current": updater.current if updater else None, "last_update": updater.last_update if updater else None,
            "last_error": updater.last_error if updater else None, "updates": updater.updates if updater else 0,
            "full_passes": updater.full_passes if updater else 0,
            "events": self.watcher.events, "events_ignored": self.watcher.dropped,
            "overflows": self.watcher.overflows,
            "settings": {"debounce_ms": self.settings.debounce_ms, "debounce_max_ms": self.settings.debounce_max_ms,
                         "model": self.settings.model, "daemon_idle_seconds": self.settings.daemon_idle_seconds},
        }
        if updater is not None and updater.progress_info and updater.current is not None:
            phase, done, total = updater.progress_info
            out["current"] = dict(updater.current, phase=phase, done=done, total=total)
        out.update(rss_mb())
        try:
            with self._search_lock:
                info = self._open_reader().status()
            out.update(units=info["units"], files=info["files"], generation=info["generation"],
                       languages=info["languages"], not_indexed=info["not_indexed"], updated_at=info["updated_at"],
                       model=info["model"])
        except CodesearchError as exc:
            out.update(units=0, files={}, generation=0, languages={}, not_indexed=[], index_error=str(exc))
        return out

    # -- the JSON request API (the protocol of codesearch.client) ----------------------------------------

    def handle_request(self, req: Any) -> dict[str, Any]:
        """Answer one protocol request (see :mod:`codesearch.client`); never raises."""
        return answer(req, {
            "search": self._op_search,
            "get": lambda r: self.get_code(_int(r, "id", 0, 1 << 62), r.get("path"), _int(r, "line", 1, 1 << 31),
                                           _int(r, "max_bytes", 1, 1 << 30) or MAX_CODE_BYTES),
            "similar": self._op_similar,
            "status": lambda r: self.status(),
            "reindex": lambda r: self.reindex(None if r.get("paths") is None else _str_list(r, "paths"),
                                              bool(r.get("wait", True))),
        })

    def _op_search(self, req: dict[str, Any]) -> dict[str, Any]:
        text, k, mode = search_args(req)
        langs, paths, kinds = (_str_list(req, key) for key in ("languages", "paths", "kinds"))
        settings = self._request_settings(req.get("settings"))
        hits, fresh = self.search(text, k=k, mode=mode, languages=langs, paths=paths, kinds=kinds, settings=settings)
        return {"results": [client.hit_record(h, explain=True) for h in hits], **fresh}

    def _op_similar(self, req: dict[str, Any]) -> dict[str, Any]:
        code = req.get("code")
        if code is not None and not isinstance(code, str):
            raise UsageError("code must be a string")
        path = req.get("path")
        if path is not None and not isinstance(path, str):
            raise UsageError("path must be a string")
        langs, paths, kinds = (_str_list(req, key) for key in ("languages", "paths", "kinds"))
        hits, fresh = self.similar(_int(req, "id", 0, 1 << 62), path, _int(req, "line", 1, 1 << 31), code,
                                   _int(req, "k", 1, MAX_K), langs, paths, kinds)
        return {"results": [client.hit_record(h, explain=False) for h in hits], **fresh}

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
            raise Mismatch("the daemon runs another model than this query asks for")
        if settings.runtime != self.settings.runtime:
            raise Mismatch("the daemon runs another encoder runtime than this query asks for")
        return settings
