"""Contrastive losses on embeddings (no model inside, open_clip style).

Inputs everywhere: ``q`` (batch, dim) query embeddings and ``d`` (batch, dim) document embeddings where
``d[i]`` is the positive of ``q[i]``; optionally ``negatives`` (m, dim), extra documents (mined hard
negatives), with ``negative_owner`` (m,) naming the row each one was mined for. Similarities are dot
products, i.e. cosine for the L2-normalised vectors the encoder returns, divided by ``temperature``.

Relations (checked by tests/trainer/test_train_loss.py):

* ``gte_loss(q, d, t, directions=("q2d",)) == info_nce(q, d, t)``, also with negatives;
* both are invariant under permuting the (query, document) pairs together (with their negatives);
* the GTE partition function only grows with more directions, so ``gte_loss >= info_nce``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import DIRECTIONS

__all__ = ["gte_loss", "info_nce"]


def _documents(d: torch.Tensor, negatives: torch.Tensor | None) -> torch.Tensor:
    """Positives then negatives: (batch + m, dim)."""
    return d if negatives is None or negatives.numel() == 0 else torch.cat([d, negatives], dim=0)


def info_nce(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.01,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with in-batch negatives (MultipleNegativesRankingLoss).

    loss = mean_i [ -s(q_i, d_i)/t + log sum_j exp(s(q_i, d_j)/t) ], j over all documents of the batch
    (every positive and every extra negative).

    Args:
        q: Queries, (batch, dim).
        d: Positive documents, (batch, dim).
        temperature: Softmax temperature.
        negatives: Extra documents, (m, dim), negatives for every query.

    Returns:
        The scalar loss.
    """
    docs = _documents(d, negatives)  # (batch + m, dim)
    logits = q @ docs.T / temperature  # (batch, batch + m)
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, labels)


def gte_loss(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.01,
             directions: tuple[str, ...] = DIRECTIONS, negatives: torch.Tensor | None = None,
             negative_owner: torch.Tensor | None = None) -> torch.Tensor:
    """The improved contrastive loss of GTE (Li et al. 2023, eq. 2): one partition function per query.

    For pair i, with s(x, y) = x . y / t::

        Z_i = sum_j exp s(q_i, d_j)            (q2d: every document, extra negatives included)
            + sum_{j != i} exp s(q_i, q_j)     (q2q)
            + sum_j exp s(q_j, d_i)            (d2q: every query against the positive)
            + sum_{j not own} exp s(d_i, d_j)  (d2d: documents other than d_i and d_i's own negatives)
        loss = mean_i [ log Z_i - s(q_i, d_i) ]

    The four blocks are concatenated per row and reduced by one ``logsumexp``; excluded entries are
    masked with ``-inf``. Only the selected ``directions`` enter Z (``("q2d",)`` is InfoNCE). As in
    sentence-transformers' joint partition, the d2q block repeats the positive term.

    Args:
        q: Queries, (batch, dim).
        d: Positive documents, (batch, dim).
        temperature: Softmax temperature (GTE uses 0.01).
        directions: Subset of ``("q2d", "q2q", "d2q", "d2d")``; must contain "q2d".
        negatives: Extra documents (hard negatives), (m, dim).
        negative_owner: Row index each negative belongs to, (m,) int64; needed for the d2d mask. Without
            it every negative counts as a negative of every row.

    Returns:
        The scalar loss.
    """
    if "q2d" not in directions or any(x not in DIRECTIONS for x in directions):
        raise ValueError(f"directions must contain 'q2d' and be among {DIRECTIONS}, got {directions}")
    batch = q.shape[0]
    rows = torch.arange(batch, device=q.device)
    docs = _documents(d, negatives)  # (batch + m, dim)
    blocks = [q @ docs.T / temperature]  # q2d: (batch, batch + m)
    positive = blocks[0][rows, rows]  # (batch,)
    if "q2q" in directions:
        qq = q @ q.T / temperature  # (batch, batch)
        blocks.append(qq.masked_fill(torch.eye(batch, dtype=torch.bool, device=q.device), float("-inf")))
    if "d2q" in directions:
        blocks.append((q @ d.T).T / temperature)  # row i: s(q_j, d_i), (batch, batch)
    if "d2d" in directions:
        dd = d @ docs.T / temperature  # (batch, batch + m)
        own = torch.zeros_like(dd, dtype=torch.bool)
        own[rows, rows] = True
        if negatives is not None and negative_owner is not None and negatives.numel():
            cols = torch.arange(batch, docs.shape[0], device=q.device)
            own[negative_owner.to(q.device), cols] = True
        blocks.append(dd.masked_fill(own, float("-inf")))
    log_z = torch.logsumexp(torch.cat(blocks, dim=1), dim=1)  # (batch,)
    return (log_z - positive).mean()


def contrastive_loss(name: str, q: torch.Tensor, d: torch.Tensor, temperature: float,
                     directions: tuple[str, ...] = DIRECTIONS, negatives: torch.Tensor | None = None,
                     negative_owner: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch on ``TrainConfig.loss`` ("gte" or "info_nce")."""
    if name == "info_nce":
        return info_nce(q, d, temperature, negatives)
    if name == "gte":
        return gte_loss(q, d, temperature, directions, negatives, negative_owner)
    raise ValueError(f"unknown loss {name!r}")
