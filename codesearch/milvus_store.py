"""Milvus as a :class:`~codesearch.store.VectorStore` for many repositories (``--backend URI``).

A URI is a Milvus Lite file (``org.db``: an embedded Milvus in one local file, one process at a
time) or a server (``http://host:port``). Two collections:

``codesearch_units``
    One row per unit of each repository: the unit record (repo, path, lines, bytes, name,
    qualified name, kind, language, role, signature, docstring, summary, code), its ``text_hash``, the
    vector (FLAT, inner product = cosine on unit vectors), and ``lexical``: the same code-aware
    tokens as the local FTS5 table (name tokens x3, doc x2, code x1, standing in for FTS5's column
    weights) analysed by Milvus' BM25 function into the sparse field ``sparse``. Row ids are a
    63-bit hash of the whole row, so an unchanged unit keeps its row and any change makes a new one.
``codesearch_texts``
    The vector cache: one row per ``text_hash`` (the local index's key: model, text format, max
    length, text). Forks, branches and unchanged units find their vector here and are not
    embedded again.

A backend holds one such pair per index identity (model key, text format, max length, feature
version; a property of the units collection), named ``codesearch_units_<tag>`` and
``codesearch_texts_<tag>`` (``tag``: a hash of the identity; the first release's unsuffixed names
are still read). A job with another model builds its own pair beside the others; a query uses the
pair of its model (or the only one). The vector cache is garbage-collected as the local index's
is: when a run deletes unit rows, the cached vectors of their texts that no row uses any more go too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parsers.symbol import Symbol

from .errors import BackendUnavailable, IndexMissing, IndexStale, UsageError
from .index import Filters
from .lexical import query_tokens
from .lexical import tokens as lexical_tokens

log = logging.getLogger(__name__)

UNITS = "codesearch_units"
TEXTS = "codesearch_texts"
META_PROPERTY = "codesearch.meta"
#: The repositories of the backend: JSON {name: {"root": checkout path, "indexed_at": Unix time}}.
REPOS_PROPERTY = "codesearch.repos"
#: Changelog of the collection schema: 1: first release (collections named per index identity since
#: the second step; unsuffixed names of the first are still read).
BACKEND_FORMAT_VERSION = 1
#: Milvus' VARCHAR limit (bytes); longer values are clipped (code of a unit over 64 KB).
_VARCHAR_MAX = 65535
#: Milvus' largest top-k / query window.
_MAX_LIMIT = 16384
_CHUNK = 500
_SYMBOL_FIELDS = ("path", "language", "kind", "name", "qualified_name", "signature", "docstring", "summary",
                  "start_line", "end_line", "start_byte", "end_byte", "code", "doc_start_line", "doc_end_line",
                  "role")
_INT_FIELDS = ("start_line", "end_line", "start_byte", "end_byte", "doc_start_line", "doc_end_line")
_STR_LIMITS = {"repo": 1024, "path": 4096, "language": 32, "kind": 32, "role": 32, "name": 2048, "qualified_name": 4096,
               "signature": _VARCHAR_MAX, "docstring": _VARCHAR_MAX, "summary": _VARCHAR_MAX, "code": _VARCHAR_MAX,
               "text_hash": 64, "lexical": _VARCHAR_MAX}
_ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stemmer", "language": "english"}]}
#: Meta keys that must agree between the backend and a job writing to it.
IDENTITY_KEYS = ("model_key", "doc_text_format", "max_length", "feature_version", "backend_format")


#: Open MilvusStores per Milvus Lite file in this process (the last one to close stops its server).
_LITE_OPEN: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def with_format(meta: dict[str, str]) -> dict[str, str]:
    """``meta`` with this backend format version."""
    return dict(meta, backend_format=str(BACKEND_FORMAT_VERSION))


def identity_of(meta: dict[str, str]) -> tuple[str, ...]:
    """What makes two indexes the same (their vectors interchangeable): the :data:`IDENTITY_KEYS` values."""
    meta = {"backend_format": str(BACKEND_FORMAT_VERSION), **meta}
    return tuple(str(meta.get(k, "")) for k in IDENTITY_KEYS)


def index_tag(meta: dict[str, str]) -> str:
    """The suffix of an index's collection names: a short hash of its identity."""
    return hashlib.blake2b("\0".join(identity_of(meta)).encode(), digest_size=6).hexdigest()


