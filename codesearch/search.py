"""Searcher: Query -> candidates from the vector and lexical sides -> filters -> fused Hit list."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from .config import Settings, load_settings
from .embed import Embedder, load_embedder, read_model_info
from .errors import IndexStale, ModelError, UsageError
from .index import Filters, IndexReader, find_index_dir, fts_columns
from .lexical import query_tokens
from .query import Query, asked_roles, normalize_kind, normalize_language, parse
from .store import VectorStore, as_store
from .types import Hit, Symbol

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


def find_repo(start: Path, settings: Settings | None = None) -> Path | None:
    """The nearest directory at or above ``start`` that holds an index (``.codesearch/``)."""
    start = start.resolve()
    for cand in (start, *start.parents):
        if (cand / ".codesearch").is_dir():
            return cand
    return None


def rrf(ranked_lists: Sequence[Sequence[int]], k: int, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal-rank fusion: sum over lists of weight / (k + rank), rank 1-based."""
    scores: dict[int, float] = {}
    for i, ranked in enumerate(ranked_lists):
        w = 1.0 if weights is None else weights[i]
        for rank, uid in enumerate(ranked, 1):
            scores[uid] = scores.get(uid, 0.0) + w / (k + rank)
    return scores


def weighted_fusion(sides: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float],
                    norms: Sequence[str] | None = None) -> dict[int, float]:
    """Weighted sum of per-side normalised scores; a unit absent from a side scores 0 there.

    Args:
        sides: Per side, (unit id, score) candidates, best first.
        weights: Per side weight.
        norms: Per side normalisation: "minmax" ((s - min) / (max - min)) or "max" (s / max, for
            scores that are >= 0 such as BM25). Default: min-max for every side.

    Returns:
        Fused score per unit id.
    """
    out: dict[int, float] = {}
    for i, (pairs, w) in enumerate(zip(sides, weights, strict=True)):
        if not pairs:
            continue
        norm = "minmax" if norms is None else norms[i]
        hi = max(s for _, s in pairs)
        lo = min(s for _, s in pairs) if norm == "minmax" else 0.0
        for uid, s in pairs:
            out[uid] = out.get(uid, 0.0) + w * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    return out


#: The ``coverage`` fusion scales each lexical candidate's normalised BM25 score by its query coverage
#: to this power (chosen with bench/paraphrase.py on the tune split, docs/benchmarks.md).
COVERAGE_POWER = 1.0
#: The ``adaptive`` fusion's semantic weight where the lexical side matches strongly; where it matches
#: weakly the weight is ``settings.semantic_weight`` (chosen with bench/paraphrase.py --tune).
ADAPTIVE_STRONG_WEIGHT = 0.6
#: The lexical strength (:func:`lexical_strength`) below which the lexical side counts as weak and above
#: which it counts as strong; the semantic weight moves linearly in between.
ADAPTIVE_STRENGTH = (1.0, 1.4)
_SUFFIXES = ("ing", "ed", "es", "s")
#: Most units whose lexical terms one warm searcher keeps (a few hundred bytes each).
_TERMS_CACHE = 50_000


def _stem(token: str) -> str:
    """A crude suffix strip so that ``parse``/``parsing``/``parsed``/``parses`` match as one word."""
    for suf in _SUFFIXES:
        if token.endswith(suf) and len(token) - len(suf) >= 3:
            token = token[: -len(suf)]
            break
    return token[:-1] if token.endswith("e") and len(token) > 3 else token


class TermStatistics(Protocol):
    """What :func:`term_weights` needs of an index (IndexReader and LocalStore have it)."""

    def count_units(self) -> int: ...  # noqa: D102

    def document_frequencies(self, terms: Sequence[str]) -> dict[str, int]: ...  # noqa: D102


def term_weights(text: str, reader: TermStatistics) -> dict[str, float]:
    """BM25's idf, on the index's document frequencies, of each distinct lexical token of a query."""
    terms = list(dict.fromkeys(query_tokens(text)))
    if not terms:
        return {}
    n = reader.count_units()
    df = reader.document_frequencies(terms)
    return {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}


def unit_terms(symbol: Symbol) -> frozenset[str]:
    """The (crudely stemmed) lexical tokens of a unit: what :func:`coverage` looks for."""
    return frozenset(_stem(t) for column in fts_columns(symbol) for t in column.split())


def coverage(weights: Mapping[str, float], symbol: Symbol, terms: frozenset[str] | None = None) -> float:
    """How much of the query a unit contains: the idf-weighted fraction of its tokens found in the unit.

    Args:
        weights: :func:`term_weights` of the query.
        symbol: The unit; its tokens are those the lexical index holds (qualified name, doc, code).
        terms: The unit's :func:`unit_terms` if already known (a warm searcher caches them).

    Returns:
        A value in [0, 1]: 1 when the unit has every query token, near 0 when it shares only common ones.
    """
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    have = terms if terms is not None else unit_terms(symbol)
    return sum(w for t, w in weights.items() if _stem(t) in have) / total


