"""Unsaved editor buffers as an in-memory layer over the on-disk index.

The language server keeps one :class:`BufferOverlay` per workspace root. When a buffer's text
differs from the file on disk, its units are parsed and embedded in memory (never written to the
index) and :func:`overlay_search` answers queries as if the buffer had been saved and indexed:

* The disk units of an overlaid file are *shadowed*: they never appear in results as they are.
* Semantic side: every overlay unit gets its exact cosine to the query and is merged with the disk
  candidates by score, so the semantic ranking is exact.
* Lexical side: BM25 needs corpus statistics the overlay does not have. A buffer unit whose content
  is unchanged from a disk unit of the same file takes that disk unit's place (and score); a new or
  edited unit is inserted into the disk ranking where a BM25 computed over the candidate pool puts it.
* Hybrid: the two merged lists are fused the way :class:`~codesearch.search.Searcher` fuses its
  two sides (reciprocal rank or weighted, per the settings).

So a buffer equal to its file changes nothing, and editing one function re-embeds only that
function (unchanged units reuse the index's vectors, looked up by text hash).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Container, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

import parsers
from parsers import Symbol

from .embed import Embedder, ModelInfo
from .index import LEXICAL_WEIGHTS, Filters, IndexReader, fts_columns
from .indexer import text_hash
from .lexical import query_tokens, split_words
from .lexical import tokens as lexical_tokens
from .query import Query
from .search import (
    Searcher,
    apply_role_prior,
    coverage,
    fuse,
    lexical_strength,
    preferred_roles,
    resolve,
    term_weights,
)
from .types import Hit, document_text

log = logging.getLogger(__name__)

#: BM25 constants of the local lexical estimate (its column weights are the index's).
_K1, _B = 1.2, 0.75
#: Query vectors remembered by QueryVectorCache.
_QUERY_CACHE = 64
#: Document vectors of buffer units remembered across edits (by text hash).
_VECTOR_CACHE = 4096


class QueryVectorCache:
    """An Embedder wrapper that remembers recent query vectors (documents pass straight through).

    The overlay path encodes a query once and ranks both the index and the buffers with it; the
    Searcher, given this wrapper, reuses the same vector instead of encoding again.

    Args:
        inner: The real encoder.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.info: ModelInfo = inner.info
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode ``texts``; a single query text is served from the cache when seen recently."""
        if kind != "query" or len(texts) != 1:
            return self.inner.encode(texts, kind=kind)
        key = texts[0]
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit.copy()
        vec = self.inner.encode([key], kind="query")
        with self._lock:
            self._cache[key] = vec
            while len(self._cache) > _QUERY_CACHE:
                self._cache.popitem(last=False)
        return vec.copy()


@dataclass(frozen=True)
class OverlayFile:
    """The in-memory units of one unsaved buffer.

    Attributes:
        path: Repository-relative path of the file.
        source: The buffer's text (UTF-8), which the symbols' byte offsets refer to.
        symbols: Units parsed from the buffer text.
        vectors: Their document vectors, shape (len(symbols), dim).
        hashes: Content hashes of ``symbols``.
        disk_hashes: Content hashes of the units the index holds for this path (to tell unchanged
            units from edited ones).
        disk_units: How many index units the path has (they are shadowed while the overlay exists).
    """

    path: str
    source: bytes
    symbols: tuple[Symbol, ...]
    vectors: np.ndarray
    hashes: tuple[str, ...]
    disk_hashes: frozenset[str]
    disk_units: int


class BufferOverlay:
    """The unsaved buffers of one repository, parsed and embedded in memory.

    Args:
        embedder: The encoder the index was built with (document side).
        doc_text_format: The index's document text format (``meta["doc_text_format"]``).
        parse_timeout: Parse time budget per buffer in seconds (None: no limit); a buffer over it gets
            no overlay (searches see the file as indexed).
    """

    def __init__(self, embedder: Embedder, doc_text_format: str, parse_timeout: float | None = None) -> None:
        self.embedder = embedder
        self.doc_text_format = doc_text_format
        self.parse_timeout = parse_timeout
        self._files: dict[str, OverlayFile] = {}
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        #: Units embedded by the overlay so far (tests and ``status`` read it).
        self.embedded = 0

    def set_buffer(self, path: str, text: str, reader: IndexReader, lock: AbstractContextManager[Any] | None = None,
                   language: str | None = None) -> OverlayFile | None:
        """Parse and embed a buffer's text and make it shadow the indexed file.

        Args:
            path: Repository-relative path.
            text: The buffer's full text.
            reader: The index (for the path's current units and cached vectors).
            lock: Held while ``reader`` is used (the reader is shared with searches).
            language: Registry language (default: from the path).

        Returns:
            The new OverlayFile; None, and no overlay for the path, when the index already holds
            exactly the buffer's units (same content at the same lines) or the path is not a source
            file of a known language.
        """
        lang = language or parsers.language_for_path(path)
        if lang is None:
            self.drop(path)
            return None
        data = text.encode("utf-8", "surrogatepass")
        try:
            symbols = parsers.extract(data, lang, path, timeout=self.parse_timeout)
        except parsers.ParseTimeout as exc:
            log.warning("%s; the buffer is not searchable until saved and indexed", exc)
            self.drop(path)
            return None
        info = self.embedder.info
        fmt = self.doc_text_format
        texts = [document_text(s, fmt) for s in symbols]
        hashes = [text_hash(info, fmt, info.max_length, t) for t in texts]
        with lock or contextlib.nullcontext(), reader.snapshot():
            disk = _path_symbols(reader, path)
            if sorted(_placed(s) for s in disk) == sorted(_placed(s) for s in symbols):
                self.drop(path)
                return None
            found = self._known_vectors(reader, hashes)
        todo = sorted({h: t for h, t in zip(hashes, texts, strict=True) if h not in found}.items())
        if todo:
            fresh = self.embedder.encode([t for _, t in todo], kind="document")  # (n, dim)
            found.update((h, fresh[i]) for i, (h, _) in enumerate(todo))
            self.embedded += len(todo)
        dim = info.dim
        # Rounded to float16 as the index's FAISS holds them, so a buffer unit scores as its indexed copy does.
        vectors = (np.stack([found[h] for h in hashes]).astype(np.float16).astype(np.float32) if hashes
                   else np.zeros((0, dim), np.float32))
        entry = OverlayFile(path, data, tuple(symbols), vectors,
                            tuple(s.content_hash for s in symbols), frozenset(s.content_hash for s in disk),
                            len(disk))
        with self._lock:
            self._files[path] = entry
            for h in hashes:
                self._vectors[h] = found[h]
                self._vectors.move_to_end(h)
            while len(self._vectors) > _VECTOR_CACHE:
                self._vectors.popitem(last=False)
        return entry

    def _known_vectors(self, reader: IndexReader, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            found = {h: self._vectors[h] for h in hashes if h in self._vectors}
        wanted = [h for h in dict.fromkeys(hashes) if h not in found]
        # The index's vector cache, keyed by the same text hash the indexer computes.
        found.update(reader.cached_vectors(wanted))
        return found

    def drop(self, path: str) -> bool:
        """Stop shadowing ``path``; returns whether it was overlaid."""
        with self._lock:
            return self._files.pop(path, None) is not None

    def clear(self) -> None:
        """Drop every buffer."""
        with self._lock:
            self._files.clear()

    def get(self, path: str) -> OverlayFile | None:
        """The overlay of ``path``, if any."""
        with self._lock:
            return self._files.get(path)

    def files(self) -> list[OverlayFile]:
        """The overlaid files, sorted by path."""
        with self._lock:
            return [self._files[p] for p in sorted(self._files)]


def _path_symbols(reader: IndexReader, path: str) -> list[Symbol]:
    ids = reader.allowed_ids(Filters(paths=(path,)))
    if ids is None or len(ids) == 0:
        return []
    return [s for s in reader.symbols(ids.tolist()).values() if s.path == path]


def _placed(sym: Symbol) -> tuple[str, int, int]:
    return sym.content_hash, sym.start_line, sym.end_line


@functools.lru_cache(maxsize=4096)
def _token_columns(sym: Symbol) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The lexical tokens of a unit's name, doc and code columns, as the index stores them."""
    name, doc, code = fts_columns(sym)
    return tuple(name.split()), tuple(doc.split()), tuple(code.split())


@functools.lru_cache(maxsize=16384)
def _text_columns(sym: Symbol) -> tuple[str, str, str]:
    """A unit's name (also split into words), doc and code, lower-cased: what the local BM25 scans."""
    return (f"{split_words(sym.qualified_name)} {sym.qualified_name}".lower(), sym.docstring.lower(),
            sym.code.lower())


def _has_phrase(cols: Sequence[Sequence[str]], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    if n == 0:
        return True
    for col in cols:
        for i in range(len(col) - n + 1):
            if tuple(col[i:i + n]) == tuple(phrase):
                return True
    return False


def _bm25(query: Sequence[str], docs: Sequence[tuple[str, str, str]]) -> list[float]:
    """A BM25 estimate of each doc over the pool ``docs``, columns weighted like the index's.

    Term frequencies are substring counts in the lower-cased text and lengths are characters: far
    cheaper than tokenising every candidate, and consistent across the pool, which is all that
    placing a unit among the index's candidates needs.
    """
    n = len(docs)
    if n == 0:
        return []
    scores = [0.0] * n
    for c, weight in enumerate(LEXICAL_WEIGHTS):
        lengths = [len(d[c]) + 1 for d in docs]
        avg = sum(lengths) / n
        for term in query:
            tfs = [d[c].count(term) for d in docs]
            df = sum(1 for tf in tfs if tf)
            if not df:
                continue
            idf = math.log((n - df + 0.5) / (df + 0.5) + 1.0)
            for i, tf in enumerate(tfs):
                if tf:
                    scores[i] += weight * idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * lengths[i] / avg))
    return scores


