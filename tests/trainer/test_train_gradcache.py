"""GradCache gives the gradients of the uncached step (sentence-transformers' test_cmnrl, for our loop)."""

from __future__ import annotations

import copy

import torch

from trainer.config import model_config
from trainer.gradcache import cached_step, chunked, direct_step
from trainer.loss import gte_loss
from trainer.model import Encoder

QUERIES = ["parse a cookie header", "retry with backoff", "sum of a list", "median of values", "slugify a title",
           "merge sorted lists", "read a file", "hash of a file"]
DOCS = ["def parse(h):\n    return dict(x.split('=') for x in h.split(';'))", "def retry(fn):\n    return fn()",
        "def total(xs):\n    return sum(xs)", "func Median(xs []float64) float64 { return xs[len(xs)/2] }",
        "function slug(t) { return t.toLowerCase(); }", "def merge(a, b):\n    return sorted(a + b)",
        "def read(p):\n    return open(p).read()", "def md5(p):\n    return hashlib.md5(open(p).read())"]
NEGS = ["def noop():\n    pass", "class A:\n    pass", "x = 1"]


def encoder(tokenizer, dropout: float) -> Encoder:
    cfg = {**model_config("tiny"), "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    return Encoder.from_config(cfg, tokenizer, seed=3).train()


def groups(enc: Encoder):
    return [enc.tokenize(QUERIES, 32, "query"), enc.tokenize(DOCS, 64), enc.tokenize(NEGS, 64)]


def loss_fn(reps):
    return gte_loss(reps[0], reps[1], 0.05, negatives=reps[2], negative_owner=torch.tensor([0, 3, 3]))


def grads(model: Encoder) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        # Float rounding differs (chunks are trimmed to their own length, sums run in another order):
        # allow 1e-5 of each tensor's largest gradient.
        scale = max(1e-3, float(a[name].abs().max()))
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_cached_equals_uncached_without_dropout(fixture_tokenizer):
    plain = encoder(fixture_tokenizer, 0.0)
    cached = copy.deepcopy(plain)
    loss_plain = direct_step(plain, groups(plain), loss_fn)
    loss_cached = cached_step(cached, groups(cached), loss_fn, chunk_size=3)
    assert abs(loss_plain - loss_cached) < 1e-5
    assert_same_grads(grads(plain), grads(cached))


def test_cached_replays_dropout_masks(fixture_tokenizer):
    """With dropout on, GradCache equals the uncached step that draws the same masks (same chunks, seed)."""
    plain = encoder(fixture_tokenizer, 0.2)
    cached = copy.deepcopy(plain)
    torch.manual_seed(11)
    loss_plain = direct_step(plain, groups(plain), loss_fn, chunk_size=3)
    torch.manual_seed(11)
    loss_cached = cached_step(cached, groups(cached), loss_fn, chunk_size=3)
    assert abs(loss_plain - loss_cached) < 1e-5
    assert_same_grads(grads(plain), grads(cached))


def test_chunks_trim_padding_only(fixture_tokenizer):
    enc = encoder(fixture_tokenizer, 0.0).eval()
    g = enc.tokenize(DOCS, 64)
    parts = chunked(g, 3)
    assert [c["input_ids"].shape[0] for c in parts] == [3, 3, 2]
    assert all(int(c["attention_mask"][:, -1].sum()) > 0 for c in parts)  # no all-padding column left
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([enc(c) for c in parts]), enc(g), rtol=1e-4, atol=1e-5)
