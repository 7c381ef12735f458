"""``codesearch mcp``: a Model Context Protocol server over stdio (official ``mcp`` SDK, low-level server).

A thin front door over the service core (:mod:`codesearch.service`): each served root's requests go
to that repository's watch daemon over its socket (:mod:`codesearch.client`), which this server
starts in the background when none runs (``Settings.auto_daemon``); with ``auto_daemon`` off, the
service runs inside this process instead. This process itself imports neither torch nor faiss.

Tools (schemas in :data:`TOOLS`, documented with an example exchange in docs/mcp.md):
``search_code``, ``get_code``, ``find_similar``, ``index_status``, ``reindex``. Every answer names
the index generation it read and whether changes are still pending. Paths are relative to a served
root (the client's MCP roots when it sends them, else the directory the server started in) or
absolute inside one; anything else, ``..`` and symbolic links that leave a root included, is refused.
Malformed arguments get a JSON-RPC ``invalid params`` error; a failure to answer (no index yet, a
unit that changed) is a tool result with ``isError`` and a one-line message.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import client
from .config import Settings, load_settings
from .errors import CodesearchError, UsageError

log = logging.getLogger(__name__)

#: Code lines per result that ``search_code`` and ``find_similar`` include unless told otherwise.
DEFAULT_CODE_LINES = 12
#: Default number of results.
DEFAULT_K = 8
#: Longest wait for a daemon that is loading (seconds).
DAEMON_WAIT = 300.0

_LANGS = ["python", "java", "javascript", "go", "php", "ruby"]
_KINDS = ["function", "method", "constructor", "class"]
#: parsers.roles.ROLES (not imported: it would load tree-sitter into the MCP server; a test keeps them equal).
_ROLES = ["implementation", "test", "benchmark", "example", "generated"]

_FILTERS: dict[str, Any] = {
    "languages": {"type": "array", "items": {"type": "string", "enum": _LANGS}, "title": "Languages",
                  "description": "Only units in these languages (empty: all)."},
    "paths": {"type": "array", "items": {"type": "string"}, "title": "Paths",
              "description": "Only units under these path prefixes or globs, relative to the root "
                             "(e.g. \"src/net/\", \"*_test.go\"; empty: all)."},
    "kinds": {"type": "array", "items": {"type": "string", "enum": _KINDS}, "title": "Kinds",
              "description": "Only these kinds of unit (empty: all)."},
}
_K = {"type": "integer", "minimum": 1, "maximum": 100, "default": DEFAULT_K, "title": "Results",
      "description": f"How many results (default {DEFAULT_K})."}
_CODE_LINES = {"type": "integer", "minimum": 0, "maximum": 400, "default": DEFAULT_CODE_LINES,
               "title": "Code lines per result",
               "description": f"Lines of each result's code to include (default {DEFAULT_CODE_LINES}; 0: none). "
                              "Use get_code for the whole unit."}
_PATH = {"type": "string", "minLength": 1, "title": "File path",
         "description": "A file path relative to the repository root (or absolute inside it)."}
_LINE = {"type": "integer", "minimum": 1, "title": "Line", "description": "A 1-based line inside the unit."}
_ID = {"type": "integer", "minimum": 0, "title": "Unit id", "description": "The id a search result returned."}

_FRESHNESS: dict[str, Any] = {
    "type": "object", "title": "Index freshness",
    "properties": {
        "root": {"type": "string", "description": "The repository root."},
        "generation": {"type": "integer", "description": "The index generation this answer read."},
        "pending": {"type": "integer", "description": "Changes seen on disk but not yet in the index (0: up to date)."},
        "state": {"type": "string", "description": "The index service: starting, indexing, idle, in-process."},
        "updated_at": {"type": "number", "description": "When the index last changed (Unix time; 0: unknown)."},
    },
    "required": ["root", "generation", "pending", "state", "updated_at"],
}
_RESULT: dict[str, Any] = {
    "type": "object", "title": "Code unit",
    "properties": {
        "id": {"type": "integer",
               "description": "Unit id for get_code and find_similar (valid until its file changes)."},
        "root": {"type": "string", "description": "The repository root the path is relative to."},
        "path": {"type": "string"}, "start_line": {"type": "integer"}, "end_line": {"type": "integer"},
        "name": {"type": "string"}, "qualified_name": {"type": "string"},
        "kind": {"type": "string", "enum": _KINDS}, "language": {"type": "string", "enum": _LANGS},
        "role": {"type": "string", "enum": _ROLES,
                 "description": "What the unit is for: implementation, test, benchmark, example or generated code."},
        "signature": {"type": "string"}, "summary": {"type": "string", "description": "First sentence(s) of its doc."},
        "score": {"type": "number", "description": "Ranking score (higher is better)."},
        "code": {"type": "string", "description": "The first code lines of the unit."},
        "code_truncated": {"type": "boolean", "description": "Whether code was cut to the line budget."},
    },
    "required": ["id", "root", "path", "start_line", "end_line", "name", "qualified_name", "kind", "language",
                 "role", "signature", "summary", "score"],
}
_HITS_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {"results": {"type": "array", "items": _RESULT, "title": "Results, best first"},
                   "indexes": {"type": "array", "items": _FRESHNESS, "title": "Freshness of each index read"}},
    "required": ["results", "indexes"],
}

TOOLS: dict[str, dict[str, Any]] = {
    "search_code": {
        "title": "Search code by meaning",
        "description": (
            "Find the functions, methods and classes of this repository that do what a plain-language "
            "description says (\"parse a cookie header\", \"retry with exponential backoff\"), ranked by a "
            "code-search model fused with keyword matching. Returns locations (path, lines), names, "
            "signatures, doc summaries and the first lines of each unit's code. The query may carry filters: "
            "lang:go path:src/ kind:method \"exact phrase\"."),
        "input": {"type": "object", "properties": {
            "query": {"type": "string", "minLength": 1, "title": "Query",
                      "description": "What the code does, in plain words; optional filters inline."},
            "k": _K, **_FILTERS,
            "mode": {"type": "string", "enum": ["hybrid", "semantic", "lexical"], "default": "hybrid",
                     "title": "Ranking", "description": "hybrid (default), semantic (meaning only) or lexical."},
            "code_lines": _CODE_LINES}, "required": ["query"], "additionalProperties": False},
        "output": _HITS_OUT,
        "read_only": True,
    },
    "get_code": {
        "title": "Read a code unit",
        "description": "The full source of one indexed unit: by the id a search returned, or by a file path "
                       "and a line inside the unit (the innermost unit there).",
        "input": {"type": "object", "properties": {
            "id": _ID, "path": _PATH, "line": _LINE,
            "max_bytes": {"type": "integer", "minimum": 100, "maximum": 1000000, "default": 60000,
                          "title": "Most bytes", "description": "Cut the code after this many bytes (default 60000)."}},
            "additionalProperties": False},
        "output": {"type": "object", "properties": {
            "unit": {**_RESULT, "properties": {**_RESULT["properties"],
                                               "docstring": {"type": "string"}, "truncated": {"type": "boolean"}},
                     "required": [r for r in _RESULT["required"] if r != "score"] + ["code", "truncated"]},
            "indexes": {"type": "array", "items": _FRESHNESS}}, "required": ["unit", "indexes"]},
        "read_only": True,
    },
    "find_similar": {
        "title": "Find similar code",
        "description": "Units whose code is most like a given unit (by id, or path and line) or like a code "
                       "snippet: duplicates, other implementations of the same idea, code to reuse.",
        "input": {"type": "object", "properties": {
            "id": _ID, "path": _PATH, "line": _LINE,
            "code": {"type": "string", "minLength": 1, "title": "Code snippet",
                     "description": "Code to find look-alikes of (instead of a unit)."},
            "k": _K, **_FILTERS, "code_lines": _CODE_LINES}, "additionalProperties": False},
        "output": _HITS_OUT,
        "read_only": True,
    },
    "index_status": {
        "title": "Index status",
        "description": "What is indexed: units per language, the model, the last update, pending changes, and "
                       "the files that were not indexed and why.",
        "input": {"type": "object", "properties": {}, "additionalProperties": False},
        "output": {"type": "object", "properties": {"indexes": {"type": "array", "items": {
            "type": "object", "properties": {
                **_FRESHNESS["properties"],
                "units": {"type": "integer"},
                "languages": {"type": "object", "additionalProperties": {"type": "integer"}},
                "files": {"type": "object", "additionalProperties": {"type": "integer"},
                          "description": "Files per status (indexed, binary, too_large, ...)."},
                "model": {"type": "string"},
                "not_indexed": {"type": "array", "items": {"type": "object", "properties": {
                    "path": {"type": "string"}, "status": {"type": "string"}, "error": {"type": "string"}},
                    "required": ["path", "status", "error"]}},
                "last_update": {"type": "object", "description": "The last update: when, files, units embedded."}},
            "required": [*_FRESHNESS["required"], "units", "languages", "files", "model", "not_indexed"]}}},
            "required": ["indexes"]},
        "read_only": True,
    },
    "reindex": {
        "title": "Update the index",
        "description": "Bring the index up to date with the files on disk now (all of them, or the given paths) "
                       "and return when the update is searchable. The index also follows file changes by itself.",
        "input": {"type": "object", "properties": {
            "paths": {"type": "array", "items": {"type": "string"}, "title": "Paths",
                      "description": "Files or directories to re-check (empty: the whole repository)."}},
            "additionalProperties": False},
        "output": {"type": "object", "properties": {
            "updated": {"type": "array", "items": {"type": "object", "properties": {
                "root": {"type": "string"}, "files_changed": {"type": "integer"},
                "files_deleted": {"type": "integer"}, "embedded": {"type": "integer"},
                "seconds": {"type": "number"}}, "required": ["root", "files_changed", "files_deleted",
                                                            "embedded", "seconds"]}},
            "indexes": {"type": "array", "items": _FRESHNESS}}, "required": ["updated", "indexes"]},
        "read_only": False,
    },
}


class ToolFailed(Exception):
    """A well-formed call that could not be answered (a tool result with ``isError``)."""


class BadArguments(Exception):
    """Arguments that do not fit the tool's schema or refer outside the served roots (invalid params)."""