#: Identifies a unit within one search: its file, start and name (cheaper to hash than a Symbol).
_Key = tuple[str, int, str]


def _key(sym: Symbol) -> _Key:
    return sym.path, sym.start_byte, sym.qualified_name


def _disk_hits(searcher: Searcher, q: Query, mode: str, keep: int, shadowed: Container[str], shadowed_units: int,
               languages: Sequence[str], paths: Sequence[str], kinds: Sequence[str]) -> list[Hit]:
    """The index's top candidates on one side, enough that ``keep`` remain outside the shadowed files.

    Usually one search of ``keep``; when shadowed units take places in it, a deeper one (at most
    ``keep`` + every shadowed unit, which always suffices).
    """
    want = keep
    for attempt in range(3):
        hits = searcher.search(q, k=want, mode=mode, languages=languages, paths=paths, kinds=kinds, role_prior=1.0)
        hidden = sum(1 for h in hits if h.symbol.path in shadowed)
        if not hidden or len(hits) < want or len(hits) - hidden >= keep:
            break
        want = keep + (min(2 * hidden, shadowed_units) if attempt == 0 else shadowed_units)
    return hits


@dataclass
class _Entry:
    symbol: Symbol
    score: float


def overlay_search(searcher: Searcher, overlay: BufferOverlay | None, query: str | Query, k: int | None = None,
                   mode: str | None = None, languages: Sequence[str] = (), paths: Sequence[str] = (),
                   kinds: Sequence[str] = ()) -> list[Hit]:
    """Search the index with the overlay's buffers in place of their files.

    Args:
        searcher: The index's searcher (its embedder should be a QueryVectorCache so the query is
            encoded once); the caller serialises access to it.
        overlay: The buffers (None or empty: exactly ``searcher.search``).
        query: Query text or a parsed Query.
        k: Number of results (default: the searcher's settings).
        mode: "hybrid", "semantic" or "lexical" (default: the searcher's settings).
        languages: Extra language filters.
        paths: Extra path filters.
        kinds: Extra kind filters.

    Returns:
        Up to k hits, best first; hits from buffers carry the buffer's line numbers.
    """
    files = overlay.files() if overlay is not None else []
    if not files:
        return searcher.search(query, k=k, mode=mode, languages=languages, paths=paths, kinds=kinds)
    settings = searcher.settings
    resolved = resolve(query, settings, k, mode, languages, paths, kinds)
    q, text, k, mode, filters = resolved.query, resolved.text, resolved.k, resolved.mode, resolved.filters
    by_path = {f.path: f for f in files}
    factor = settings.role_prior
    prefer = preferred_roles(q) if factor < 1.0 else None
    # The candidates per side the Searcher ranks in this mode.
    keep = k * settings.oversample if mode == "hybrid" or prefer is not None else k
    shadowed_units = sum(f.disk_units for f in files)
    phrases = [tuple(lexical_tokens(p)) for p in q.phrases]
    local: list[_Entry] = []
    local_vecs: list[np.ndarray] = []
    changed: list[bool] = []
    local_hash: dict[_Key, str] = {}
    for f in files:
        for i, sym in enumerate(f.symbols):
            if filters.languages and sym.language not in filters.languages:
                continue
            if filters.kinds and sym.kind not in filters.kinds:
                continue
            if not filters.role_ok(sym.role):
                continue
            if not filters.path_ok(sym.path) or not all(_has_phrase(_token_columns(sym), p) for p in phrases):
                continue
            local.append(_Entry(sym, 0.0))
            local_vecs.append(f.vectors[i])
            changed.append(f.hashes[i] not in f.disk_hashes)
            local_hash[_key(sym)] = f.hashes[i]

    sem: list[_Entry] = []
    if mode != "lexical":
        disk = _disk_hits(searcher, q, "semantic", keep, by_path, shadowed_units, languages, paths, kinds)
        sem = [_Entry(h.symbol, h.score) for h in disk if h.symbol.path not in by_path]
        if local:
            qvec = searcher.embedder.encode([text], kind="query")[0]  # (dim,)
            cos = np.stack(local_vecs) @ qvec  # (n,)
            sem += [_Entry(e.symbol, float(c)) for e, c in zip(local, cos, strict=True)]
        sem.sort(key=lambda e: -e.score)
        sem = sem[:keep]

    lex: list[_Entry] = []
    if mode != "semantic":
        disk = _disk_hits(searcher, q, "lexical", keep, by_path, shadowed_units, languages, paths, kinds)
        unchanged = {local_hash[_key(e.symbol)]: e for e, ch in zip(local, changed, strict=True) if not ch}
        for h in disk:
            if h.symbol.path not in by_path:
                lex.append(_Entry(h.symbol, h.score))
            elif (same := unchanged.get(h.symbol.content_hash)) is not None:
                lex.append(_Entry(same.symbol, h.score))  # the buffer's position, the index's score
        new = [e for e, ch in zip(local, changed, strict=True) if ch]
        if new:
            lex = _insert_lexical(lex, new, query_tokens(text))
        lex = lex[:keep]

    if mode == "semantic":
        ranked = [(e.symbol, e.score) for e in sem]
    elif mode == "lexical":
        ranked = [(e.symbol, e.score) for e in lex]
    else:
        keys: dict[_Key, int] = {}
        symbol_of: list[Symbol] = []
        for e in [*sem, *lex]:
            if keys.setdefault(_key(e.symbol), len(keys)) == len(symbol_of):
                symbol_of.append(e.symbol)
        # The Searcher's fusion, on the merged sides.
        strength, lexical = None, None
        lex_pairs = [(keys[_key(e.symbol)], e.score) for e in lex]
        if settings.fusion in ("coverage", "adaptive") and lex and hasattr(searcher.store, "document_frequencies"):
            weights = term_weights(text, searcher.store)  # type: ignore[arg-type]
            if settings.fusion == "adaptive":
                lexical = lexical_strength(lex_pairs, weights)
            else:
                strength = {keys[_key(e.symbol)]: coverage(weights, e.symbol) for e in lex}
        fused = fuse([(keys[_key(e.symbol)], e.score) for e in sem], lex_pairs, settings, strength, lexical)
        ranked = [(symbol_of[i], s) for i, s in fused]
    if prefer is not None:
        ranked = apply_role_prior(ranked, lambda sym: sym.role, prefer, factor)
    sem_rank = {_key(e.symbol): (r, e.score) for r, e in enumerate(sem, 1)}
    lex_rank = {_key(e.symbol): (r, e.score) for r, e in enumerate(lex, 1)}
    hits = []
    for sym, score in ranked[:k]:
        sr, ss = sem_rank.get(_key(sym), (None, None))
        lr, ls = lex_rank.get(_key(sym), (None, None))
        hits.append(Hit(sym, float(score), sr, ss, lr, ls))
    return hits


def _insert_lexical(ranked: list[_Entry], new: list[_Entry], query: Sequence[str]) -> list[_Entry]:
    """Insert ``new`` units into the disk lexical ranking where a pool-local BM25 places them.

    The disk order is kept; each new unit that matches a query token goes before the first disk
    unit whose local score is lower than its own, and takes that neighbour's score.
    """
    terms = list(dict.fromkeys(query))
    pool = [_text_columns(e.symbol) for e in ranked] + [_text_columns(e.symbol) for e in new]
    local = _bm25(terms, pool)
    disk_local, new_local = local[:len(ranked)], local[len(ranked):]
    pending = sorted(((s, i) for i, s in enumerate(new_local) if s > 0), key=lambda t: (-t[0], t[1]))
    out: list[_Entry] = []
    for j, e in enumerate(ranked):
        while pending and pending[0][0] > disk_local[j]:
            _, i = pending.pop(0)
            out.append(_Entry(new[i].symbol, e.score))
        out.append(e)
    out += [_Entry(new[i].symbol, ranked[-1].score if ranked else s) for s, i in pending]
    return out
