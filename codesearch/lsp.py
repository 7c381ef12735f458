"""``codesearch lsp``: a language server (pygls 2.x) that answers semantic code searches for editors.

Protocol (documented with JSON examples in docs/lsp.md):

* ``codesearch/search`` request ``{query, k?, language?, path?, kind?, mode?}`` -> ``{results: [...]}``;
  the same as ``workspace/executeCommand`` ``codesearch.search``. ``codesearch.reindex`` and
  ``codesearch.status`` are commands too; ``workspace/symbol`` is answered by semantic search.
* The server pushes ``codesearch/status`` notifications when the index state changes, and reports
  index builds as ``$/progress`` work-done progress.
* Open buffers: ``didOpen``/``didChange`` (debounced) put the buffer's units into an in-memory
  overlay (:mod:`codesearch.overlay`); ``didSave`` updates the index of that file.

Threads: the pygls event loop handles messages; one *index worker* thread runs everything that
writes the index or loads the model (in order); a small pool runs searches and buffer updates, and
one more thread waits on the watch daemon. Each workspace root's reader is used under its own lock.
Handlers never let an exception escape as anything but a JSON-RPC error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
)
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .config import Settings
from .embed import Embedder, cpu_threads, load_embedder
from .errors import CodesearchError, IndexCorrupt, IndexLocked, IndexMissing, IndexStale, UsageError
from .index import IndexReader
from .indexer import index_repository
from .lsp_convert import SNIPPET_LINES, _plain, backend_hit_json, hit_json, hit_range, snippet
from .lsp_params import MAX_K, SearchRequest, ServerOptions, command_request, parse_options
from .lsp_protocol import REQUEST_FAILED, SEARCH_METHOD, CodesearchProtocol, RequestFailed, _short
from .lsp_roots import RootIndex, _IndexWorker
from .overlay import BufferOverlay, QueryVectorCache, overlay_search
from .search import Searcher
from .types import Hit
from .walk import Ignorer, entry_for

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Server -> client notification carrying the index state (for status bars).
STATUS_NOTIFICATION = "codesearch/status"
CMD_SEARCH = "codesearch.search"
CMD_REINDEX = "codesearch.reindex"
CMD_STATUS = "codesearch.status"
COMMANDS = (CMD_SEARCH, CMD_REINDEX, CMD_STATUS)

_SYMBOL_KINDS = {
    "function": types.SymbolKind.Function,
    "method": types.SymbolKind.Method,
    "constructor": types.SymbolKind.Constructor,
    "class": types.SymbolKind.Class,
}

__all__ = ["MAX_K", "REQUEST_FAILED", "SNIPPET_LINES", "SearchRequest", "ServerOptions", "command_request",
           "create_server", "hit_range", "parse_options", "serve", "snippet"]


# --------------------------------------------------------------------------------------------------
# The server


class CodesearchServer(LanguageServer):
    """The codesearch language server. Handlers are registered by :func:`create_server`."""

    def __init__(self) -> None:
        super().__init__("codesearch", _version(), protocol_cls=CodesearchProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.initialized = False
        self.options = ServerOptions()
        self.roots: dict[Path, RootIndex] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._worker = _IndexWorker()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="codesearch-query")
        # Requests to the watch daemon wait for its updates: kept off the query threads.
        self._daemon_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codesearch-daemon")
        self._embedders: dict[tuple[str | None, int, int, str], Embedder] = {}
        self._pending: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self._started = False
        self.shutting_down = False
        #: With a backend (option or setting ``backend``), every search goes to it (docs/scale.md) and
        #: the workspace folders are not indexed.
        self.backend_uri: str | None = None
        self._backend: Any = None
        self._backend_lock = threading.Lock()
        self._backend_error: str | None = None

    # ---- plumbing -------------------------------------------------------------------------------

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log errors to the client's log (not pop-ups); answer JSON that cannot be parsed with -32700."""
        if isinstance(error, ValueError) and not isinstance(error, JsonRpcException):
            # json.loads failed on a message body (JSONDecodeError or bad UTF-8).
            self.protocol._send_response(None, error=types.ResponseError(  # type: ignore[arg-type]
                code=-32700, message=f"parse error: {_short(error)}"))
        log.warning("%s: %s", getattr(source, "__name__", source), _short(error))
        self._log(f"codesearch: {_short(error)}", types.MessageType.Warning)

    def _log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # logging must not fail
            log.debug("could not send log message", exc_info=True)

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop thread (everything that writes to the client does)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _run_on_loop(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the loop from a worker thread and wait for it."""
        if self.loop is None:
            return None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def publish_status(self) -> None:
        """Send ``codesearch/status`` (on the loop thread)."""
        try:
            self.protocol.notify(STATUS_NOTIFICATION, self.status())
        except Exception:
            log.debug("could not send status", exc_info=True)

    def _set_state(self, root: RootIndex, state: str, message: str) -> None:
        root.state, root.message = state, message
        log.info("%s: %s (%s)", root.root, state, message)
        self._call_soon(self.publish_status)

    # ---- lifecycle ------------------------------------------------------------------------------

    def on_initialize(self, params: types.InitializeParams) -> None:
        """Record the workspace roots and options; the index work starts on ``initialized``."""
        self.loop = asyncio.get_running_loop()
        self.options, problems = parse_options(params.initialization_options)
        for p in problems:
            self._log(f"codesearch: {p}", types.MessageType.Warning)
        folders = [f.uri for f in params.workspace_folders or []]
        if not folders and params.root_uri:
            folders = [params.root_uri]
        if not folders and params.root_path:
            folders = [from_fs_path(params.root_path) or params.root_path]
        for uri in folders:
            self.add_root(uri)
        self.backend_uri = self._configured_backend()
        self.initialized = True

    def _configured_backend(self) -> str | None:
        """The backend to search: the ``backend`` option, else the first folder's (or the environment's) setting."""
        if self.options.backend:
            return self.options.backend
        from .config import load_settings

        for root in self.roots.values():
            if root.settings.backend:
                return root.settings.backend
        try:
            return load_settings(None).backend
        except CodesearchError:
            return None

    def backend_service(self) -> Any:
        """The open backend (opened on first use, on a worker thread).

        Raises:
            RequestFailed: it cannot be opened (the message says why).
        """
        with self._backend_lock:
            if self._backend is None:
                from .backend_service import BackendService

                service = None
                try:
                    settings = next(iter(self.roots.values())).settings if self.roots else \
                        self.options.settings_for(Path.cwd())
                    service = BackendService(str(self.backend_uri), settings)
                    service.searcher.embedder  # noqa: B018 - load the query encoder now
                except ImportError as exc:
                    raise RequestFailed(f"a backend needs the scale extra (pip install 'codesearch[scale]'): "
                                        f"{exc}") from None
                except CodesearchError as exc:
                    if service is not None:
                        service.close()
                    raise RequestFailed(str(exc)) from None
                self._backend = service
            return self._backend

    def close_backend(self) -> None:
        """Close the backend (a Milvus Lite file is then free for other processes)."""
        with self._backend_lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    def add_root(self, uri: str) -> RootIndex | None:
        """Start serving a workspace folder (no-op if served or not a local directory)."""
        path = to_fs_path(uri) if "://" in uri else uri
        if not path or not Path(path).is_dir():
            self._log(f"codesearch: workspace folder {uri} is not a local directory; ignored",
                      types.MessageType.Warning)
            return None
        root_path = Path(path).resolve()
        if root_path in self.roots:
            return self.roots[root_path]
        try:
            settings = self.options.settings_for(root_path)
        except CodesearchError as exc:
            settings = Settings()
            self._log(f"codesearch: {exc}; using default settings", types.MessageType.Warning)
        root = RootIndex(root_path, settings)
        self.roots[root_path] = root
        if self._started:
            self._start_root(root)
        return root

    def start(self) -> None:
        """Open or build every root's index (called on ``initialized``, or by the first search)."""
        if self._started:
            return
        self._started = True
        if self.backend_uri:
            self._worker.submit(self._open_backend)
            return
        for root in self.roots.values():
            self._start_root(root)

    def _open_backend(self) -> None:
        try:
            self.backend_service()
            self._backend_error = None
            self._log_from_worker(f"codesearch: searching the backend {self.backend_uri}")
        except RequestFailed as exc:
            self._backend_error = str(exc)
            self._call_soon(self._log, f"codesearch: {exc}", types.MessageType.Error)
        self._call_soon(self.publish_status)

    def _start_root(self, root: RootIndex) -> None:
        if self.backend_uri:
            return  # the backend serves the searches; the folders are not indexed
        fut = self._worker.submit(lambda: self._open_root(root))
        fut.add_done_callback(lambda f: self._root_failed(root, f))

    def _root_failed(self, root: RootIndex, fut: Future[Any]) -> None:
        exc = fut.exception()
        if exc is None:
            return
        message = str(exc) if isinstance(exc, CodesearchError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, CodesearchError):
            log.error("opening %s failed", root.root, exc_info=exc)
        self._set_state(root, "error", message)
        self._call_soon(root.ready.set)
        self._call_soon(self._log, f"codesearch: {root.root}: {message}", types.MessageType.Error)

    def remove_root(self, uri: str) -> None:
        """Stop serving a workspace folder."""
        path = to_fs_path(uri) if "://" in uri else uri
        root = self.roots.pop(Path(path).resolve(), None) if path else None
        if root is not None:
            self._worker.submit(root.close)

    async def on_shutdown(self) -> None:
        """Stop pending buffer updates and the watchers (their sockets go away; an update in progress
        is abandoned, its committed state stays)."""
        self.shutting_down = True
        for _, task in self._pending.values():
            task.cancel()
        self._pending.clear()
        assert self.loop is not None
        closing = [self.loop.run_in_executor(None, self._stop_watcher, r) for r in self.roots.values()]
        closing.append(self.loop.run_in_executor(None, self.close_backend))
        if closing:
            await asyncio.wait(closing, timeout=20)

    @staticmethod
    def _stop_watcher(root: RootIndex) -> None:
        watcher, root.watcher = root.watcher, None
        if watcher is not None:
            try:
                watcher.close()
            except Exception:
                log.exception("stopping the watcher of %s failed", root.root)

    def on_exit(self) -> None:
        """Leave at once: exit code 0 after ``shutdown``, 1 without (per the LSP)."""
        code = 0 if self.shutting_down else 1
        for root in self.roots.values():
            if root.watcher is not None:  # exit without shutdown: still remove the sockets
                threading.Thread(target=self._stop_watcher, args=(root,), daemon=True).start()
        deadline = time.monotonic() + 5
        while any(r.watcher is not None for r in self.roots.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._worker.stop()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # A build may be running on the index thread; it holds no state worth waiting for
            # (the published generation stays intact), and pygls would otherwise wait for its
            # stdin reader thread.
            os._exit(code)

    # ---- opening and updating indexes (index worker thread) ---------------------------------------

    def embedder_for(self, settings: Settings) -> Embedder:
        """The encoder for ``settings`` (loaded once per model).

        One encoder thread, like the watch daemon (the same encoder, so query vectors equal its own bit
        for bit; a one-shot ``codesearch query`` computes them on numpy, equal to float rounding), and a
        query is not slowed by thread contention; index builds spread document batches over every core
        instead (:func:`_build_encoder`).
        """
        threads = settings.threads or 1
        key = (settings.model, settings.max_length, threads, settings.runtime)
        if key not in self._embedders:
            self._embedders[key] = load_embedder(settings.model, max_length=settings.max_length,
                                                 batch_size=settings.batch_size, threads=threads,
                                                 runtime=settings.runtime, serving=True)
        return self._embedders[key]

    def _open_root(self, root: RootIndex) -> None:
        """Load the model, open the index, update or build it, start keeping it fresh."""
        self._set_state(root, "starting", "loading the model")
        embedder = self.embedder_for(root.settings)
        daemon = self._daemon_running(root)
        if daemon:
            root.freshness = "daemon"
        self._try_open(root, embedder)
        if not daemon:
            try:
                self._index(root, embedder, None, "Indexing" if root.searcher is None else "Updating index")
                root.freshness = "saves"
            except IndexLocked as exc:
                root.freshness = "daemon" if self._daemon_running(root) else "shared"
                self._log_from_worker(f"codesearch: {exc}; searching its index meanwhile")
        while root.searcher is None:
            if self._try_open(root, embedder):
                break
            if root.freshness not in ("shared", "daemon"):
                raise IndexMissing(f"no index in {root.index_dir} after indexing")
            self._set_state(root, "indexing", "waiting for another codesearch process to build the index")
            time.sleep(1.0)
            if self.shutting_down or self.roots.get(root.root) is not root:
                return
        if root.freshness == "saves" and self.options.watch:
            self._start_watcher(root, embedder)
        self._set_state(root, "ready", self._summary(root))
        self._call_soon(self._refresh_buffers, root)  # against the updated index

    def _try_open(self, root: RootIndex, embedder: Embedder) -> bool:
        """Open the index for searching if it is usable as it is; returns whether it is open."""
        if root.searcher is not None:
            return True
        try:
            reader = IndexReader(root.index_dir)
        except (IndexMissing, IndexStale, IndexCorrupt):
            return False
        try:
            query_encoder = QueryVectorCache(embedder)
            searcher = Searcher(reader, root.settings, query_encoder)
        except IndexStale:
            reader.close()
            return False
        with root.lock:
            root.searcher = searcher
            root.overlay = BufferOverlay(query_encoder, reader.meta.get("doc_text_format") or
                                         root.settings.doc_text_format,
                                         root.settings.parse_timeout_ms / 1000 or None)
        self._call_soon(root.ready.set)
        self._call_soon(self._refresh_buffers, root)  # buffers opened while it was not searchable
        return True

    def _index(self, root: RootIndex, embedder: Embedder, paths: list[str] | None, title: str) -> dict[str, Any]:
        """Run the indexer for ``root`` (all files, or ``paths``), with work-done progress for full runs."""
        token = self._begin_progress(title, root) if paths is None else None
        if paths is None:
            self._set_state(root, "indexing", f"{title.lower()}")
        last = [0.0]

        def progress(phase: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < 0.25 and done != total:
                return
            last[0] = now
            root.progress = (done, total)
            message = {"scan": f"scanning: {done} files", "parse": f"parsing: {done}/{total} files",
                       "embed": f"embedding: {done}/{total} units"}.get(phase, phase)
            # Parsing is the first tenth of the bar, embedding the rest.
            pct = None if not total else done * 10 // total if phase == "parse" else 10 + done * 90 // total
            root.message = message
            if token is not None:
                self._call_soon(self.work_done_progress.report, token,
                                types.WorkDoneProgressReport(message=message, percentage=pct))
            self._call_soon(self.publish_status)

        encoder = _build_encoder(embedder, root.settings) if paths is None else embedder
        try:
            report = index_repository(root.root, root.settings, encoder, progress=progress, paths=paths)
        finally:
            root.progress = None
            if encoder is not embedder:
                encoder.close()  # type: ignore[attr-defined]
            if token is not None:
                self._call_soon(self.work_done_progress.end, token, types.WorkDoneProgressEnd(message="done"))
        data = {k: v for k, v in vars(report).items() if isinstance(v, int | float | str | dict | type(None))}
        root.last_report = data
        if paths is None:
            self._log_from_worker(f"codesearch: {root.root}: {report.files} files, {report.units} units "
                                  f"({report.embedded} embedded) in {report.seconds:.1f}s")
        return data

    def _begin_progress(self, title: str, root: RootIndex) -> str | None:
        caps = self.client_capabilities
        if caps is None or caps.window is None or not caps.window.work_done_progress:
            return None
        token = f"codesearch-{uuid.uuid4().hex[:8]}"

        async def create() -> None:
            await self.work_done_progress.create_async(token)
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title=f"codesearch: {title}", message=root.root.name, percentage=0, cancellable=False))

        try:
            self._run_on_loop(create(), timeout=10.0)
        except Exception as exc:  # no progress bar is not an error
            log.info("no work-done progress: %s", exc)
            return None
        return token

    def _log_from_worker(self, message: str) -> None:
        self._call_soon(self._log, message)

    def _daemon_running(self, root: RootIndex) -> str:
        """"daemon" when a ``codesearch watch`` process serves this index (it keeps it fresh)."""
        from .client import probe

        return "daemon" if probe(root.index_dir, timeout=2.0) is not None else ""

    def _start_watcher(self, root: RootIndex, embedder: Embedder) -> None:
        """Keep the index fresh with the watch daemon (:class:`codesearch.daemon.Daemon`) in this process.

        It holds the index's writer lock from now on and listens on the index's socket, so other
        processes (``codesearch query``, a second editor) use it too.
        """
        from .daemon import Daemon

        try:
            watcher = Daemon(root.root, root.settings, embedder=embedder)
            watcher.start()
        except IndexLocked as exc:
            root.freshness = "daemon" if self._daemon_running(root) else "shared"
            log.info("no in-process watcher for %s: %s", root.root, exc)
            return
        except Exception as exc:  # without a watcher, saves still update the index
            log.warning("no file watcher for %s: %s", root.root, exc)
            self._log_from_worker(f"codesearch: no file watcher ({_short(exc)}); the index is updated on save")
            return
        root.watcher = watcher
        root.freshness = "watcher"

    def ask_daemon(self, root: RootIndex, req: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a request to the watch daemon of ``root``: the in-process one, or the one on the socket."""
        from .client import DaemonUnavailable, connect

        watcher = root.watcher
        if watcher is not None:
            resp: dict[str, Any] = watcher.handle_request(req)
            if "error" in resp:
                raise RequestFailed(str(resp["error"]))
            return resp
        client = connect(root.index_dir, timeout=timeout)
        if client is None:
            raise RequestFailed(f"the codesearch watch daemon of {root.root} is gone")
        try:
            return client.request(req)
        except (DaemonUnavailable, CodesearchError) as exc:
            raise RequestFailed(str(exc)) from None
        finally:
            client.close()

    def _summary(self, root: RootIndex) -> str:
        with root.lock:
            if root.searcher is None:
                return root.message
            try:
                units = root.searcher.reader.count_units()
            except Exception:
                return "ready"
        return f"{units} units"

    # ---- buffers --------------------------------------------------------------------------------

    def root_for(self, uri: str) -> tuple[RootIndex, str] | None:
        """The root serving a document URI and the document's path relative to it."""
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if not path:
            return None
        p = Path(path)
        best: tuple[RootIndex, str] | None = None
        for root in self.roots.values():
            rel = root.relative(p)
            if rel is not None and (best is None or len(str(root.root)) > len(str(best[0].root))):
                best = (root, rel)
        return best

    def schedule_buffer(self, uri: str, delay: float) -> None:
        """(Re)compute a buffer's overlay after ``delay`` seconds (restarting the timer if pending)."""
        if self.shutting_down:
            return
        old = self._pending.pop(uri, None)
        if old is not None:
            old[1].cancel()
        go = asyncio.Event()
        task = asyncio.ensure_future(self._buffer_task(uri, go, delay))
        self._pending[uri] = (go, task)

    async def _buffer_task(self, uri: str, go: asyncio.Event, delay: float) -> None:
        try:
            await asyncio.wait_for(go.wait(), delay)
        except TimeoutError:
            pass
        try:
            doc = self.workspace.text_documents.get(uri)
            found = self.root_for(uri)
            if found is None:
                return
            root, rel = found
            text = doc.source if doc is not None else None
            assert self.loop is not None
            await self.loop.run_in_executor(self._pool, self._update_buffer, root, rel, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a buffer that fails to parse is logged, not fatal
            log.warning("buffer %s: %s", uri, exc)
            self._log(f"codesearch: cannot index the unsaved text of {uri}: {_short(exc)}",
                      types.MessageType.Warning)
        finally:
            current = self._pending.get(uri)
            if current is not None and current[1] is asyncio.current_task():
                del self._pending[uri]

    def _update_buffer(self, root: RootIndex, rel: str, text: str | None) -> None:
        """Overlay ``text`` for ``rel`` (or drop the overlay when the buffer is closed or not indexable)."""
        overlay = root.overlay
        if overlay is None or root.searcher is None:
            return  # not ready: _refresh_buffers runs once it is
        ignore = (*root.settings.ignore, *_index_dir_pattern(root))
        if text is None or entry_for(root.root, rel, Ignorer(root.root, ignore), must_exist=False) is None:
            overlay.drop(rel)
            return
        try:
            on_disk = (root.root / rel).read_bytes()
        except OSError:
            on_disk = None
        if on_disk == text.encode("utf-8", "surrogatepass"):
            # The file as saved: the index has it, or gets it from the watcher or the save.
            overlay.drop(rel)
            return
        overlay.set_buffer(rel, text, root.searcher.reader, lock=root.lock)

    def _refresh_buffers(self, root: RootIndex) -> None:
        """Recompute the overlays of every open document of ``root`` (after it became ready or was saved)."""
        for uri in list(self.workspace.text_documents):
            found = self.root_for(uri)
            if found is not None and found[0] is root:
                self.schedule_buffer(uri, 0.0)

    async def flush_buffers(self, roots: Sequence[RootIndex]) -> None:
        """Apply pending buffer updates now, so a search sees the latest text of every buffer."""
        waits = []
        for uri, (go, task) in list(self._pending.items()):
            found = self.root_for(uri)
            if found is not None and found[0] in roots:
                go.set()
                waits.append(task)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    def on_saved(self, uri: str) -> None:
        """Update the index for a saved file (unless a watcher or daemon does), then drop its overlay."""
        found = self.root_for(uri)
        if found is None:
            return
        root, rel = found
        if root.searcher is None:
            return
        if root.freshness == "saves":
            embedder = self.embedder_for(root.settings)

            def job() -> None:
                try:
                    self._index(root, embedder, [rel], "Updating")
                except IndexLocked as exc:
                    log.info("save of %s not indexed: %s", rel, exc)
                self._call_soon(self.schedule_buffer, uri, 0.0)

            self._worker.submit(job)
        elif root.freshness in ("watcher", "daemon"):
            self._daemon_pool.submit(self._daemon_reindex, root, rel, uri)
        else:
            # The watcher (or the other writer) updates the index shortly; the overlay stays correct
            # meanwhile and is dropped on a later check once the index agrees with the buffer.
            self.schedule_buffer(uri, 1.5)

    def _daemon_reindex(self, root: RootIndex, rel: str, uri: str) -> None:
        """Have the watch daemon re-check a saved file now (its watcher would, after its debounce),
        then recheck the buffer against the index."""
        try:
            self.ask_daemon(root, {"op": "reindex", "paths": [rel], "wait": True}, timeout=60.0)
        except RequestFailed as exc:
            log.info("daemon reindex of %s failed: %s", rel, exc)
        self._call_soon(self.schedule_buffer, uri, 0.0)

    # ---- requests -------------------------------------------------------------------------------

    def pick_roots(self, root: str | None) -> list[RootIndex]:
        """The roots a request addresses."""
        if root is None:
            return list(self.roots.values())
        path = to_fs_path(root) if "://" in root else root
        chosen = self.roots.get(Path(path).resolve()) if path else None
        if chosen is None:
            raise JsonRpcInvalidParams(f"{root} is not a workspace folder of this server")
        return [chosen]

    async def wait_ready(self, roots: Sequence[RootIndex]) -> None:
        """Wait until every root can be searched (cancellable); fail if one cannot."""
        self.start()
        for root in roots:
            await root.ready.wait()
        broken = [r for r in roots if r.searcher is None]
        if broken:
            raise RequestFailed("; ".join(f"{r.root}: {r.message}" for r in broken))

    async def search(self, req: SearchRequest) -> dict[str, Any]:
        """Answer a search across the addressed roots (or in the backend)."""
        started = time.perf_counter()
        if self.backend_uri:
            self.start()
            encoding = str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16.value)
            assert self.loop is not None
            results = await self.loop.run_in_executor(self._pool, self._backend_search_sync, req, encoding)
            return {"results": results, "elapsedMs": round(1000 * (time.perf_counter() - started), 2)}
        roots = self.pick_roots(req.root)
        if not roots:
            raise RequestFailed("no workspace folder to search: open a folder first")
        await self.wait_ready(roots)
        await self.flush_buffers(roots)
        encoding = str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16.value)
        assert self.loop is not None
        results = await self.loop.run_in_executor(self._pool, self._search_sync, roots, req, encoding)
        return {"results": results, "elapsedMs": round(1000 * (time.perf_counter() - started), 2)}

    def _search_sync(self, roots: Sequence[RootIndex], req: SearchRequest, encoding: str) -> list[dict[str, Any]]:
        found: list[tuple[RootIndex, Hit, bytes | None]] = []
        for root in roots:
            with root.lock:
                searcher = root.searcher
                if searcher is None:
                    continue
                try:
                    hits = overlay_search(searcher, root.overlay, req.query, k=req.k, mode=req.mode,
                                          languages=req.languages, paths=req.paths, kinds=req.kinds)
                except UsageError as exc:
                    raise JsonRpcInvalidParams(str(exc)) from None
                except CodesearchError as exc:
                    raise RequestFailed(str(exc)) from None
                overlaid = {f.path: f for f in root.overlay.files()} if root.overlay is not None else {}
            for hit in hits:
                buf = overlaid.get(hit.symbol.path)
                found.append((root, hit, buf.source if buf is not None else None))
        k = req.k or (roots[0].settings.k if roots else 10)
        found.sort(key=lambda t: -t[1].score)
        files: dict[Path, bytes | None] = {}
        out = []
        for root, hit, source in found[:k]:
            path = root.root / hit.symbol.path
            if source is None:
                if path not in files:
                    try:
                        files[path] = path.read_bytes()
                    except OSError:
                        files[path] = None
                source = files[path]
            out.append(hit_json(root, hit, source, encoding))
        return out

    def _backend_search_sync(self, req: SearchRequest, encoding: str) -> list[dict[str, Any]]:
        """A search in the backend: hits of every repository, each with ``repo`` and its file's URI."""
        service = self.backend_service()
        try:
            hits, _ = service.search(req.query, k=req.k, mode=req.mode, languages=req.languages, paths=req.paths,
                                     kinds=req.kinds)
            roots = {name: str(r.get("root") or "") for name, r in service.store.repositories().items()}
        except UsageError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        except CodesearchError as exc:
            raise RequestFailed(str(exc)) from None
        files: dict[Path, bytes | None] = {}
        out = []
        for hit in hits:
            repo_root = roots.get(hit.repo or "") or self._folder_named(hit.repo or "")
            path = Path(repo_root) / hit.symbol.path
            if path not in files:
                try:
                    files[path] = path.read_bytes()
                except OSError:
                    files[path] = None
            out.append(backend_hit_json(repo_root, service.uri, hit, files[path], encoding))
        return out

    def _folder_named(self, name: str) -> str:
        """A workspace folder of that name (where a repository's recorded checkout is not known)."""
        for root in self.roots.values():
            if root.root.name == name:
                return str(root.root)
        return ""

    def _backend_status(self) -> dict[str, Any]:
        if self._backend is None:
            state = "error" if self._backend_error else "starting"
            return {"state": state, "units": 0, "roots": [], "backend": self.backend_uri,
                    "message": self._backend_error or f"opening the backend {self.backend_uri}"}
        try:
            info = self._backend.status()
        except CodesearchError as exc:
            return {"state": "error", "units": 0, "roots": [], "backend": self.backend_uri, "message": str(exc)}
        return {"state": "ready", "units": info["units"], "roots": [], "backend": self.backend_uri,
                "repositories": info["units_per_repository"], "languages": info["languages"],
                "model": info["model"],
                "message": f"{info['units']} units in {info['repositories']} repositories ({self.backend_uri})"}

    def status(self) -> dict[str, Any]:
        """The state of every root (the ``codesearch.status`` result and ``codesearch/status`` params)."""
        if self.backend_uri:
            return self._backend_status()
        roots = []
        for root in self.roots.values():
            item: dict[str, Any] = {
                "root": root.uri, "state": root.state, "message": root.message, "freshness": root.freshness,
                "indexDir": str(root.index_dir), "progress": list(root.progress) if root.progress else None,
                "unsavedFiles": [f.path for f in root.overlay.files()] if root.overlay is not None else [],
            }
            searcher = root.searcher
            # A search holds the lock for milliseconds; if it is busy, the last counts do.
            if searcher is not None and root.lock.acquire(timeout=0.1):
                try:
                    info = searcher.reader.status()
                    root.counts = {"units": info["units"], "files": info["files"], "languages": info["languages"],
                                   "generation": info["generation"], "model": info["model"]}
                except Exception as exc:  # status must answer
                    item["error"] = _short(exc)
                finally:
                    root.lock.release()
            item.update(root.counts)
            roots.append(item)
        order = ["error", "starting", "indexing", "ready"]
        state = min((r["state"] for r in roots), key=order.index, default="ready" if self.initialized else "starting")
        return {"state": state, "units": sum(r.get("units", 0) for r in roots), "roots": roots,
                "message": "; ".join(r["message"] for r in roots if r["state"] != "ready") or
                f"{sum(r.get('units', 0) for r in roots)} units"}

    async def reindex(self, root_uri: str | None) -> dict[str, Any]:
        """Update the index of the addressed roots now (all files are checked)."""
        if self.backend_uri:
            from .backend_service import unsupported

            raise RequestFailed(unsupported("reindex", self.backend_uri))
        roots = self.pick_roots(root_uri)
        await self.wait_ready(roots)
        reports = []
        for root in roots:
            if root.freshness == "shared":
                raise RequestFailed(f"{root.root}: another codesearch process is writing this index")
            if root.freshness in ("watcher", "daemon"):
                assert self.loop is not None
                resp = await self.loop.run_in_executor(self._daemon_pool, functools.partial(
                    self.ask_daemon, root, {"op": "reindex", "paths": None, "wait": True}))
                reports.append({**(resp.get("report") or {}), "root": root.uri})
                self._call_soon(self._refresh_buffers, root)
                continue
            embedder = self.embedder_for(root.settings)

            def job(root: RootIndex = root, embedder: Embedder = embedder) -> dict[str, Any]:
                try:
                    return self._index(root, embedder, None, "Reindexing")
                finally:
                    self._set_state(root, "ready", self._summary(root))

            try:
                report = await asyncio.wrap_future(self._worker.submit(job))
            except IndexLocked as exc:
                raise RequestFailed(str(exc)) from None
            except CodesearchError as exc:
                raise RequestFailed(str(exc)) from None
            reports.append({**report, "root": root.uri})
            self._call_soon(self._refresh_buffers, root)
        return {"roots": reports}

    async def change_configuration(self, raw: Any) -> None:
        """Apply new options: reopen roots whose index settings changed; others just take k/mode."""
        options, problems = parse_options(raw, self.options)
        for p in problems:
            self._log(f"codesearch: {p}", types.MessageType.Warning)
        self.options = options
        backend = self._configured_backend()
        if backend != self.backend_uri:
            self.close_backend()
            self.backend_uri, self._backend_error = backend, None
            if self._started and backend:
                self._worker.submit(self._open_backend)
            elif self._started:
                for root in self.roots.values():
                    self._start_root(root)
        for root in list(self.roots.values()):
            try:
                settings = options.settings_for(root.root)
            except CodesearchError as exc:
                self._log(f"codesearch: {exc}", types.MessageType.Warning)
                continue
            index_fields = ("model", "index_dir", "ignore", "max_length", "doc_text_format", "max_file_bytes",
                            "threads", "runtime")
            if any(getattr(settings, f) != getattr(root.settings, f) for f in index_fields):
                uri = root.uri
                self.remove_root(uri)
                new = self.add_root(uri)
                if new is not None:
                    new.settings = settings
            else:
                root.settings = settings
                with root.lock:
                    if root.searcher is not None:
                        root.searcher.settings = settings