@dataclass
class _Root:
    path: Path          # the served directory (resolved)
    repo: Path          # the repository root whose index serves it
    settings: Settings


class RootService:
    """One repository's service as this server reaches it: its daemon's socket, or an in-process daemon.

    Args:
        repo: Repository root.
        settings: Its settings.
    """

    def __init__(self, repo: Path, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self.index_dir = client.index_dir_for(repo, settings.index_dir)
        self._lock = threading.Lock()
        self._client: client.DaemonClient | None = None
        self._local: Any = None  # an in-process codesearch.daemon.Daemon (auto_daemon off)
        self._children: list[int] = []  # daemons this process started (reaped once they exit)

    def _connect(self) -> client.DaemonClient | None:
        c = client.connect(self.index_dir, timeout=None)
        if c is None:
            return None
        try:
            same = c.request({"op": "ping"}, timeout=10.0).get("version") == client.build_id()
        except (client.DaemonUnavailable, CodesearchError):
            same = False
        if not same:
            c.close()
            return None
        return c

    def _ensure(self) -> None:
        if self._client is not None or self._local is not None:
            return
        self._client = self._connect()
        if self._client is not None:
            return
        if not self.settings.auto_daemon:
            from .daemon import Daemon

            daemon = Daemon(self.repo, self.settings)
            daemon.start()
            self._local = daemon
            return
        state, pid = client.ensure_daemon(self.repo, self.index_dir, self.settings.daemon_idle_seconds)
        if state == "skipped" and not (self.index_dir / client.SOCKET_NAME).exists() \
                and client.writer_lock_free(self.index_dir):
            # No index yet: the daemon's start-up pass builds it.
            pid = client.spawn_daemon(self.repo, self.index_dir, idle_seconds=self.settings.daemon_idle_seconds)
        deadline = time.monotonic() + DAEMON_WAIT
        if pid is not None:
            self._children.append(pid)
            try:
                client.wait_for_daemon(self.index_dir, pid, DAEMON_WAIT)
            except CodesearchError as exc:
                raise ToolFailed(str(exc)) from None
        while time.monotonic() < deadline:
            self._client = self._connect()
            if self._client is not None:
                return
            time.sleep(0.1)
        raise ToolFailed(f"the codesearch daemon of {self.repo} did not answer within {DAEMON_WAIT:.0f}s; "
                         f"see {self.index_dir / client.LOG_NAME}")

    def _reap(self) -> None:
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done == pid:
                self._children.remove(pid)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one protocol request; a daemon that went away (idle exit, crash) is started again once."""
        with self._lock:
            self._reap()
            for attempt in (1, 2):
                self._ensure()
                if self._local is not None:
                    resp = self._local.handle_request(req)
                    break
                assert self._client is not None
                try:
                    resp = self._client.request(req, timeout=None)
                    break
                except client.DaemonUnavailable:
                    self._client.close()
                    self._client = None
                    if attempt == 2:
                        raise ToolFailed(f"the codesearch daemon of {self.repo} went away") from None
                except CodesearchError as exc:
                    resp = {"error": str(exc)}
                    break
        if "error" in resp:
            if resp.get("type") == "UsageError":
                raise BadArguments(str(resp["error"]))
            raise ToolFailed(str(resp["error"]))
        return resp

    def close(self) -> None:
        """Close the connection (the daemon keeps running) or stop the in-process daemon."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._local is not None:
                self._local.close()
                self._local = None


def _freshness(root: _Root, resp: dict[str, Any]) -> dict[str, Any]:
    return {"root": str(root.repo), "generation": int(resp.get("generation") or 0),
            "pending": int(resp.get("pending") or 0), "state": str(resp.get("state") or "idle"),
            "updated_at": float(resp.get("updated_at") or 0.0)}


def _cut(code: str, lines: int) -> tuple[str, bool]:
    parts = code.splitlines()
    return "\n".join(parts[:lines]), len(parts) > lines


class CodeSearchTools:
    """The tools' logic, independent of the transport (called from the MCP handlers).

    Args:
        roots: The directories served (resolved); the first also decides relative paths.
    """

    def __init__(self, roots: list[Path]) -> None:
        self._roots: list[_Root] = []
        self._services: dict[Path, RootService] = {}
        self.set_roots(roots)

    def set_roots(self, roots: list[Path]) -> None:
        """Serve these directories (each maps to the nearest indexed repository at or above it, else itself)."""
        served: list[_Root] = []
        for path in roots:
            path = path.resolve()
            repo = client.find_repo(path) or path
            served.append(_Root(path, repo, load_settings(repo)))
        self._roots = served

    @property
    def roots(self) -> list[Path]:
        """The served directories."""
        return [r.path for r in self._roots]

    def _service(self, root: _Root) -> RootService:
        svc = self._services.get(root.repo)
        if svc is None:
            svc = self._services[root.repo] = RootService(root.repo, root.settings)
        return svc

    def close(self) -> None:
        """Close every connection."""
        for svc in self._services.values():
            svc.close()
        self._services.clear()

    # -- paths ------------------------------------------------------------------------------------------

    def locate(self, path: str) -> tuple[_Root, str]:
        """The served root holding ``path`` and the path relative to its repository.

        Raises:
            BadArguments: the path (after resolving ``..`` and symbolic links) is in no served root.
        """
        if "\0" in path:
            raise BadArguments("a path may not contain NUL")
        for root in self._roots:
            full = Path(path) if os.path.isabs(path) else root.path / path
            real = Path(os.path.realpath(full))
            try:
                real.relative_to(root.path)
            except ValueError:
                continue
            return root, real.relative_to(root.repo).as_posix()
        served = ", ".join(str(r.path) for r in self._roots)
        raise BadArguments(f"path is outside the served roots ({served}): {path}")

    def _filter_paths(self, root: _Root, paths: list[str]) -> list[str]:
        """Path filters for one root: relative to its repository; globs pass through unchanged."""
        out = []
        for p in paths:
            if any(ch in p for ch in "*?[") and not os.path.isabs(p):
                out.append(p)
                continue
            _, rel = self.locate(p)
            out.append(rel + ("/" if p.endswith("/") and rel else ""))
        return out

    # -- tools ------------------------------------------------------------------------------------------

    def _hits(self, root: _Root, resp: dict[str, Any], code_lines: int) -> list[dict[str, Any]]:
        out = []
        for r in resp["results"]:
            row = {key: r[key] for key in ("id", "path", "start_line", "end_line", "name", "qualified_name", "kind",
                                          "language", "role", "signature", "summary", "score") if key in r}
            row["root"] = str(root.repo)
            out.append(row)
        if code_lines:
            for row in out:
                unit = self._service(root).request({"op": "get", "id": row["id"]})["unit"]
                row["code"], row["code_truncated"] = _cut(unit["code"], code_lines)
        return out

    def search_code(self, query: str, k: int = DEFAULT_K, languages: list[str] | None = None,
                    paths: list[str] | None = None, kinds: list[str] | None = None, mode: str = "hybrid",
                    code_lines: int = DEFAULT_CODE_LINES) -> dict[str, Any]:
        """The ``search_code`` tool."""
        results: list[dict[str, Any]] = []
        indexes = []
        for root in self._roots:
            resp = self._service(root).request({
                "op": "search", "query": query, "k": k, "mode": mode, "languages": languages or [],
                "paths": self._filter_paths(root, paths or []), "kinds": kinds or []})
            results += self._hits(root, resp, code_lines)
            indexes.append(_freshness(root, resp))
        if len(self._roots) > 1:
            results.sort(key=lambda r: -r["score"])
            results = results[:k]
        return {"results": results, "indexes": indexes}

    def get_code(self, id: int | None = None, path: str | None = None, line: int | None = None,
                 max_bytes: int = 60000) -> dict[str, Any]:
        """The ``get_code`` tool."""
        if id is None and (path is None or line is None):
            raise BadArguments("give an id, or a path and a line")
        if path is not None:
            root, rel = self.locate(path)
            req: dict[str, Any] = {"op": "get", "path": rel, "line": line, "max_bytes": max_bytes}
            if id is not None:
                req = {"op": "get", "id": id, "max_bytes": max_bytes}
            resp = self._service(root).request(req)
        else:
            resp, root = self._by_id({"op": "get", "id": id, "max_bytes": max_bytes})
        unit = dict(resp["unit"], root=str(root.repo))
        return {"unit": unit, "indexes": [_freshness(root, resp)]}

    def _by_id(self, req: dict[str, Any]) -> tuple[dict[str, Any], _Root]:
        """Ask each root for a unit id (ids are per index; the first that has it answers)."""
        last: Exception | None = None
        for root in self._roots:
            try:
                return self._service(root).request(req), root
            except ToolFailed as exc:
                last = exc
        raise ToolFailed(str(last) if last else "no served root")

    def find_similar(self, id: int | None = None, path: str | None = None, line: int | None = None,
                     code: str | None = None, k: int = DEFAULT_K, languages: list[str] | None = None,
                     paths: list[str] | None = None, kinds: list[str] | None = None,
                     code_lines: int = DEFAULT_CODE_LINES) -> dict[str, Any]:
        """The ``find_similar`` tool."""
        given = sum(x is not None for x in (id, code)) + (path is not None)
        if given != 1 or (path is not None and line is None):
            raise BadArguments("give exactly one of: id, path and line, or code")
        base = {"op": "similar", "k": k, "languages": languages or [], "kinds": kinds or []}
        if code is not None:
            results: list[dict[str, Any]] = []
            indexes = []
            for root in self._roots:
                resp = self._service(root).request({**base, "code": code,
                                                    "paths": self._filter_paths(root, paths or [])})
                results += self._hits(root, resp, code_lines)
                indexes.append(_freshness(root, resp))
            results.sort(key=lambda r: -r["score"])
            return {"results": results[:k], "indexes": indexes}
        if path is not None:
            root, rel = self.locate(path)
            resp = self._service(root).request({**base, "path": rel, "line": line,
                                                "paths": self._filter_paths(root, paths or [])})
        else:
            resp, root = self._by_id({**base, "id": id, "paths": paths or []})
        return {"results": self._hits(root, resp, code_lines), "indexes": [_freshness(root, resp)]}

    def index_status(self) -> dict[str, Any]:
        """The ``index_status`` tool."""
        out = []
        for root in self._roots:
            st = self._service(root).request({"op": "status"})
            row = _freshness(root, {**st, "pending": int(st.get("queue") or 0)
                                    + (1 if st.get("state") == "indexing" else 0)})
            row.update(units=int(st.get("units") or 0), languages=st.get("languages") or {},
                       files=st.get("files") or {}, model=str(st.get("model") or ""),
                       not_indexed=[{"path": f["path"], "status": f["status"], "error": f.get("error") or ""}
                                    for f in st.get("not_indexed") or []])
            if st.get("last_update"):
                last = st["last_update"]
                row["last_update"] = {key: last.get(key) for key in
                                      ("at", "full", "files_changed", "files_deleted", "embedded", "seconds")}
            out.append(row)
        return {"indexes": out}

    def reindex(self, paths: list[str] | None = None) -> dict[str, Any]:
        """The ``reindex`` tool."""
        by_root: dict[Path, tuple[_Root, list[str] | None]] = {}
        if paths:
            for p in paths:
                root, rel = self.locate(p)
                entry = by_root.setdefault(root.repo, (root, []))
                assert entry[1] is not None
                entry[1].append(rel or ".")
        else:
            by_root = {r.repo: (r, None) for r in self._roots}
        updated, indexes = [], []
        for root, rels in by_root.values():
            resp = self._service(root).request({"op": "reindex", "paths": rels, "wait": True})
            rep = resp.get("report") or {}
            updated.append({"root": str(root.repo), "files_changed": int(rep.get("files_changed") or 0),
                            "files_deleted": int(rep.get("files_deleted") or 0),
                            "embedded": int(rep.get("embedded") or 0), "seconds": float(rep.get("seconds") or 0.0)})
            indexes.append(_freshness(root, resp))
        return {"updated": updated, "indexes": indexes}


# ---------------------------------------------------------------------------------------------------------
# Serving a backend (``codesearch mcp --backend URI``)


def _backend_specs() -> dict[str, dict[str, Any]]:
    """The tools as a backend serves them: hits carry ``repo``, units are named by repository; no reindex."""
    specs = copy.deepcopy({k: v for k, v in TOOLS.items() if k in BACKEND_TOOL_NAMES})
    repo = {"type": "string", "minLength": 1, "title": "Repository",
            "description": "The repository a path is in (a name from search results or index_status)."}
    repos = {"type": "array", "items": {"type": "string"}, "title": "Repositories",
             "description": "Only units of these repositories (empty: all); also repo:NAME in the query."}
    result_props = {"repo": {"type": "string", "description": "The repository the unit is in."},
                    "root": {"type": "string", "description": "The backend the unit was found in."}}
    for name in ("search_code", "find_similar"):
        specs[name]["input"]["properties"]["repos"] = repos
        out = specs[name]["output"]["properties"]["results"]["items"]
        out["properties"].update(result_props)
        out["required"] = list(dict.fromkeys([*out["required"], "repo"]))  # the two tools share this schema
    unit = specs["get_code"]["output"]["properties"]["unit"]
    unit["properties"].update(result_props)
    unit["required"] = [*unit["required"], "repo"]
    for name in ("get_code", "find_similar"):
        specs[name]["input"]["properties"]["repo"] = repo
        specs[name]["input"]["properties"]["path"] = {
            **_PATH, "description": "A file path relative to its repository's root (with repo when several "
                                    "repositories hold that path)."}
    specs["search_code"]["description"] = (
        "Find the functions, methods and classes, across every repository of this organisation-wide index, "
        "that do what a plain-language description says (\"parse a cookie header\", \"retry with exponential "
        "backoff\"). Each result names its repository (repo). The query may carry filters: repo:NAME lang:go "
        "path:src/ kind:method \"exact phrase\".")
    for spec in specs.values():
        fresh = spec["output"]["properties"]["indexes"]["items"]["properties"]
        fresh["root"] = {"type": "string", "description": "The backend."}
        fresh["state"] = {"type": "string", "description": "backend: an index built by batch jobs (no pending "
                                                           "changes are tracked; updated_at is the last job)."}
    status_item = specs["index_status"]["output"]["properties"]["indexes"]["items"]
    status_item["properties"]["repositories"] = {"type": "object", "additionalProperties": {"type": "integer"},
                                                 "description": "Units per repository."}
    status_item["required"] = [*status_item["required"], "repositories"]
    specs["index_status"]["description"] = ("What the backend holds: units per repository and language, the "
                                            "model, and when its batch job last ran.")
    return specs


#: The tools a backend serves (``reindex`` is refused: the batch job updates a backend).
BACKEND_TOOL_NAMES = ("search_code", "get_code", "find_similar", "index_status")


class BackendTools:
    """The tools' logic over a backend built by ``codesearch index --backend`` (docs/scale.md).

    Everything goes through :class:`~codesearch.backend_service.BackendService` in this process (a
    Milvus Lite file serves one process; no daemon), so this server loads the query encoder. Results
    carry ``repo``; paths are relative to their repository; nothing is read from a checkout.

    Args:
        uri: The backend.
        settings: Ranking settings (the model must be the backend's).
    """

    def __init__(self, uri: str, settings: Settings) -> None:
        self.uri = uri
        self.settings = settings
        self.specs = _backend_specs()
        self._service: Any = None
        self._lock = threading.Lock()

    @property
    def service(self) -> Any:
        """The open backend (opened on the first call, so a missing backend is a tool error, not a crash)."""
        with self._lock:
            if self._service is None:
                from .backend_service import BackendService

                self._service = BackendService(self.uri, self.settings)
            return self._service

    def unsupported(self, name: str) -> str:
        """Why a tool of the local server is not offered here."""
        from .backend_service import unsupported

        return unsupported(name, self.uri)

    def set_roots(self, roots: list[Path]) -> None:
        """A backend serves its own repositories, whatever the client's roots."""

    def close(self) -> None:
        """Close the backend."""
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None

    def _request(self, req: dict[str, Any]) -> dict[str, Any]:
        resp: dict[str, Any] = self.service.handle_request(req)
        if "error" in resp:
            if resp.get("type") == "UsageError":
                raise BadArguments(str(resp["error"]))
            raise ToolFailed(str(resp["error"]))
        return resp

    def _freshness(self, resp: dict[str, Any]) -> dict[str, Any]:
        return {"root": self.uri, "generation": 0, "pending": 0, "state": "backend",
                "updated_at": float(resp.get("updated_at") or 0.0)}

    def _hits(self, resp: dict[str, Any], code_lines: int) -> list[dict[str, Any]]:
        out = []
        for r in resp["results"]:
            row = {key: r[key] for key in ("id", "repo", "path", "start_line", "end_line", "name", "qualified_name",
                                          "kind", "language", "role", "signature", "summary", "score") if key in r}
            row["root"] = self.uri
            if code_lines:
                unit = self._request({"op": "get", "id": row["id"]})["unit"]
                row["code"], row["code_truncated"] = _cut(unit["code"], code_lines)
            out.append(row)
        return out

    def search_code(self, query: str, k: int = DEFAULT_K, languages: list[str] | None = None,
                    paths: list[str] | None = None, kinds: list[str] | None = None, mode: str = "hybrid",
                    code_lines: int = DEFAULT_CODE_LINES, repos: list[str] | None = None) -> dict[str, Any]:
        """The ``search_code`` tool over the backend."""
        resp = self._request({"op": "search", "query": query, "k": k, "mode": mode, "languages": languages or [],
                              "paths": paths or [], "kinds": kinds or [], "repos": repos or []})
        return {"results": self._hits(resp, code_lines), "indexes": [self._freshness(resp)]}

    def get_code(self, id: int | None = None, path: str | None = None, line: int | None = None,
                 repo: str | None = None, max_bytes: int = 60000) -> dict[str, Any]:
        """The ``get_code`` tool over the backend."""
        if id is None and (path is None or line is None):
            raise BadArguments("give an id, or a path and a line (and repo)")
        req: dict[str, Any] = {"op": "get", "max_bytes": max_bytes}
        req.update({"id": id} if id is not None else {"path": path, "line": line, "repo": repo})
        resp = self._request(req)
        return {"unit": dict(resp["unit"], root=self.uri), "indexes": [self._freshness(resp)]}

    def find_similar(self, id: int | None = None, path: str | None = None, line: int | None = None,
                     code: str | None = None, k: int = DEFAULT_K, languages: list[str] | None = None,
                     paths: list[str] | None = None, kinds: list[str] | None = None,
                     code_lines: int = DEFAULT_CODE_LINES, repo: str | None = None,
                     repos: list[str] | None = None) -> dict[str, Any]:
        """The ``find_similar`` tool over the backend."""
        given = sum(x is not None for x in (id, code)) + (path is not None)
        if given != 1 or (path is not None and line is None):
            raise BadArguments("give exactly one of: id, path and line (and repo), or code")
        resp = self._request({"op": "similar", "id": id, "path": path, "line": line, "repo": repo, "code": code,
                              "k": k, "languages": languages or [], "paths": paths or [], "kinds": kinds or [],
                              "repos": repos or []})
        return {"results": self._hits(resp, code_lines), "indexes": [self._freshness(resp)]}

    def index_status(self) -> dict[str, Any]:
        """The ``index_status`` tool over the backend."""
        st = self._request({"op": "status"})
        row = self._freshness(st)
        row.update(units=int(st.get("units") or 0), languages=st.get("languages") or {}, files={},
                   model=str(st.get("model") or ""), not_indexed=[],
                   repositories=st.get("units_per_repository") or {})
        return {"indexes": [row]}


# ---------------------------------------------------------------------------------------------------------
# The MCP server


def _validate(name: str, args: dict[str, Any], specs: dict[str, dict[str, Any]] = TOOLS) -> None:
    import jsonschema

    try:
        jsonschema.validate(args, specs[name]["input"])
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise BadArguments(f"{name}: {where + ': ' if where else ''}{exc.message}") from None


def build_server(tools: CodeSearchTools | BackendTools, use_client_roots: bool = True) -> Any:
    """The low-level MCP server whose handlers call ``tools`` (a repository's, or a backend's)."""
    import anyio
    from mcp import types
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError


    roots_checked = [not use_client_roots]
    specs: dict[str, dict[str, Any]] = getattr(tools, "specs", TOOLS)

    async def sync_roots(ctx: Any) -> None:
        """Serve the client's roots when it declares them (once per connection)."""
        if roots_checked[0]:
            return
        roots_checked[0] = True
        caps = getattr(ctx.session, "client_capabilities", None)
        if caps is None or getattr(caps, "roots", None) is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = await ctx.session.list_roots()
        except Exception as exc:  # a client that declares roots but cannot list them: keep the start directory
            log.info("roots/list failed: %s", exc)
            return
        paths = []
        for r in result.roots:
            uri = str(r.uri)
            if uri.startswith("file://"):
                from urllib.parse import unquote, urlparse

                p = Path(unquote(urlparse(uri).path))
                if p.is_dir():
                    paths.append(p)
        if paths:
            tools.set_roots(paths)

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=[
            types.Tool(name=name, title=spec["title"], description=spec["description"], input_schema=spec["input"],
                       output_schema=spec["output"],
                       annotations=types.ToolAnnotations(title=spec["title"], read_only_hint=spec["read_only"],
                                                         destructive_hint=False, idempotent_hint=True))
            for name, spec in specs.items()])

    async def call_tool(ctx: Any, params: Any) -> Any:
        name = params.name
        if name not in specs:
            if name in TOOLS and isinstance(tools, BackendTools):
                raise MCPError(types.INVALID_PARAMS, tools.unsupported(name))
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {name!r} (tools: {', '.join(specs)})")
        args = dict(params.arguments or {})
        try:
            _validate(name, args, specs)
            await sync_roots(ctx)
            data = await anyio.to_thread.run_sync(lambda: getattr(tools, name)(**args))
        except BadArguments as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        except (ToolFailed, CodesearchError) as exc:
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(exc))], is_error=True)
        except Exception as exc:  # a bug answers as a failed call; the server keeps serving
            log.exception("tool %s failed", name)
            return types.CallToolResult(content=[types.TextContent(
                type="text", text=f"internal error: {type(exc).__name__}: {exc}")], is_error=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(data))],
                                    structured_content=data)

    return Server("codesearch", version=client.build_id(), title="codesearch",
                  instructions="Semantic code search over the local repository: use search_code to find where "
                               "something is done, get_code to read a result, find_similar for look-alikes.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


def serve(root: Path | None = None, backend: str | None = None) -> None:
    """Run the MCP server on stdin/stdout until the client closes it.

    Args:
        root: Serve this directory (default: the client's MCP roots, else the current directory).
        backend: Serve this backend instead (default: the ``backend`` setting; None: a local index).
    """
    import anyio
    from mcp.server.stdio import stdio_server

    start = (root or Path.cwd()).resolve()
    if not start.is_dir():
        raise UsageError(f"not a directory: {start}")
    settings = load_settings(start)
    backend = backend or settings.backend
    tools: CodeSearchTools | BackendTools
    if backend:
        tools = BackendTools(backend, settings)
    else:
        tools = CodeSearchTools([start])
    server = build_server(tools, use_client_roots=root is None and not backend)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    try:
        anyio.run(main)
    finally:
        tools.close()
