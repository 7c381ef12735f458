"""The contrastive losses: GTE's q->d-only setting is InfoNCE; invariances; a direct oracle of eq. 2."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codesearch.embed import mean_pool
from trainer.config import DIRECTIONS
from trainer.loss import gte_loss, info_nce


def unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 9), dim=st.integers(2, 16), negs=st.integers(0, 10),
       temperature=st.sampled_from([0.01, 0.05, 1.0]), seed=st.integers(0, 10_000))
def test_gte_q2d_only_equals_info_nce(batch, dim, negs, temperature, seed):
    q, d, n = unit(batch, dim, seed=seed), unit(batch, dim, seed=seed + 1), unit(negs, dim, seed=seed + 2)
    owner = torch.randint(0, batch, (negs,), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(gte_loss(q, d, temperature, ("q2d",), n, owner), info_nce(q, d, temperature, n))
    torch.testing.assert_close(gte_loss(q, d, temperature, ("q2d",)), info_nce(q, d, temperature))


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(2, 8), negs_per_row=st.integers(0, 2), seed=st.integers(0, 10_000),
       directions=st.sampled_from([DIRECTIONS, ("q2d", "d2q"), ("q2d", "q2q"), ("q2d", "d2d")]))
def test_gte_is_invariant_under_permuting_pairs(batch, negs_per_row, seed, directions):
    q, d = unit(batch, 8, seed=seed), unit(batch, 8, seed=seed + 1)
    n = unit(batch * negs_per_row, 8, seed=seed + 2)
    owner = torch.arange(batch).repeat(negs_per_row)
    perm = torch.randperm(batch, generator=torch.Generator().manual_seed(seed))
    inverse = torch.argsort(perm)  # new row of each old row
    neg_perm = torch.randperm(len(n), generator=torch.Generator().manual_seed(seed + 3))
    before = gte_loss(q, d, 0.05, directions, n, owner)
    after = gte_loss(q[perm], d[perm], 0.05, directions, n[neg_perm], inverse[owner[neg_perm]])
    torch.testing.assert_close(before, after)


def test_gte_matches_the_paper_formula_written_out():
    batch, t = 4, 0.1
    q, d, n = unit(batch, 6, seed=1), unit(batch, 6, seed=2), unit(2, 6, seed=3)
    owner = torch.tensor([0, 2])
    docs = torch.cat([d, n])

    def s(a, b):
        return math.exp(float(a @ b) / t)

    total = 0.0
    for i in range(batch):
        z = sum(s(q[i], docs[j]) for j in range(len(docs)))
        z += sum(s(q[i], q[j]) for j in range(batch) if j != i)
        z += sum(s(q[j], d[i]) for j in range(batch))
        own = {i} | {batch + m for m in range(len(n)) if int(owner[m]) == i}
        z += sum(s(d[i], docs[j]) for j in range(len(docs)) if j not in own)
        total += -math.log(s(q[i], d[i]) / z)
    got = gte_loss(q, d, t, DIRECTIONS, n, owner)
    assert float(got) == pytest.approx(total / batch, rel=1e-9)


def test_more_directions_never_lower_the_loss():
    q, d = unit(6, 8, seed=5), unit(6, 8, seed=6)
    for k in range(1, 4):
        for extra in itertools.combinations(DIRECTIONS[1:], k):
            assert gte_loss(q, d, 0.05, ("q2d", *extra)) >= info_nce(q, d, 0.05)


def test_self_similarity_is_masked():
    """Identical queries would give q2q = exp(1/t) for i == i if it were not masked: loss stays finite."""
    q = unit(3, 4, seed=7)
    loss = gte_loss(q, q.clone(), 0.01)
    assert torch.isfinite(loss)


def test_directions_are_checked():
    q = unit(2, 4, seed=8)
    with pytest.raises(ValueError):
        gte_loss(q, q, 0.05, ("q2q",))


@settings(max_examples=15, deadline=None)
@given(pad=st.integers(1, 5), seed=st.integers(0, 1000))
def test_loss_is_invariant_under_padding(pad, seed):
    """Embeddings come from mean_pool, which ignores padding: so does the loss."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 4, 5, 8, generator=g)  # (query/doc, batch, seq, dim)
    mask = torch.ones(2, 4, 5, dtype=torch.long)
    mask[:, 1, 3:] = 0
    padded = torch.cat([hidden, 100 * torch.randn(2, 4, pad, 8, generator=g)], dim=2)
    padded_mask = torch.cat([mask, torch.zeros(2, 4, pad, dtype=torch.long)], dim=2)

    def loss(h, m):
        qe = torch.nn.functional.normalize(mean_pool(h[0], m[0]), dim=-1)
        de = torch.nn.functional.normalize(mean_pool(h[1], m[1]), dim=-1)
        return gte_loss(qe, de, 0.05)

    torch.testing.assert_close(loss(hidden, mask), loss(padded, padded_mask))
