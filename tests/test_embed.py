"""The encoder against two independent oracles: transformers' BertModel and sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codesearch.embed import HashEmbedder, mean_pool, read_model_info
from codesearch.errors import ModelError

TEXTS = [
    "parse a cookie header",
    "def retry(fn, attempts=5):\n    for i in range(attempts):\n        time.sleep(2 ** i)",
    "x",
    "public static String slugify(String title) { return title.toLowerCase().replace(' ', '-'); } " * 20,
]


@pytest.fixture(params=["shipped", "base"])
def any_embedder(request, real_embedder, base_embedder):
    """Both packaged models: the shipped one (fp16 weights on disk) and all-MiniLM-L6-v2 (fp32)."""
    return real_embedder if request.param == "shipped" else base_embedder


def test_matches_sentence_transformers(any_embedder):
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(any_embedder.info.path, device="cpu", model_kwargs={"dtype": torch.float32})
    st_model.max_seq_length = any_embedder.max_length
    expected = st_model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = any_embedder.encode(TEXTS)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_matches_transformers_bertmodel(any_embedder):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(any_embedder.info.path)
    model = AutoModel.from_pretrained(any_embedder.info.path, dtype=torch.float32).eval()
    batch = tok(TEXTS, padding=True, truncation=True, max_length=any_embedder.max_length, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    expected = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).numpy()
    np.testing.assert_allclose(any_embedder.encode(TEXTS), expected, atol=2e-5)


def test_shipped_model_is_the_default_and_not_the_base(real_embedder, base_embedder):
    from codesearch.embed import SHIPPED_MODEL, base_model_dir, resolve_model_dir

    assert Path(real_embedder.info.path) == SHIPPED_MODEL.resolve()
    assert resolve_model_dir(None) == resolve_model_dir("default") == SHIPPED_MODEL.resolve()
    assert resolve_model_dir("base") == base_model_dir().resolve()
    assert base_embedder.info.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert real_embedder.info.sha256 != base_embedder.info.sha256
    manifest = json.loads((SHIPPED_MODEL / "manifest.json").read_text(encoding="utf-8"))
    assert real_embedder.info.model_id == manifest["model_id"]
    assert manifest["ship"]["ship"] is True, manifest["ship"]  # shipped only with a winning verdict
    assert manifest["base_model"]["sha256"] == base_embedder.info.sha256


def test_order_and_batching_do_not_change_vectors(real_embedder):
    one_by_one = np.stack([real_embedder.encode([t])[0] for t in TEXTS])
    reversed_batch = real_embedder.encode(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(one_by_one, reversed_batch, atol=2e-5)


def test_truncation_to_max_length(real_embedder):
    counts = real_embedder.token_counts(["word " * 1000, "two words"])
    assert counts == [real_embedder.max_length, 4]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 5))
def test_mean_pool_ignores_padding(batch, seq, pad):
    hidden = torch.randn(batch, seq, 8)
    mask = torch.ones(batch, seq, dtype=torch.long)
    padded = torch.cat([hidden, torch.randn(batch, pad, 8) * 100], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(batch, pad, dtype=torch.long)], dim=1)
    torch.testing.assert_close(mean_pool(padded, padded_mask), hidden.mean(dim=1))


def test_hash_embedder_is_deterministic_and_records_calls():
    e = HashEmbedder(dim=16)
    a = e.encode(["parse cookie", "other"])
    b = e.encode(["parse cookie"])
    np.testing.assert_array_equal(a[0], b[0])
    assert e.calls == ["parse cookie", "other", "parse cookie"]
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="model directory not found"):
        read_model_info(str(tmp_path / "nope"), 256)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        read_model_info(str(tmp_path / "empty"), 256)