def _build_encoder(embedder: Embedder, settings: Settings) -> Embedder:
    """The encoder for a full index run: document batches on every core (the daemon's ParallelEmbedder)."""
    from .updater import ParallelEmbedder

    intra = settings.threads or 1
    return ParallelEmbedder(embedder, max(1, (settings.threads or cpu_threads()) // intra))


def _version() -> str:
    try:
        return metadata.version("codesearch")
    except metadata.PackageNotFoundError:
        return "0"


def _index_dir_pattern(root: RootIndex) -> tuple[str, ...]:
    try:
        return (f"/{root.index_dir.relative_to(root.root).as_posix()}/",)
    except ValueError:
        return ()


def create_server() -> CodesearchServer:
    """Build the server with every handler registered."""
    server = CodesearchServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: CodesearchServer, params: types.InitializeParams) -> None:
        ls.on_initialize(params)

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodesearchServer, params: types.InitializedParams) -> None:
        ls.start()

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CodesearchServer, params: None) -> None:
        await ls.on_shutdown()

    @server.feature(types.EXIT)
    def exit_(ls: CodesearchServer, params: None) -> None:
        ls.on_exit()

    @server.feature(SEARCH_METHOD)
    async def search(ls: CodesearchServer, params: Any) -> dict[str, Any]:
        return await ls.search(SearchRequest.from_json(params))

    @server.command(CMD_SEARCH)
    async def cmd_search(ls: CodesearchServer, *args: Any) -> dict[str, Any]:
        return await ls.search(command_request([_plain(a) for a in args]))

    @server.command(CMD_STATUS)
    async def cmd_status(ls: CodesearchServer, *args: Any) -> dict[str, Any]:
        await ls.flush_buffers(ls.pick_roots(None))  # buffer changes already sent count in unsavedFiles
        return ls.status()

    @server.command(CMD_REINDEX)
    async def cmd_reindex(ls: CodesearchServer, *args: Any) -> dict[str, Any]:
        arg = _plain(args[0]) if args else None
        root = arg.get("root") if isinstance(arg, dict) else arg if isinstance(arg, str) else None
        return await ls.reindex(root)

    @server.feature(types.WORKSPACE_SYMBOL)
    async def workspace_symbol(ls: CodesearchServer,
                               params: types.WorkspaceSymbolParams) -> list[types.SymbolInformation]:
        text = params.query.strip()
        if not text:
            return []
        try:
            found = await ls.search(SearchRequest(query=text))
        except JsonRpcInvalidParams:
            return []  # a half-typed filter such as "lang:g"
        out = []
        for r in found["results"]:
            start, end = r["range"]["start"], r["range"]["end"]
            container = r["qualifiedName"].rpartition(".")[0] or r["path"]
            out.append(types.SymbolInformation(
                name=r["name"], kind=_SYMBOL_KINDS.get(r["kind"], types.SymbolKind.Function),
                location=types.Location(uri=r["uri"], range=types.Range(
                    start=types.Position(line=start["line"], character=start["character"]),
                    end=types.Position(line=end["line"], character=end["character"]))),
                container_name=container))
        return out

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodesearchServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule_buffer(params.text_document.uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodesearchServer, params: types.DidChangeTextDocumentParams) -> None:
        found = ls.root_for(params.text_document.uri)
        delay = found[0].settings.debounce_ms / 1000 if found is not None else 0.3
        ls.schedule_buffer(params.text_document.uri, delay)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: CodesearchServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.on_saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodesearchServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.schedule_buffer(params.text_document.uri, 0.0)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CodesearchServer, params: types.DidChangeConfigurationParams) -> None:
        await ls.change_configuration(params.settings)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: CodesearchServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        for f in params.event.removed:
            ls.remove_root(f.uri)
        for f in params.event.added:
            ls.add_root(f.uri)

    return server


def serve(log_file: str | None = None, verbose: bool = False) -> None:
    """Run the server on stdin/stdout until the client sends ``exit`` or closes the pipe.

    Args:
        log_file: Also append the log to this file.
        verbose: Log debug messages (pygls' own included).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s codesearch-lsp %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("pygls").setLevel(logging.WARNING)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Stray prints must not corrupt the protocol stream.
    sys.stdout = sys.stderr
    create_server().start_io(stdin, stdout)
