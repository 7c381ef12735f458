"""The watch daemon: a :class:`~codesearch.service.Service` behind a Unix socket.

``codesearch watch`` runs one per repository (in the foreground, or detached; ``codesearch query``
and ``codesearch mcp`` start one by themselves, see :func:`codesearch.client.ensure_daemon`). The
service keeps the index fresh and answers queries from a warm process; this module adds the front
door: a socket server (one thread per connection) speaking the newline-delimited JSON protocol
described in :mod:`codesearch.client`, the pid file, signal handling, and the idle time-out of a
daemon that was started automatically (``Settings.daemon_idle_seconds``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import client
from .config import Settings
from .embed import Embedder
from .errors import UsageError
from .pending import PendingPaths
from .service import Service

log = logging.getLogger(__name__)

__all__ = ["Daemon", "PendingPaths"]


class Daemon:
    """Watches ``root``, keeps its index fresh, and serves queries on a Unix socket.

    Use :meth:`run` for a blocking daemon (signals handled), or :meth:`start` ... :meth:`close`
    to run one inside another process (tests, the LSP server).

    Args:
        root: Repository root.
        settings: Settings (index_dir, model, ignores, debounce_ms, debounce_max_ms, threads, ...).
        embedder: Encoder to use; None loads the configured model once at start.
        idle_seconds: Exit after this long without a request or an update (0: never; :meth:`run` only).
    """

    def __init__(self, root: Path, settings: Settings, embedder: Embedder | None = None,
                 idle_seconds: float = 0) -> None:
        self.service = Service(root, settings, embedder)
        self.root = self.service.root
        self.settings = settings
        self.index_dir = self.service.index_dir
        self.pending = self.service.pending
        self.socket_path = client.socket_path(self.index_dir)
        self.pid_path = client.pid_path(self.index_dir)
        self.idle_seconds = idle_seconds
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._socket_ino: int | None = None
        self._serve_thread: threading.Thread | None = None
        self._signalled = False
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        self._started = False
        self._owns_files = False
        #: Called once the daemon listens and watches (the CLI prints a line).
        self.on_ready: Callable[[], None] | None = None
        #: Why :meth:`run` returned ("signal", "stop", "idle", "error").
        self.exit_reason = ""

    @property
    def embedder(self) -> Embedder | None:
        """The service's encoder (a parallel wrapper around the configured one)."""
        return self.service.embedder

    @property
    def fatal(self) -> BaseException | None:
        """What stopped the writer, if it failed."""
        return self.service.fatal

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
        self.service.start()
        try:
            self._owns_files = True
            self._remove_own_files(force=True)  # left by a daemon that crashed: we hold the lock, so it is gone
            self._listen()
            self._write_pid_file()
            self._serve_thread = threading.Thread(target=self._serve, name="codesearch-socket", daemon=True)
            self._serve_thread.start()
            self.service.start_threads()
        except BaseException:
            self.close()
            raise
        log.info("watching %s (index %s, socket %s)", self.root, self.index_dir, self.socket_path)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, a ``stop`` request or the idle time-out, then shut down cleanly.

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
            while not self._signalled and not self.service.stopping:
                time.sleep(0.2)
                if self.idle_seconds and self.service.idle_for() >= self.idle_seconds:
                    log.info("no request or change for %.0fs; exiting (daemon_idle_seconds)", self.idle_seconds)
                    self.exit_reason = "idle"
                    break
            if not self.exit_reason:
                self.exit_reason = "signal" if self._signalled else "error" if self.fatal else "stop"
        finally:
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.fatal is not None else 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signalled = True  # only a flag: the main loop polls it
        self.service.request_stop()

    def request_stop(self) -> None:
        """Ask the daemon to stop (thread-safe, returns at once)."""
        self.service.request_stop()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`close` has finished."""
        return self._closed.wait(timeout)

    def close(self) -> None:
        """Shut down: stop listening and remove the socket and pid file, stop watching, abandon the
        current update (its committed state stays), release the writer lock. Idempotent."""
        with self._close_lock:
            if self._closed.is_set():
                return
            self.service.request_stop()
            if self._server is not None:
                with contextlib.suppress(Exception):
                    self._server.shutdown()
                self._server.server_close()
            if self._owns_files:
                self._remove_own_files()
            self.service.close()
            self._closed.set()
            log.info("stopped watching %s", self.root)

    # -- the service's API, for callers in this process --------------------------------------------------

    def handle_request(self, req: Any) -> dict[str, Any]:
        """Answer one protocol request (see :mod:`codesearch.client`); never raises."""
        if isinstance(req, dict) and req.get("op") == "stop":
            return {"ok": True, "pid": os.getpid()}
        return self.service.handle_request(req)

    def status(self) -> dict[str, Any]:
        """The service's status."""
        return self.service.status()

    def wait_ticket(self, ticket: int, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait until the batch answering request ``ticket`` is done; its report (None if stopped)."""
        assert self.service.updater is not None
        return self.service.updater.wait_ticket(ticket, timeout)

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
                "socket": str(self.socket_path), "started_at": time.time(), "version": client.build_id()}
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
                self.exit_reason = "stop"
                self.request_stop()
                threading.Thread(target=self.close, name="codesearch-close", daemon=True).start()
                return