def lexical_strength(lex: Sequence[tuple[int, float]], weights: Mapping[str, float]) -> float:
    """How strongly the lexical side matches a query: its top BM25 score over the sum of the query's idf.

    A query that shares its rare words with a unit's name and code (a doc sentence) scores above 1 (the
    name column weighs 3); a paraphrase that shares a common word or two scores well below.

    Args:
        lex: Lexical candidates (id, BM25), best first.
        weights: :func:`term_weights` of the query.
    """
    total = sum(weights.values())
    return lex[0][1] / total if lex and total > 0 else 0.0


def adaptive_weight(settings: Settings, strength: float) -> float:
    """The ``adaptive`` fusion's semantic weight for a query whose :func:`lexical_strength` is ``strength``.

    ``settings.semantic_weight`` when the lexical side is weak (at or below ``ADAPTIVE_STRENGTH[0]``),
    :data:`ADAPTIVE_STRONG_WEIGHT` when it is strong (at or above ``ADAPTIVE_STRENGTH[1]``), linear between.
    """
    lo, hi = ADAPTIVE_STRENGTH
    t = min(1.0, max(0.0, (strength - lo) / (hi - lo)))
    return settings.semantic_weight + (ADAPTIVE_STRONG_WEIGHT - settings.semantic_weight) * t


def fuse(sem: Sequence[tuple[int, float]], lex: Sequence[tuple[int, float]],
         settings: Settings, strength: Mapping[int, float] | None = None,
         lexical: float | None = None) -> list[tuple[int, float]]:
    """Hybrid ranking of the two sides' (id, score) candidates with the configured fusion, best first.

    Args:
        sem: Semantic candidates (id, cosine), best first.
        lex: Lexical candidates (id, BM25), best first.
        settings: Fusion settings (``fusion``, ``semantic_weight``, ``rrf_k``).
        strength: For the ``coverage`` fusion, each lexical candidate's :func:`coverage` of the query;
            its min-max-normalised BM25 score is scaled by it (to :data:`COVERAGE_POWER`), so that a
            lexical match on a few common words moves the ranking little. None: no scaling.
        lexical: For the ``adaptive`` fusion, the query's :func:`lexical_strength`: the weighted sum of
            min-max-normalised scores uses :func:`adaptive_weight` as the semantic weight. None: the
            plain weighted fusion at ``semantic_weight``.

    Ties break by id, so the order is deterministic.
    """
    w = settings.semantic_weight
    if settings.fusion == "adaptive" and lexical is not None:
        w = adaptive_weight(settings, lexical)
    if settings.fusion == "rrf":
        fused = rrf([[u for u, _ in sem], [u for u, _ in lex]], settings.rrf_k, (2 * w, 2 - 2 * w))
    else:
        fused = weighted_fusion([sem, lex], (w, 1.0 - w))
        if settings.fusion == "coverage" and strength is not None and lex:
            # Replace the lexical side's share by the same share scaled by each unit's coverage.
            hi = max(s for _, s in lex)
            lo = min(s for _, s in lex)
            for uid, s in lex:
                norm = (s - lo) / (hi - lo) if hi > lo else 1.0
                scale = strength.get(uid, 0.0) ** COVERAGE_POWER
                fused[uid] -= (1.0 - w) * norm * (1.0 - scale)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def preferred_roles(q: Query) -> frozenset[str] | None:
    """The roles the role prior ranks at full score: implementation, or the roles the text asks for
    ("test for ..."); None when a ``role:`` filter already chose the roles."""
    if q.roles:
        return None
    asked = asked_roles(q.text)
    return frozenset(asked) if asked else frozenset({"implementation"})


def apply_role_prior(scored: Sequence[tuple[K, float]], role_of: Callable[[K], str], prefer: frozenset[str],
                     factor: float) -> list[tuple[K, float]]:
    """Scale the scores of units whose role is not in ``prefer`` by ``factor`` (in (0, 1]) and re-rank.

    A negative score (cosine) is divided instead, so it too moves down. Ties keep their order.
    """
    out = []
    for i, (key, score) in enumerate(scored):
        if role_of(key) not in prefer:
            score = score * factor if score >= 0 else score / factor
        out.append((i, key, score))
    out.sort(key=lambda t: (-t[2], t[0]))
    return [(key, score) for _, key, score in out]


