"""The service core's request API over a multi-repository backend (``--backend URI``), for MCP and LSP.

:class:`BackendService` answers the requests of :class:`~codesearch.service.Service` that make sense
on a backend built by ``codesearch index --backend`` (docs/scale.md): ``search`` (hits carry
``repo``; ``repo:NAME`` filters), ``get`` (by id, or by repository, path and line), ``similar``
and ``status``. They go through the :class:`~codesearch.store.VectorStore` interface of the
backend (``milvus_store.MilvusStore``): the Searcher and the ``get``/``similar`` helpers of
:mod:`codesearch.service` are the ones the local index uses. What needs a checkout and a writer
(``reindex``, freshness of files being edited) is refused with one line saying what to run instead.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .config import Settings
from .embed import Embedder
from .errors import CodesearchError, UsageError
from .search import Searcher
from .service import MAX_CODE_BYTES, MAX_K, _int, _str_list, answer, search_args, similar_units, unit_record
from .types import Hit

log = logging.getLogger(__name__)


def open_store(uri: str, settings: Settings) -> Any:
    """The backend's index for queries with ``settings`` (a ``MilvusStore``).

    A backend holds one index per model (docs/scale.md). With a model set (``--model`` or the setting
    ``model``), its index is used, and a backend without one is an error that names those it holds;
    with the default model, the backend's only index is used (its model is loaded, as a local index's
    is), or the default model's when it holds several.
    """
    from .embed import read_model_info
    from .indexer import index_meta
    from .milvus_store import MilvusStore

    MilvusStore.check_uri(uri, create=False)
    model = read_model_info(settings.model, settings.max_length, "torch" if settings.runtime == "auto"
                            else settings.runtime)
    meta = index_meta(model, settings)
    if settings.model:
        return MilvusStore(uri, identity=meta)
    return MilvusStore(uri, prefer=meta)


def unsupported(op: str, uri: str) -> str:
    """The one-line answer to a request a backend cannot serve."""
    if op == "reindex":
        return (f"reindex is not supported on the backend {uri}: it is updated by the batch job; "
                f"run `codesearch index --backend {uri} REPO...` again")
    return f"{op} is not supported on the backend {uri}"


def _repo(req: dict[str, Any]) -> str | None:
    """A request's ``repo`` (which repository a path is in), checked."""
    repo = req.get("repo")
    if repo is not None and not isinstance(repo, str):
        raise UsageError("repo must be a string")
    return repo


