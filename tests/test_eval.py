"""Tests for codesearch.eval: hand-computed cases and properties of the metrics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codesearch.eval import evaluate, mrr_at_k, ndcg_at_k, per_query_metrics, recall_at_k

# Three queries, one target each (the CodeSearchNet setting): ranks 1, 3 and "not returned".
RANKED = {
    "q1": ["a", "b", "c"],
    "q2": ["x", "y", "b", "z"],
    "q3": ["p", "q"],
}
RELEVANT = {"q1": {"a"}, "q2": {"b"}, "q3": {"r"}}


def test_recall_hand_computed() -> None:
    assert recall_at_k(RANKED, RELEVANT, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 3)


def test_mrr_hand_computed() -> None:
    assert mrr_at_k(RANKED, RELEVANT, 10) == pytest.approx((1 + 1 / 3 + 0) / 3)
    # The rank-3 hit falls outside k=2 and counts 0.
    assert mrr_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)


def test_ndcg_hand_computed() -> None:
    # q1: 1/log2(2) = 1; q2: 1/log2(4) = 0.5; q3: 0.
    assert ndcg_at_k(RANKED, RELEVANT, 10) == pytest.approx((1 + 0.5 + 0) / 3)


def test_multiple_relevant() -> None:
    ranked = {"q": ["a", "x", "b", "y"]}
    relevant = {"q": {"a", "b", "c"}}
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, relevant, 3) == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(dcg / idcg)
    # With k=2 the ideal ranking holds only two relevant documents.
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_duplicates_count_once() -> None:
    ranked = {"q": ["a", "a", "b"]}
    relevant = {"q": {"a", "b"}}
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(1.0)


def test_missing_and_empty_queries() -> None:
    # A query with no ranking scores 0; an empty relevant set is skipped; extra ranked ids are ignored.
    ranked = {"q1": ["a"], "extra": ["z"]}
    relevant: dict[str, set[str]] = {"q1": {"a"}, "q2": {"b"}, "q3": set()}
    assert mrr_at_k(ranked, relevant, 10) == pytest.approx(0.5)
    assert evaluate(ranked, relevant)["queries"] == 2
    assert recall_at_k({}, {}, 1) == 0.0


def test_evaluate_keys_and_values() -> None:
    out = evaluate(RANKED, RELEVANT, ks=(1, 10))
    assert set(out) == {
        "recall@1", "mrr@1", "ndcg@1", "recall@10", "mrr@10", "ndcg@10", "queries",
    }
    assert out["mrr@10"] == pytest.approx(mrr_at_k(RANKED, RELEVANT, 10))
    assert out["recall@1"] == out["mrr@1"] == out["ndcg@1"]


def test_per_query() -> None:
    pq = per_query_metrics(RANKED, RELEVANT, k=2)
    assert pq["q1"] == {"rank": 1.0, "rr": 1.0, "ndcg": 1.0}
    assert pq["q2"]["rank"] == 3.0 and pq["q2"]["rr"] == 0.0
    assert pq["q3"]["rank"] == 0.0


def test_bad_k() -> None:
    with pytest.raises(ValueError):
        recall_at_k(RANKED, RELEVANT, 0)


docs = st.integers(min_value=0, max_value=30)
rankings = st.dictionaries(
    st.integers(min_value=0, max_value=8),
    st.lists(docs, max_size=15),
    max_size=8,
)
relevants = st.dictionaries(
    st.integers(min_value=0, max_value=8),
    st.sets(docs, max_size=5),
    max_size=8,
)
ks = st.integers(min_value=1, max_value=20)


@given(rankings, relevants, ks)
def test_metrics_in_unit_interval(
    ranked: dict[int, list[int]], relevant: dict[int, set[int]], k: int
) -> None:
    for value in (
        recall_at_k(ranked, relevant, k),
        mrr_at_k(ranked, relevant, k),
        ndcg_at_k(ranked, relevant, k),
    ):
        assert 0.0 <= value <= 1.0 + 1e-12


@given(relevants, ks)
def test_perfect_ranking_scores_one(relevant: dict[int, set[int]], k: int) -> None:
    relevant = {q: rel for q, rel in relevant.items() if rel}
    if not relevant:
        return
    # Relevant documents first (in any order), then irrelevant ones.
    ranked = {q: sorted(rel) + [100, 101] for q, rel in relevant.items()}
    assert mrr_at_k(ranked, relevant, k) == pytest.approx(1.0)
    assert ndcg_at_k(ranked, relevant, k) == pytest.approx(1.0)
    if all(len(rel) <= k for rel in relevant.values()):
        assert recall_at_k(ranked, relevant, k) == pytest.approx(1.0)


@given(rankings, relevants, ks)
def test_monotone_in_k(ranked: dict[int, list[int]], relevant: dict[int, set[int]], k: int) -> None:
    assert recall_at_k(ranked, relevant, k) <= recall_at_k(ranked, relevant, k + 1) + 1e-12
    assert mrr_at_k(ranked, relevant, k) <= mrr_at_k(ranked, relevant, k + 1) + 1e-12
    # Recall@1 never exceeds MRR@k: a hit at rank 1 scores 1/|relevant| <= 1 in recall, 1 in MRR.
    assert recall_at_k(ranked, relevant, 1) <= mrr_at_k(ranked, relevant, k) + 1e-12