@dataclass(frozen=True)
class ResolvedQuery:
    """A query with its defaults applied: what both the Searcher and the LSP overlay rank."""

    query: Query
    text: str
    k: int
    mode: str
    filters: Filters


def resolve(query: str | Query, settings: Settings, k: int | None = None, mode: str | None = None,
            languages: Sequence[str] = (), paths: Sequence[str] = (), kinds: Sequence[str] = (),
            repos: Sequence[str] = ()) -> ResolvedQuery:
    """Parse ``query`` and merge the explicit filters and defaults (see :meth:`Searcher.search`).

    Raises:
        UsageError: unknown mode, language or kind, or nothing to search for.
    """
    q = parse(query) if isinstance(query, str) else query
    mode = mode or settings.mode
    if mode not in ("hybrid", "semantic", "lexical"):
        raise UsageError(f"unknown mode {mode!r} (choose from hybrid, semantic, lexical)")
    filters = Filters(
        languages=tuple(dict.fromkeys([*q.languages, *(normalize_language(x) for x in languages)])),
        kinds=tuple(dict.fromkeys([*q.kinds, *(normalize_kind(x) for x in kinds)])),
        paths=tuple(dict.fromkeys([*q.paths, *paths])),
        roles=q.roles,
        not_roles=q.not_roles,
        repos=tuple(dict.fromkeys([*q.repos, *repos])),
    )
    text = q.ranking_text
    if not text:
        raise UsageError("empty query")
    return ResolvedQuery(q, text, k or settings.k, mode, filters)