class BackendService:
    """One open backend: a warm Searcher over its store, and the JSON request API over it.

    Args:
        uri: The backend (``org.db`` or ``http://host:port``).
        settings: Ranking settings (k, mode, fusion, role prior; the model must be the backend's).
        embedder: The query encoder; None loads the backend's model on the first query.

    Raises:
        IndexMissing, BackendUnavailable: no backend there, or it cannot be opened.
    """

    def __init__(self, uri: str, settings: Settings, embedder: Embedder | None = None) -> None:
        self.uri = uri
        self.settings = settings
        self.store = open_store(uri, settings)
        self.searcher = Searcher(self.store, settings, embedder)
        self._lock = threading.Lock()

    def freshness(self) -> dict[str, Any]:
        """Freshness of an answer: a backend has no generations or pending paths; ``updated_at`` is its last job."""
        try:
            times = [float(r.get("indexed_at") or 0.0) for r in self.store.repositories().values()]
        except CodesearchError:
            times = []
        return {"generation": 0, "pending": 0, "state": "backend", "updated_at": max(times, default=0.0)}

    def search(self, text: str, k: int | None = None, mode: str | None = None, languages: tuple[str, ...] = (),
               paths: tuple[str, ...] = (), kinds: tuple[str, ...] = (), repos: tuple[str, ...] = (),
               settings: Settings | None = None) -> tuple[list[Hit], dict[str, Any]]:
        """Rank units of every repository (or those of ``repos``) for ``text``."""
        with self._lock:
            if settings is not None:
                self.searcher.settings = settings
            try:
                hits = self.searcher.search(text, k=k, mode=mode, languages=languages, paths=paths, kinds=kinds,
                                            repos=repos)
            finally:
                self.searcher.settings = self.settings
        return hits, self.freshness()

    def get_code(self, unit_id: int | None = None, path: str | None = None, line: int | None = None,
                 repo: str | None = None, max_bytes: int = MAX_CODE_BYTES) -> dict[str, Any]:
        """The full text of one unit: by id, or the innermost unit of ``repo``'s ``path`` around ``line``."""
        with self._lock, self.store.snapshot():
            out = unit_record(self.store, unit_id, path, line, repo, max_bytes, f"the backend {self.uri}")
        return {"unit": out, **self.freshness()}

    def similar(self, unit_id: int | None = None, path: str | None = None, line: int | None = None,
                code: str | None = None, k: int | None = None, languages: tuple[str, ...] = (),
                paths: tuple[str, ...] = (), kinds: tuple[str, ...] = (), repos: tuple[str, ...] = (),
                repo: str | None = None) -> tuple[list[Hit], dict[str, Any]]:
        """Units most like a unit (id, or repo + path + line) or a snippet, across repositories (or ``repos``)."""
        with self._lock, self.store.snapshot():
            hits = similar_units(self.store, self.searcher.embedder, self.settings, unit_id, path, line, repo, code,
                                 k, languages, paths, kinds, repos, where=f"the backend {self.uri}")
        return hits, self.freshness()

    def status(self) -> dict[str, Any]:
        """The backend's counts and repositories, with the freshness fields."""
        with self._lock:
            info = self.store.status()
            repos = self.store.repositories()
        info["repository_roots"] = {name: r.get("root", "") for name, r in sorted(repos.items())}
        return {**info, **self.freshness(), "pid": os.getpid()}

    def handle_request(self, req: Any) -> dict[str, Any]:
        """Answer one request of the :mod:`codesearch.client` protocol; never raises."""
        return answer(req, {"search": self._op_search, "get": self._op_get, "similar": self._op_similar,
                            "status": lambda r: self.status(),
                            "reindex": self._unsupported, "stop": self._unsupported})

    def _op_search(self, req: dict[str, Any]) -> dict[str, Any]:
        from . import client

        text, k, mode = search_args(req)
        hits, fresh = self.search(text, k, mode, _str_list(req, "languages"), _str_list(req, "paths"),
                                  _str_list(req, "kinds"), _str_list(req, "repos"))
        return {"results": [client.hit_record(h, explain=True) for h in hits], **fresh}

    def _op_get(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.get_code(_int(req, "id", 0, 1 << 63), req.get("path"), _int(req, "line", 1, 1 << 31),
                             _repo(req), _int(req, "max_bytes", 1, 1 << 30) or MAX_CODE_BYTES)

    def _op_similar(self, req: dict[str, Any]) -> dict[str, Any]:
        from . import client

        code = req.get("code")
        if code is not None and not isinstance(code, str):
            raise UsageError("code must be a string")
        hits, fresh = self.similar(_int(req, "id", 0, 1 << 63), req.get("path"), _int(req, "line", 1, 1 << 31),
                                   code, _int(req, "k", 1, MAX_K), _str_list(req, "languages"),
                                   _str_list(req, "paths"), _str_list(req, "kinds"), _str_list(req, "repos"),
                                   _repo(req))
        return {"results": [client.hit_record(h, explain=False) for h in hits], **fresh}

    def _unsupported(self, req: dict[str, Any]) -> dict[str, Any]:
        raise UsageError(unsupported(str(req.get("op")), self.uri))

    def close(self) -> None:
        """Close the backend (a Milvus Lite file is then free for another process)."""
        with self._lock:
            self.searcher.close()
