"""Gradient caching (GradCache, Gao et al. 2021), so the contrastive batch is not capped by memory.

A contrastive loss couples every text of the batch, so a plain backward pass keeps the activations of
the whole batch. GradCache splits the step in three:

1. embed every chunk of texts without gradients, remembering the random state of each chunk;
2. compute the loss on the cached embeddings (leaf tensors) and backpropagate to the embeddings only;
3. re-embed each chunk with gradients, replaying its random state (same dropout masks), and backpropagate
   the chunk's cached embedding gradient into the model: ``(emb * grad).sum().backward()``.

Parameter gradients equal those of the uncached step (tests/trainer/test_train_gradcache.py); memory is
that of one chunk plus the (batch, dim) embeddings. The price is a second forward pass per chunk.
sentence-transformers' ``CachedMultipleNegativesRankingLoss`` does the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["RandomState", "cached_step", "chunked", "direct_step"]

#: One group of tokenised texts: {"input_ids": (n, seq), "attention_mask": (n, seq)}.
Inputs = dict[str, torch.Tensor]
#: Maps one chunk of inputs to embeddings (n, dim).
EmbedFn = Callable[[Inputs], torch.Tensor]
#: Maps the embeddings of every group (queries, documents, negatives...) to a scalar loss.
LossFn = Callable[[Sequence[torch.Tensor]], torch.Tensor]


class RandomState:
    """The CPU (and CUDA, when used) random state at construction, replayable with :meth:`replay`."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    @contextmanager
    def replay(self) -> Any:
        """Run the block with the saved random state, restoring the current one afterwards."""
        cpu, cuda = torch.get_rng_state(), None
        if self.cuda is not None:
            cuda = torch.cuda.get_rng_state(self.device)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda, self.device)


def chunked(inputs: Inputs, size: int) -> list[Inputs]:
    """Split a group into chunks of ``size`` rows, each trimmed to its own longest sequence.

    Trimming drops padding columns only (mean pooling ignores padding), so it saves compute without
    changing the embeddings beyond float rounding.

    Args:
        inputs: {"input_ids": (n, seq), "attention_mask": (n, seq)}.
        size: Rows per chunk (0 or >= n: one chunk).

    Returns:
        The chunks, in order.
    """
    n = inputs["input_ids"].shape[0]
    size = n if size <= 0 else size
    out: list[Inputs] = []
    for start in range(0, n, size):
        part = {k: v[start:start + size] for k, v in inputs.items()}
        width = int(part["attention_mask"].sum(dim=1).max().item()) if part["attention_mask"].numel() else 0
        out.append({k: v[:, :max(width, 1)] for k, v in part.items()})
    return out


def direct_step(embed: EmbedFn, groups: Sequence[Inputs], loss_fn: LossFn, chunk_size: int = 0) -> float:
    """The uncached step: embed every group with gradients, then one backward pass.

    Args:
        embed: Model forward (chunk -> (n, dim)).
        groups: Tokenised groups (queries, documents, optional negatives).
        loss_fn: Loss on the list of group embeddings.
        chunk_size: Embed in chunks of this many rows (all activations are still kept; only the random
            stream matches :func:`cached_step` with the same chunk size).

    Returns:
        The loss value.
    """
    _check(groups)
    reps = [torch.cat([embed(c) for c in chunked(g, chunk_size)], dim=0) for g in groups]
    loss = loss_fn([r.float() for r in reps])
    loss.backward()
    return float(loss.detach())


def cached_step(embed: EmbedFn, groups: Sequence[Inputs], loss_fn: LossFn, chunk_size: int,
                device: torch.device | None = None) -> float:
    """One GradCache step: accumulates into ``.grad`` the gradients of the uncached step.

    Args:
        embed: Model forward (chunk -> (n, dim)); dropout is replayed chunk by chunk.
        groups: Tokenised groups (queries, documents, optional negatives).
        loss_fn: Loss on the list of group embeddings (fp32).
        chunk_size: Rows per forward pass.
        device: Device of the model (for the CUDA random state); CPU if None.

    Returns:
        The loss value.
    """
    _check(groups)
    device = device or torch.device("cpu")
    plans: list[list[tuple[Inputs, RandomState]]] = []
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        for g in groups:
            plan: list[tuple[Inputs, RandomState]] = []
            parts = []
            for chunk in chunked(g, chunk_size):
                state = RandomState(device)
                parts.append(embed(chunk).float())  # (chunk, dim)
                plan.append((chunk, state))
            plans.append(plan)
            cached.append(torch.cat(parts, dim=0))
    leaves = [c.detach().requires_grad_() for c in cached]
    loss = loss_fn(leaves)
    loss.backward()
    for plan, leaf in zip(plans, leaves, strict=True):
        if leaf.grad is None:
            continue
        start = 0
        for chunk, state in plan:
            n = chunk["input_ids"].shape[0]
            grad = leaf.grad[start:start + n]  # (chunk, dim)
            start += n
            with state.replay():
                emb = embed(chunk).float()
            (emb * grad).sum().backward()
    return float(loss.detach())


def _check(groups: Sequence[Inputs]) -> None:
    if any(int(g["input_ids"].shape[0]) == 0 for g in groups):
        raise ValueError("every group needs at least one row (leave out an empty negatives group)")
