"""Batches from one source at a time, sources drawn with probability proportional to n_i ** alpha.

GTE (Li et al. 2023, section 3.1) samples each batch from a single data source, so that in-batch
negatives come from the same distribution (here: one language and one package), and chooses the source
with the multinomial p_i = n_i^alpha / sum_j n_j^alpha (alpha = 0.5), which up-weights small sources
without letting them repeat endlessly.

The batch of a step is a pure function of (seed, step): the source choices come from per-block
generators, and the k-th batch of a source is slice k of that source's per-epoch permutations (the
remainder of an epoch is dropped so that no batch repeats a pair). A resumed run therefore sees exactly
the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["SourceBatchSampler", "source_probabilities"]

_BLOCK = 1024


def source_probabilities(sizes: Mapping[str, int], alpha: float = 0.5) -> dict[str, float]:
    """p_i = n_i^alpha / sum_j n_j^alpha over the non-empty sources.

    Args:
        sizes: Pairs per source.
        alpha: 1 samples proportionally to size, 0 uniformly over sources.

    Returns:
        Probability per source (sources with no pairs get none).
    """
    weights = {k: float(n) ** alpha for k, n in sizes.items() if n > 0}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("no source has any pairs")
    return {k: w / total for k, w in weights.items()}


class SourceBatchSampler:
    """Deterministic single-source batches.

    Args:
        sizes: Pairs per source (index space of each source is ``range(n)``).
        batch_size: Pairs per batch (a source smaller than this gives batches of all its pairs).
        alpha: Sampling exponent.
        seed: Seed of every random choice.
    """

    def __init__(self, sizes: Mapping[str, int], batch_size: int, alpha: float = 0.5, seed: int = 0) -> None:
        probs = source_probabilities(sizes, alpha)
        self.sources = sorted(probs)
        self.sizes = {k: int(sizes[k]) for k in self.sources}
        self.probs = np.array([probs[k] for k in self.sources])
        self.batch_size = batch_size
        self.seed = seed
        self._choices: list[np.ndarray] = []

    def _block(self, b: int) -> np.ndarray:
        while len(self._choices) <= b:
            rng = np.random.default_rng([self.seed, 0x5A3, len(self._choices)])
            self._choices.append(rng.choice(len(self.sources), size=_BLOCK, p=self.probs))
        return self._choices[b]

    def source_at(self, step: int) -> str:
        """The source of the batch at ``step``."""
        return self.sources[int(self._block(step // _BLOCK)[step % _BLOCK])]

    def _batch_number(self, step: int) -> int:
        """How many batches the source of ``step`` gave before ``step``."""
        src = int(self._block(step // _BLOCK)[step % _BLOCK])
        count = 0
        for b in range(step // _BLOCK):
            count += int((self._block(b) == src).sum())
        count += int((self._block(step // _BLOCK)[: step % _BLOCK] == src).sum())
        return count

    def batch(self, step: int) -> tuple[str, list[int]]:
        """The batch of ``step``.

        Returns:
            (source, indices into that source's pairs), without repeats.
        """
        source = self.source_at(step)
        n = self.sizes[source]
        size = min(self.batch_size, n)
        per_epoch = n // size
        k = self._batch_number(step)
        epoch, slot = divmod(k, per_epoch)
        index = self.sources.index(source)
        perm = np.random.default_rng([self.seed, 0xB47, index, epoch]).permutation(n)
        return source, [int(i) for i in perm[slot * size:(slot + 1) * size]]