def describe(meta: dict[str, str]) -> str:
    """An index's identity in words, for messages."""
    return (f"model {meta.get('model_key')} ({meta.get('doc_text_format')}, max_length {meta.get('max_length')}, "
            f"feature version {meta.get('feature_version')})")


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus server rather than a Milvus Lite file."""
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def lexical_text(symbol: Symbol) -> str:
    """The string Milvus' BM25 analyses for a unit: code-aware tokens, name x3, doc x2, code x1."""
    name = " ".join(lexical_tokens(symbol.qualified_name))
    doc = " ".join(lexical_tokens(symbol.docstring))
    code = " ".join(lexical_tokens(symbol.code))
    return clip(" ".join(p for p in (name, name, name, doc, doc, code) if p), _VARCHAR_MAX)


def unit_row_id(repo: str, symbol: Symbol, text_hash: str) -> int:
    """A 63-bit id over the whole row: unchanged units keep it, any change gives a new one."""
    h = hashlib.blake2b(digest_size=8)
    for part in (repo, text_hash, *(str(getattr(symbol, f)) for f in _SYMBOL_FIELDS)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _path_expr(pattern: str) -> str | None:
    """A Milvus expression equal to Filters.path_ok for one pattern, or None if it has none (``[``)."""
    pat = pattern.removeprefix("./")
    if "[" in pat:
        return None
    if not any(c in pat for c in "*?"):
        return f"path like {_quote(_like_escape(pat) + '%')}"
    like = "".join("%" if c == "*" else "_" if c == "?" else _like_escape(c) for c in pat)
    return f"path like {_quote(like)}"


def _in(field: str, values: Iterable[Any]) -> str:
    return f"{field} in [{', '.join(_quote(v) if isinstance(v, str) else str(int(v)) for v in values)}]"


@dataclass(frozen=True)
class _Expr:
    """What MilvusStore.allowed_ids returns: a filter expression evaluated inside Milvus."""

    expr: str


@contextlib.contextmanager
def _milvus_errors(uri: str) -> Iterator[None]:
    """Turn pymilvus' exceptions into one-line BackendUnavailable errors."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        msg = getattr(exc, "message", "") or str(exc)
        raise BackendUnavailable(f"backend {uri}: {msg}") from None


class MilvusStore:
    """A connection to one Milvus backend: the Searcher's VectorStore and the batch job's writer.

    Args:
        uri: ``PATH.db`` (Milvus Lite) or ``http://host:port``.
        create: Create the backend (a new Lite file) if it does not exist; a query passes False.
        identity: The index to use: meta with the :data:`IDENTITY_KEYS` of a model (``indexer.index_meta``);
            a backend holds one index per identity. None: the only index of the backend.
        prefer: Without ``identity``, the index to use when the backend holds several (the default model's).
        any_index: Open whatever indexes the backend holds (the first is selected; see :meth:`select_index`).

    Raises:
        IndexMissing: no backend or no index there (``create`` False).
        IndexStale: no index of ``identity`` (``create`` False).
        UsageError: several indexes, no ``identity`` and none of ``prefer``.
    """

    def __init__(self, uri: str, create: bool = False, identity: dict[str, str] | None = None,
                 prefer: dict[str, str] | None = None, any_index: bool = False) -> None:
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its RPC errors become our one line
        self.uri = uri
        uri = self.check_uri(uri, create)
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        self._closed = False
        self._lite_path: str | None = None
        if not is_server_uri(uri):
            self._lite_path = uri
            with _LITE_LOCK:
                _LITE_OPEN[uri] = _LITE_OPEN.get(uri, 0) + 1
        try:
            self.client = MilvusClient(uri, timeout=10)
            self.client.list_collections()
        except MilvusException as exc:
            self.close()
            msg = getattr(exc, "message", "") or str(exc)
            if not is_server_uri(self.uri) and "Open local milvus failed" in msg:
                msg += " (a Milvus Lite file serves one process at a time: is another codesearch using it?)"
            raise BackendUnavailable(f"cannot open backend {self.uri}: {msg}") from None
        self.meta: dict[str, str] = {}
        self._repo_cache: dict[int, str] = {}
        self._loaded = False
        #: The collections of the index this store reads and writes (set by :meth:`_select`).
        self.units = ""
        self.texts = ""
        try:
            self.indexes = self._list_indexes()
            if any_index and self.indexes:
                self._select(next(iter(self.indexes)))
            else:
                self._choose(create, identity, prefer)
        except BaseException:
            self.close()
            raise

    def _list_indexes(self) -> dict[str, dict[str, str]]:
        """Every index of the backend: units collection name -> its meta."""
        out: dict[str, dict[str, str]] = {}
        with _milvus_errors(self.uri):
            for name in sorted(self.client.list_collections()):
                if name == UNITS or name.startswith(UNITS + "_"):
                    out[name] = self._read_meta(name)
        return out

    def _select(self, units: str) -> None:
        self.units = units
        self.texts = TEXTS + units[len(UNITS):]
        self.meta = self.indexes.get(units, {})
        self._loaded = False

    def _index_of(self, identity: dict[str, str]) -> str | None:
        """The units collection of the index with ``identity``, if the backend holds one."""
        want = identity_of(identity)
        return next((name for name, meta in self.indexes.items() if identity_of(meta) == want), None)

    def _choose(self, create: bool, identity: dict[str, str] | None, prefer: dict[str, str] | None) -> None:
        """Pick the index of ``identity`` (or, without one, the only index, else the one of ``prefer``)."""
        held = ", ".join(describe(m) for m in self.indexes.values())
        if identity is not None and (name := self._index_of(identity)) is not None:
            self._select(name)
            return
        if create and (identity is not None or not self.indexes):
            return  # prepare() creates it
        if not self.indexes:
            raise IndexMissing(f"backend {self.uri} holds no index; run `codesearch index --backend {self.uri} "
                               "REPO...` first")
        if identity is not None:
            raise IndexStale(f"backend {self.uri} holds no index of {describe(identity)} (it holds {held}); "
                             f"index into it with that model, or query with the model of one it holds (--model)")
        if len(self.indexes) == 1:
            self._select(next(iter(self.indexes)))
            return
        if prefer is not None and (name := self._index_of(prefer)) is not None:
            self._select(name)
            return
        raise UsageError(f"backend {self.uri} holds indexes of several models ({held}); choose one with --model "
                         "(or the model setting)")

    @staticmethod
    def check_uri(uri: str, create: bool = True) -> str:
        """The URI to connect to, after the checks that need no connection (a Lite file's name and folder).

        Raises:
            BackendUnavailable: not a ``.db`` file or a server URI, or its directory is missing.
            IndexMissing: ``create`` is False and the Lite file does not exist.
        """
        if is_server_uri(uri):
            return uri
        path = Path(uri).expanduser()
        if path.suffix != ".db":
            raise BackendUnavailable(f"backend {uri}: a Milvus Lite backend is a file ending in .db "
                                     "(or give a server as http://host:port)")
        if not create and not path.exists():  # Milvus Lite 3 keeps a directory under this name
            raise IndexMissing(f"no backend at {uri}; run `codesearch index --backend {uri} REPO...` first")
        if not path.parent.is_dir():
            raise BackendUnavailable(f"backend {uri}: directory {path.parent} does not exist")
        return str(path.resolve())

    # -- schema and identity ------------------------------------------------------------------

    def _read_meta(self, units: str) -> dict[str, str]:
        with _milvus_errors(self.uri):
            props = self.client.describe_collection(units).get("properties", {})
        raw = props.get(META_PROPERTY)
        return dict(json.loads(raw)) if raw else {}

    def prepare(self, meta: dict[str, str]) -> None:
        """Use the index of ``meta``'s identity (model, text format, max length, versions), creating it if new.

        A backend holds one index (a pair of collections) per identity: a job with another model builds
        its own index beside the others, and queries use the one of their model.
        """
        meta = with_format(meta)
        if self.units and identity_of(self.meta) == identity_of(meta):
            return
        for name, old in self.indexes.items():
            if identity_of(old) == identity_of(meta):
                self._select(name)
                return
        units = f"{UNITS}_{index_tag(meta)}"
        with _milvus_errors(self.uri):
            self._create(units, TEXTS + units[len(UNITS):], int(meta["dim"]), meta)
        self.indexes[units] = meta
        self._select(units)

    def _create(self, units_name: str, texts_name: str, dim: int, meta: dict[str, str]) -> None:
        from pymilvus import DataType, Function, FunctionType

        c = self.client
        texts = c.create_schema(auto_id=False, enable_dynamic_field=False)
        texts.add_field("text_hash", DataType.VARCHAR, is_primary=True, max_length=64)
        texts.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        if not c.has_collection(texts_name):
            # Indexes without waiting: the wait calls a server method Milvus Lite lacks (it logs a traceback).
            c.create_collection(texts_name, schema=texts)
            c.create_index(texts_name, ip, sync=False)
        units = c.create_schema(auto_id=False, enable_dynamic_field=False)
        units.add_field("id", DataType.INT64, is_primary=True)
        for name, limit in _STR_LIMITS.items():
            if name == "lexical":
                units.add_field(name, DataType.VARCHAR, max_length=limit, enable_analyzer=True,
                                enable_match=True, analyzer_params=_ANALYZER)
            else:
                units.add_field(name, DataType.VARCHAR, max_length=limit)
        for name in _INT_FIELDS:
            units.add_field(name, DataType.INT64)
        units.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        units.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        units.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["lexical"],
                                    output_field_names=["sparse"]))
        ip = c.prepare_index_params()
        ip.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        for name in ("repo", "path", "language", "kind", "role", "text_hash"):
            ip.add_index(field_name=name, index_type="INVERTED")
        c.create_collection(units_name, schema=units,
                            properties={META_PROPERTY: json.dumps(meta, sort_keys=True)})
        c.create_index(units_name, ip, sync=False)

    def _load(self) -> None:
        if not self._loaded:
            with _milvus_errors(self.uri):
                self.client.load_collection(self.units)
                self.client.load_collection(self.texts)
            self._loaded = True

    # -- writer side (the batch job) ----------------------------------------------------------

    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the vector cache for these text hashes (the ones it has)."""
        self._load()
        out: dict[str, np.ndarray] = {}
        hashes = list(dict.fromkeys(text_hashes))
        with _milvus_errors(self.uri):
            for start in range(0, len(hashes), _CHUNK):
                chunk = hashes[start:start + _CHUNK]
                for row in self.client.query(self.texts, filter=_in("text_hash", chunk),
                                             output_fields=["text_hash", "vector"]):
                    out[row["text_hash"]] = np.asarray(row["vector"], dtype=np.float32)
        return out

    def missing_texts(self, text_hashes: Sequence[str]) -> set[str]:
        """The text hashes that have no vector in the cache."""
        self._load()
        hashes = list(dict.fromkeys(text_hashes))
        have: set[str] = set()
        with _milvus_errors(self.uri):
            for start in range(0, len(hashes), _CHUNK):
                chunk = hashes[start:start + _CHUNK]
                have.update(r["text_hash"] for r in self.client.query(self.texts, filter=_in("text_hash", chunk),
                                                                      output_fields=["text_hash"]))
        return set(hashes) - have

    def put_texts(self, text_hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors to the cache (upsert: a repeated hash keeps one row)."""
        rows = [{"text_hash": h, "vector": v.tolist()} for h, v in zip(text_hashes, vectors, strict=True)]
        if rows:
            with _milvus_errors(self.uri):
                self.client.upsert(self.texts, rows)

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        """Which of these unit row ids the backend has."""
        self._load()
        have: set[int] = set()
        ids = [int(i) for i in ids]
        with _milvus_errors(self.uri):
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                have.update(int(r["id"]) for r in self.client.query(self.units, filter=_in("id", chunk),
                                                                     output_fields=["id"]))
        return have

    def insert_units(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert unit rows (keys: id, repo, text_hash, lexical, vector and the Symbol fields)."""
        if not rows:
            return
        clean = []
        for row in rows:
            r = {k: row[k] for k in ("id", "vector", *_STR_LIMITS, *_INT_FIELDS)}
            for k, limit in _STR_LIMITS.items():
                r[k] = clip(str(r[k]), limit)
            clean.append(r)
        with _milvus_errors(self.uri):
            self.client.upsert(self.units, clean)

    def repo_ids(self, repo: str) -> np.ndarray:
        """Every unit row id of ``repo``."""
        self._load()
        out: list[int] = []
        out.extend(int(r["id"]) for r in self._query_all(f"repo == {_quote(repo)}", ["id"]))
        return np.asarray(out, dtype=np.int64)

    def _query_all(self, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching ``expr`` (a query without a limit; Milvus Lite's query iterator needs a
        server call it does not implement)."""
        self._load()
        with _milvus_errors(self.uri):
            return list(self.client.query(self.units, filter=expr, output_fields=fields))

    def delete_ids(self, ids: Sequence[int]) -> None:
        """Delete unit rows by id."""
        ids = [int(i) for i in ids]
        with _milvus_errors(self.uri):
            for start in range(0, len(ids), _CHUNK):
                self.client.delete(self.units, filter=_in("id", ids[start:start + _CHUNK]))

    def _rows_by_id(self, ids: Sequence[int], fields: list[str]) -> Iterator[dict[str, Any]]:
        """The unit rows of ``ids`` (those that exist) with ``fields``, queried ``_CHUNK`` ids at a time."""
        ids = [int(i) for i in ids]
        with _milvus_errors(self.uri):
            for start in range(0, len(ids), _CHUNK):
                yield from self.client.query(self.units, filter=_in("id", ids[start:start + _CHUNK]),
                                             output_fields=fields)

    def text_hashes_of(self, ids: Sequence[int]) -> set[str]:
        """The text hashes of these unit rows."""
        self._load()
        return {r["text_hash"] for r in self._rows_by_id(ids, ["text_hash"])}

    def drop_unused_texts(self, text_hashes: Iterable[str]) -> int:
        """Delete the cached vectors of these hashes that no unit row uses any more; returns how many.

        Only the given hashes are checked (those of rows a run deleted), so the cost is O(changed rows).
        """
        self._load()
        hashes = sorted(set(text_hashes))
        unused: list[str] = []
        with _milvus_errors(self.uri):
            for start in range(0, len(hashes), _CHUNK):
                chunk = hashes[start:start + _CHUNK]
                used = {r["text_hash"] for r in self.client.query(self.units, filter=_in("text_hash", chunk),
                                                                  output_fields=["text_hash"])}
                unused += [h for h in chunk if h not in used]
            for start in range(0, len(unused), _CHUNK):
                self.client.delete(self.texts, filter=_in("text_hash", unused[start:start + _CHUNK]))
        return len(unused)

    def select_index(self, units: str) -> None:
        """Read and write the index whose units collection is ``units`` (a key of :attr:`indexes`)."""
        if units not in self.indexes:
            raise UsageError(f"backend {self.uri} has no index {units}")
        self._select(units)

    def flush(self) -> None:
        """Make the writes durable (Milvus seals the growing segments)."""
        with _milvus_errors(self.uri):
            self.client.flush(self.units)
            self.client.flush(self.texts)

    # -- reader side (VectorStore) ------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """No snapshot isolation across requests in Milvus: each read sees the latest writes."""
        self._load()
        yield

    def allowed_ids(self, filters: Filters) -> _Expr | np.ndarray | None:
        """A Milvus filter expression for ``filters`` (ids when a path glob has no Milvus form)."""
        if not filters:
            return None
        parts = []
        if filters.languages:
            parts.append(_in("language", filters.languages))
        if filters.kinds:
            parts.append(_in("kind", filters.kinds))
        if filters.repos:
            parts.append(_in("repo", filters.repos))
        if filters.roles:
            parts.append(_in("role", filters.roles))
        if filters.not_roles:
            parts.append(f"not ({_in('role', filters.not_roles)})")
        python_paths = False
        if filters.paths:
            exprs = [_path_expr(p) for p in filters.paths]
            if all(e is not None for e in exprs):
                parts.append("(" + " or ".join(e for e in exprs if e) + ")")
            else:
                python_paths = True
        expr = " and ".join(parts)
        if not python_paths:
            return _Expr(expr)
        ids = [int(r["id"]) for r in self._query_all(expr or "id >= 0", ["id", "path"]) if filters.path_ok(r["path"])]
        return np.asarray(ids, dtype=np.int64)

    @staticmethod
    def _filter(allowed: Any) -> str | None:
        """The expression for ``allowed``; "" for no filter, None for "nothing passes"."""
        if allowed is None:
            return ""
        if isinstance(allowed, _Expr):
            return allowed.expr
        ids = np.asarray(allowed).tolist()
        return _in("id", ids) if ids else None

    def vector_search(self, query: np.ndarray, k: int, allowed: Any) -> list[tuple[int, float]]:
        """Top-k (unit id, cosine) for one query vector (dim,)."""
        expr = self._filter(allowed)
        if expr is None or k <= 0:
            return []
        with _milvus_errors(self.uri):
            res = self.client.search(self.units, data=[np.asarray(query, dtype=np.float32).tolist()],
                                     anns_field="vector", limit=min(k, _MAX_LIMIT), filter=expr,
                                     search_params={"metric_type": "IP"}, output_fields=["id"])
        return [(int(h["id"]), float(h["distance"])) for h in res[0]]

    def lexical_search(self, text: str, k: int, allowed: Any, must: Sequence[str] = ()) -> list[tuple[int, float]]:
        """Top-k (unit id, BM25) through Milvus' BM25 over the code-aware tokens of ``text``.

        ``must`` phrases: each phrase's tokens must all be in the unit (TEXT_MATCH in Milvus), and
        in order, next to each other (checked here on the stored tokens; Milvus Lite has no
        PHRASE_MATCH).
        """
        expr = self._filter(allowed)
        if expr is None or k <= 0:
            return []
        phrases = [lexical_tokens(p) for p in must]
        phrases = [p for p in phrases if p]
        if phrases:
            matches = [f"TEXT_MATCH(lexical, {_quote(t)})" for p in phrases for t in dict.fromkeys(p)]
            full = " and ".join(([f"({expr})"] if expr else []) + matches)
            ok: list[int] = []
            with _milvus_errors(self.uri):
                rows = self.client.query(self.units, filter=full, output_fields=["id", "lexical"], limit=_MAX_LIMIT)
            for r in rows:
                toks = r["lexical"].split()
                if all(_contains(toks, p) for p in phrases):
                    ok.append(int(r["id"]))
            if not ok:
                return []
            expr = _in("id", ok)
        q = " ".join(query_tokens(text))
        if not q:
            return []
        with _milvus_errors(self.uri):
            res = self.client.search(self.units, data=[q], anns_field="sparse", limit=min(k, _MAX_LIMIT), filter=expr,
                                     search_params={"metric_type": "BM25"}, output_fields=["id"])
        # Milvus Lite reports BM25 as a negative distance (best first); a server as a positive score.
        return [(int(h["id"]), abs(float(h["distance"]))) for h in res[0]]

    def symbols(self, ids: Sequence[int]) -> dict[int, Symbol]:
        """Unit records by id (also remembers their repositories for :meth:`repos`)."""
        out: dict[int, Symbol] = {}
        for r in self._rows_by_id(ids, ["id", "repo", *_SYMBOL_FIELDS]):
            uid = int(r["id"])
            out[uid] = Symbol(**{f: int(r[f]) if f in _INT_FIELDS else r[f] for f in _SYMBOL_FIELDS})
            self._repo_cache[uid] = r["repo"]
        return out

    def roles(self, ids: Sequence[int]) -> dict[int, str]:
        """Role of each unit id (implementation, test, ...)."""
        return {int(r["id"]): r["role"] for r in self._rows_by_id(ids, ["id", "role"])}

    def repos(self, ids: Sequence[int]) -> dict[int, str]:
        """Repository of each unit id."""
        missing = [i for i in ids if i not in self._repo_cache]
        if missing:
            self.symbols(missing)
        out = {i: self._repo_cache[i] for i in ids if i in self._repo_cache}
        if len(self._repo_cache) > 100_000:
            self._repo_cache.clear()
        return out

    def unit_at(self, path: str, line: int, repo: str | None = None) -> list[tuple[str, int]]:
        """The innermost unit of ``path`` spanning ``line`` in each repository holding it (or in ``repo``)."""
        expr = f"path == {_quote(path)} and start_line <= {int(line)} and end_line >= {int(line)}"
        if repo is not None:
            expr += f" and repo == {_quote(repo)}"
        with _milvus_errors(self.uri):
            rows = self.client.query(self.units, filter=expr, output_fields=["id", "repo", "start_line", "end_line"],
                                     limit=_MAX_LIMIT)
        best: dict[str, tuple[int, int]] = {}
        for r in rows:
            key = (int(r["end_line"]) - int(r["start_line"]), int(r["id"]))
            if r["repo"] not in best or key < best[r["repo"]]:
                best[r["repo"]] = key
        for name, (_, uid) in best.items():
            self._repo_cache[uid] = name
        return [(name, uid) for name, (_, uid) in sorted(best.items())]

    def unit_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The vector of each unit row id (those that exist)."""
        return {int(r["id"]): np.asarray(r["vector"], dtype=np.float32)
                for r in self._rows_by_id(ids, ["id", "vector"])}

    def repositories(self) -> dict[str, dict[str, Any]]:
        """What the batch jobs recorded of each repository: ``{name: {"root": path, "indexed_at": time}}``."""
        with _milvus_errors(self.uri):
            props = self.client.describe_collection(self.units).get("properties", {})
        raw = props.get(REPOS_PROPERTY)
        return dict(json.loads(raw)) if raw else {}

    def record_repositories(self, update: dict[str, dict[str, Any]], remove: Sequence[str] = ()) -> None:
        """Merge ``update`` into :meth:`repositories` (and drop the names in ``remove``)."""
        repos = self.repositories()
        repos.update(update)
        for name in remove:
            repos.pop(name, None)
        with _milvus_errors(self.uri):
            self.client.alter_collection_properties(
                self.units, properties={REPOS_PROPERTY: json.dumps(repos, sort_keys=True)})

    def count_units(self) -> int:
        """Number of unit rows."""
        self._load()
        with _milvus_errors(self.uri):
            res = self.client.query(self.units, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def count_texts(self) -> int:
        """Number of cached vectors."""
        self._load()
        with _milvus_errors(self.uri):
            res = self.client.query(self.texts, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def status(self) -> dict[str, Any]:
        """Counts and identity of the backend."""
        repos: dict[str, int] = {}
        langs: dict[str, int] = {}
        for r in self._query_all("id >= 0", ["repo", "language"]):
            repos[r["repo"]] = repos.get(r["repo"], 0) + 1
            langs[r["language"]] = langs.get(r["language"], 0) + 1
        return {"backend": self.uri, "units": self.count_units(), "vectors": self.count_texts(),
                "collection": self.units, "indexes": [describe(m) for m in self.indexes.values()],
                "repositories": len(repos), "units_per_repository": dict(sorted(repos.items())),
                "languages": dict(sorted(langs.items())),
                "model": self.meta.get("model_id"), "doc_text_format": self.meta.get("doc_text_format"),
                "format_version": int(self.meta.get("backend_format", "0"))}

    def close(self) -> None:
        """Close the connection; the last store of a Lite file in this process stops its embedded server,
        so the file is free for another process."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.client.close()
        if self._lite_path is not None:
            with _LITE_LOCK:
                _LITE_OPEN[self._lite_path] -= 1
                last = _LITE_OPEN[self._lite_path] <= 0
                if last:
                    del _LITE_OPEN[self._lite_path]
            if last:
                with contextlib.suppress(Exception):
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self._lite_path)


def _contains(tokens: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(tokens[i:i + n] == phrase for i in range(len(tokens) - n + 1))
