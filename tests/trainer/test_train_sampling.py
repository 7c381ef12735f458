"""Single-source batches with sources drawn proportionally to n_i ** alpha; deterministic by step."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.sampling import SourceBatchSampler, source_probabilities

SIZES = {"go/stdlib": 1600, "php/twig": 400, "ruby/rake": 100}


def test_probabilities_follow_n_to_the_alpha():
    assert source_probabilities(SIZES, 0.5) == pytest.approx({"go/stdlib": 4 / 7, "php/twig": 2 / 7,
                                                              "ruby/rake": 1 / 7})
    assert source_probabilities(SIZES, 1.0)["ruby/rake"] == pytest.approx(100 / 2100)
    assert list(source_probabilities(SIZES, 0.0).values()) == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0])
def test_observed_source_frequencies_match(alpha):
    """7000 draws with a fixed seed: each frequency within 4 standard deviations of its probability."""
    sampler = SourceBatchSampler(SIZES, batch_size=10, alpha=alpha, seed=42)
    n = 7000
    counts = Counter(sampler.source_at(s) for s in range(n))
    for src, p in source_probabilities(SIZES, alpha).items():
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(counts[src] - n * p) < 4 * sd, (src, counts[src], n * p)


def test_batches_come_from_one_source_without_repeats():
    sampler = SourceBatchSampler(SIZES, batch_size=32, seed=1)
    for step in range(200):
        src, idx = sampler.batch(step)
        assert len(idx) == 32 == len(set(idx))
        assert all(0 <= i < SIZES[src] for i in idx)


def test_each_source_is_covered_before_it_repeats():
    sampler = SourceBatchSampler({"a": 100, "b": 50}, batch_size=10, alpha=0.5, seed=3)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    for step in range(300):
        src, idx = sampler.batch(step)
        seen[src].extend(idx)
    for src, n in (("a", 100), ("b", 50)):
        first_epoch = seen[src][:n]
        assert sorted(first_epoch) == list(range(n))


def test_batch_is_a_pure_function_of_seed_and_step():
    a = SourceBatchSampler(SIZES, batch_size=16, seed=9)
    b = SourceBatchSampler(SIZES, batch_size=16, seed=9)
    wanted = [a.batch(s) for s in range(1500)]
    assert [b.batch(s) for s in (1499, 3, 1024, 0)] == [wanted[1499], wanted[3], wanted[1024], wanted[0]]
    assert SourceBatchSampler(SIZES, batch_size=16, seed=10).batch(0) != wanted[0] or \
        SourceBatchSampler(SIZES, batch_size=16, seed=10).batch(1) != wanted[1]


def test_small_source_gives_its_whole_set():
    sampler = SourceBatchSampler({"tiny": 5}, batch_size=8)
    src, idx = sampler.batch(0)
    assert src == "tiny" and sorted(idx) == [0, 1, 2, 3, 4]
