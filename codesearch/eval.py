"""Retrieval metrics: Recall@k, MRR@k and nDCG@k over ranked lists of document ids.

Pure functions with no heavy imports, shared by the tests, the trainer and ``bench/quality.py``.

Conventions used by every function here:

* ``ranked`` maps a query id to the ranked list of document ids the system returned, best first.
  Duplicate ids in a list count once, at their first position.
* ``relevant`` maps a query id to the set of document ids that are relevant to it (binary relevance).
* Scores are macro averages over the query ids of ``relevant``; a query with no entry in ``ranked`` counts
  as an empty ranking (it scores 0), a query with an empty relevant set is skipped, and query ids found only
  in ``ranked`` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence, Set
from typing import TypeVar

__all__ = [
    "evaluate",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_metrics",
    "recall_at_k",
]

Q = TypeVar("Q", bound=Hashable)
D = TypeVar("D", bound=Hashable)


def _dedupe(ids: Iterable[D]) -> list[D]:
    """Return ``ids`` without repeats, keeping each id's first position."""
    seen: set[D] = set()
    out: list[D] = []
    for doc in ids:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _recall_one(ranking: Sequence[D], rel: Set[D], k: int) -> float:
    hits = sum(1 for doc in _dedupe(ranking)[:k] if doc in rel)
    return hits / len(rel)


def _rr_one(ranking: Sequence[D], rel: Set[D], k: int) -> float:
    for rank, doc in enumerate(_dedupe(ranking)[:k], start=1):
        if doc in rel:
            return 1.0 / rank
    return 0.0


def _ndcg_one(ranking: Sequence[D], rel: Set[D], k: int) -> float:
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, doc in enumerate(_dedupe(ranking)[:k], start=1)
        if doc in rel
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
    return dcg / ideal


def _macro(
    ranked: Mapping[Q, Sequence[D]],
    relevant: Mapping[Q, Set[D]],
    k: int,
    one: Callable[[Sequence[D], Set[D], int], float],
) -> float:
    _check_k(k)
    scores = [
        one(ranked.get(qid, ()), rel, k)
        for qid, rel in relevant.items()
        if rel
    ]
    return sum(scores) / len(scores) if scores else 0.0


def recall_at_k(ranked: Mapping[Q, Sequence[D]], relevant: Mapping[Q, Set[D]], k: int) -> float:
    """Macro-averaged Recall@k.

    For one query, Recall@k = |relevant ∩ top-k| / |relevant|. With exactly one relevant document per
    query (the CodeSearchNet setting) this is the fraction of queries whose target is in the top k
    ("success@k", "hit rate@k").

    Args:
        ranked: ``{qid: [doc ids, best first]}``.
        relevant: ``{qid: {relevant doc ids}}``; queries with an empty set are skipped.
        k: Cut-off, at least 1.

    Returns:
        The mean over queries, in [0, 1]; 0.0 when there is no query with a relevant document.
    """
    return _macro(ranked, relevant, k, _recall_one)


def mrr_at_k(ranked: Mapping[Q, Sequence[D]], relevant: Mapping[Q, Set[D]], k: int) -> float:
    """Mean reciprocal rank, truncated at k (MRR@k).

    For one query, RR@k = 1 / r where r is the 1-based rank of the first relevant document if r <= k,
    else 0.

    Args:
        ranked: ``{qid: [doc ids, best first]}``.
        relevant: ``{qid: {relevant doc ids}}``; queries with an empty set are skipped.
        k: Cut-off, at least 1.

    Returns:
        The mean of RR@k over queries, in [0, 1]; 0.0 when there is no query with a relevant document.
    """
    return _macro(ranked, relevant, k, _rr_one)


def ndcg_at_k(ranked: Mapping[Q, Sequence[D]], relevant: Mapping[Q, Set[D]], k: int) -> float:
    """Macro-averaged normalised discounted cumulative gain with binary relevance (nDCG@k).

    For one query, DCG@k = sum over ranks r <= k holding a relevant document of 1 / log2(r + 1), and
    nDCG@k = DCG@k / IDCG@k where IDCG@k = sum_{r=1}^{min(|relevant|, k)} 1 / log2(r + 1) is the DCG of
    a perfect ranking.

    Args:
        ranked: ``{qid: [doc ids, best first]}``.
        relevant: ``{qid: {relevant doc ids}}``; queries with an empty set are skipped.
        k: Cut-off, at least 1.

    Returns:
        The mean over queries, in [0, 1]; 0.0 when there is no query with a relevant document.
    """
    return _macro(ranked, relevant, k, _ndcg_one)


def per_query_metrics(
    ranked: Mapping[Q, Sequence[D]],
    relevant: Mapping[Q, Set[D]],
    k: int = 10,
) -> dict[Q, dict[str, float]]:
    """Per-query figures, for error analysis.

    Args:
        ranked: ``{qid: [doc ids, best first]}``.
        relevant: ``{qid: {relevant doc ids}}``; queries with an empty set are skipped.
        k: Cut-off for the reciprocal rank and nDCG, at least 1.

    Returns:
        ``{qid: {"rank": r, "rr": RR@k, "ndcg": nDCG@k}}`` where ``rank`` is the 1-based rank of the first
        relevant document in the whole ranking, or 0 if none is returned.
    """
    _check_k(k)
    out: dict[Q, dict[str, float]] = {}
    for qid, rel in relevant.items():
        if not rel:
            continue
        ranking = _dedupe(ranked.get(qid, ()))
        first = next((i for i, doc in enumerate(ranking, start=1) if doc in rel), 0)
        out[qid] = {
            "rank": float(first),
            "rr": _rr_one(ranking, rel, k),
            "ndcg": _ndcg_one(ranking, rel, k),
        }
    return out


def evaluate(
    ranked: Mapping[Q, Sequence[D]],
    relevant: Mapping[Q, Set[D]],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """All metrics at each cut-off, macro-averaged over queries.

    Args:
        ranked: ``{qid: [doc ids, best first]}``.
        relevant: ``{qid: {relevant doc ids}}``; queries with an empty set are skipped.
        ks: Cut-offs, each at least 1.

    Returns:
        ``{"recall@k": ..., "mrr@k": ..., "ndcg@k": ...}`` for every k in ``ks`` (see :func:`recall_at_k`,
        :func:`mrr_at_k`, :func:`ndcg_at_k`), plus ``"queries"``: the number of queries scored.
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
        out[f"mrr@{k}"] = mrr_at_k(ranked, relevant, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, relevant, k)
    out["queries"] = float(sum(1 for rel in relevant.values() if rel))
    return out