class Searcher:
    """Answers queries against one index; safe to reuse across queries (the daemon keeps one warm).

    Args:
        reader: The open index: a VectorStore (store.py), or an IndexReader (wrapped in a LocalStore).
        settings: Settings (k, mode, oversample, fusion constants, model override).
        embedder: Query encoder; None loads the index's model on first semantic query.
    """

    def __init__(self, reader: IndexReader | VectorStore, settings: Settings, embedder: Embedder | None = None) -> None:
        self.reader = reader
        self.store = as_store(reader)
        self.settings = settings
        self._embedder = embedder
        self._lock = threading.Lock()
        #: unit id -> unit_terms: a unit's text never changes under its id (an edit makes a new id)
        self._unit_terms: dict[int, frozenset[str]] = {}
        self._pool: ThreadPoolExecutor | None = None
        if embedder is not None and embedder.info.key != self.store.meta.get("model_key"):
            raise IndexStale(f"index was built with model {self.store.meta.get('model_key')}, "
                             f"but the query encoder is {embedder.info.key}; run `codesearch index` to rebuild")

    @classmethod
    def open(cls, repo: Path | str, settings: Settings | None = None, embedder: Embedder | None = None) -> Searcher:
        """Open the index of ``repo`` (settings default to the repository's)."""
        repo = Path(repo).expanduser().resolve()
        settings = settings or load_settings(repo)
        return cls(IndexReader(find_index_dir(repo, settings.index_dir)), settings, embedder)

    @property
    def embedder(self) -> Embedder:
        """The query encoder: the index's own model unless settings name another (which must match)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self._load_embedder()
            return self._embedder

    def _load_embedder(self) -> Embedder:
        meta = self.store.meta
        wanted = self.settings.model
        path = wanted or meta.get("model_path")
        if path is not None and not Path(path).is_dir():
            path = wanted  # the index's model moved (a reinstall): the configured one, by default the shipped one
        runtime = self.settings.runtime
        if runtime == "auto":
            # Queries use the runtime the index was built with: an index of fp32 vectors keeps working.
            runtime = "onnx" if "+int8@" in str(meta.get("model_key", "")) else "auto"
        try:
            info = read_model_info(path, self.settings.max_length, runtime)
        except ModelError as exc:
            raise IndexStale(f"the index's model is not available ({exc}); run `codesearch index` to rebuild") \
                from None
        if info.key != meta.get("model_key"):
            raise IndexStale(f"index was built with model {meta.get('model_key')}, but the configured model is "
                             f"{info.key}; run `codesearch index` to rebuild")
        return load_embedder(info.path, max_length=int(meta.get("max_length", "256")), batch_size=16,
                             threads=self.settings.threads or 1, runtime=runtime)

    def _terms_of(self, uid: int, symbol: Symbol) -> frozenset[str]:
        terms = self._unit_terms.get(uid)
        if terms is None:
            if len(self._unit_terms) >= _TERMS_CACHE:
                self._unit_terms.clear()
            terms = self._unit_terms[uid] = unit_terms(symbol)
        return terms

    def search(self, query: str | Query, k: int | None = None, mode: str | None = None,
               languages: Sequence[str] = (), paths: Sequence[str] = (), kinds: Sequence[str] = (),
               role_prior: float | None = None, repos: Sequence[str] = ()) -> list[Hit]:
        """Rank units for a query.

        Args:
            query: Query text (parsed for ``lang:``/``path:``/``kind:``/quotes) or a Query.
            k: Number of results (default: settings.k).
            mode: "hybrid", "semantic" or "lexical" (default: settings.mode).
            languages: Extra language filters (as ``lang:``).
            paths: Extra path filters (as ``path:``).
            kinds: Extra kind filters (as ``kind:``).
            role_prior: Override of ``settings.role_prior`` (1: rank without the prior).
            repos: Extra repository filters (as ``repo:``).

        Returns:
            Up to k hits, best first. Filters apply before ranking, so k hits come back whenever k
            units pass the filters (and, for lexical-only ranking, match the query).
        """
        r = resolve(query, self.settings, k, mode, languages, paths, kinds, repos)
        store = self.store
        q, text, k, mode, filters = r.query, r.text, r.k, r.mode, r.filters
        need_vectors, need_lexical = mode != "lexical", mode != "semantic"
        embedder = self.embedder if need_vectors else None
        depth = k * self.settings.oversample
        factor = self.settings.role_prior if role_prior is None else role_prior
        prefer = preferred_roles(q) if factor < 1.0 else None
        # With a prior, every mode ranks `depth` candidates, so units it moves down make room.
        side_k = depth if mode == "hybrid" or prefer is not None else k
        with store.snapshot():
            allowed = store.allowed_ids(filters)
            must = q.phrases
            if must:
                # Quoted phrases are a lexical must-match: restrict every side to units containing them.
                matching = store.lexical_search(" ".join(must), 1 << 30, allowed, must=must)
                import numpy as np

                allowed = np.asarray([uid for uid, _ in matching], dtype=np.int64)
            # The ``adaptive`` and ``coverage`` fusions weigh the query's terms; a store without term
            # statistics (the Milvus backend) fuses without them (see below).
            weigh = mode == "hybrid" and self.settings.fusion in ("coverage", "adaptive") \
                and hasattr(store, "document_frequencies")

            def lexical_side() -> tuple[list[tuple[int, float]], dict[str, float] | None]:
                found = store.lexical_search(text, side_k, allowed) if need_lexical else []
                return found, (term_weights(text, store) if weigh and found else None)

            pending = None
            if need_vectors and need_lexical and getattr(store, "concurrent_reads", False):
                # The lexical side (SQLite) runs while this thread encodes the query and searches FAISS.
                pending = self._side_pool().submit(lexical_side)
            try:
                sem = store.vector_search(embedder.encode([text], kind="query")[0], side_k, allowed) \
                    if embedder is not None else []
            finally:
                lex, weights = pending.result() if pending is not None else lexical_side()
            sem_rank = {uid: (r, s) for r, (uid, s) in enumerate(sem, 1)}
            lex_rank = {uid: (r, s) for r, (uid, s) in enumerate(lex, 1)}
            if mode == "semantic":
                scored = [(uid, s) for uid, s in sem]
            elif mode == "lexical":
                scored = [(uid, s) for uid, s in lex]
            else:
                strength, lexical = None, None
                # Without term weights (no lexical hit, or the Milvus backend) the fusion runs without the
                # coverage scaling and, for the adaptive fusion, at the weak-match weight (semantic_weight).
                if weights is not None:
                    if self.settings.fusion == "adaptive":
                        lexical = lexical_strength(lex, weights)
                    else:
                        strength = {uid: coverage(weights, sym, self._terms_of(uid, sym))
                                    for uid, sym in store.symbols([uid for uid, _ in lex]).items()}
                scored = fuse(sem, lex, self.settings, strength, lexical)
            if prefer is not None:
                roles = store.roles([uid for uid, _ in scored])
                scored = apply_role_prior(scored, lambda uid: roles.get(uid, "implementation"), prefer, factor)
            scored = scored[:k]
            symbols = store.symbols([uid for uid, _ in scored])
            repo_of = store.repos([uid for uid, _ in scored])
        hits = []
        for uid, score in scored:
            if uid not in symbols:
                continue
            sr, ss = sem_rank.get(uid, (None, None))
            lr, ls = lex_rank.get(uid, (None, None))
            hits.append(Hit(symbols[uid], float(score), sr, ss, lr, ls, unit_id=uid, repo=repo_of.get(uid)))
        return hits

    def _side_pool(self) -> ThreadPoolExecutor:
        """The one worker thread that runs a hybrid query's lexical side (started on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codesearch-lexical")
            return self._pool

    def close(self) -> None:
        """Close the index (and the lexical side's thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.store.close()
