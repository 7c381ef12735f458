"""The fp32 encoder in numpy (the default query runtime) against the torch encoder: the same vectors.

Tolerances (the shipped model, measured on the fixture repositories): cosine to the torch vector per text at
least 0.99999 (seen: 0.9999998 for documents and queries); the same ranking of the fixture units for every
fixture query (top 10 in order, up to ties closer than 1e-5).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from codesearch.cli import main
from codesearch.config import Settings
from codesearch.embed import FP32, load_embedder
from codesearch.embed_numpy import NumpyEmbedder, erf
from codesearch.errors import ModelError
from tests.modelutil import (
    assert_torch_rankings,
    assert_torch_vectors,
    batching_cosines,
    fixture_vectors,
    model_copy,
    runtime_embedder,
)


@pytest.fixture(scope="module")
def numpy_embedder():
    return runtime_embedder("numpy")


@pytest.fixture(scope="module")
def vectors(numpy_embedder, real_embedder):
    return fixture_vectors({"numpy": numpy_embedder, "torch": real_embedder})


def test_erf_matches_the_math_library():
    x = np.linspace(-6, 6, 24001, dtype=np.float32)
    want = np.array([math.erf(float(v)) for v in x])
    # The approximation is within 1.5e-7 in exact arithmetic; float32 evaluation adds rounding (seen: 4.9e-7).
    assert np.abs(erf(x).astype(np.float64) - want).max() < 1e-6
    assert erf(x).dtype == np.float32


def test_default_runtime_is_numpy_with_the_torch_index_key(numpy_embedder, real_embedder):
    assert Settings().runtime == "auto"
    assert isinstance(load_embedder(None, max_length=128), NumpyEmbedder)
    assert numpy_embedder.info.runtime == FP32 and numpy_embedder.info.key == real_embedder.info.key
    # The shipped weights are float16: the word embeddings stay so (half the memory), the rest is float32.
    words = numpy_embedder._w["embeddings.word_embeddings.weight"]
    assert words.dtype == np.float16 and numpy_embedder._w["encoder.layer.0.qkv.w"].dtype == np.float32


def test_numpy_vectors_equal_torch_on_fixture_code(vectors):
    assert_torch_vectors(vectors["numpy"], vectors["torch"])


def test_numpy_rankings_equal_torch(vectors):
    assert_torch_rankings(vectors["numpy"], vectors["torch"])


def test_batching_does_not_change_numpy_vectors(numpy_embedder):
    assert batching_cosines(numpy_embedder, 30).min() >= 0.99999
    assert numpy_embedder.encode([]).shape == (0, numpy_embedder.info.dim)


def test_an_index_built_on_torch_answers_on_numpy_with_the_same_hits(copy_fixture_repo, monkeypatch, capsys):
    repo = copy_fixture_repo("mini_java")
    monkeypatch.setenv("CODESEARCH_RUNTIME", "torch")
    assert main(["index", str(repo), "--json"]) == 0
    capsys.readouterr()
    hits = {}
    for runtime in ("torch", "numpy", "auto"):
        monkeypatch.setenv("CODESEARCH_RUNTIME", runtime)
        assert main(["query", "--repo", str(repo), "--json", "-k", "5", "--mode", "semantic",
                     "parse a date from text"]) == 0
        hits[runtime] = [(h["path"], h["start_line"]) for h in map(json.loads, capsys.readouterr().out.splitlines())]
    assert len(hits["torch"]) == 5 and hits["numpy"] == hits["torch"] == hits["auto"], hits
    # And an update under numpy does not rebuild: the vectors are the same kind.
    monkeypatch.setenv("CODESEARCH_RUNTIME", "numpy")
    assert main(["index", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rebuild_reason"] is None


def test_weights_that_are_not_bert_are_a_one_line_error(tmp_path):
    from safetensors.numpy import save_file

    model = model_copy(tmp_path / "model", None)
    (model / "model.safetensors").unlink()
    save_file({"embeddings.word_embeddings.weight": np.zeros((4, 384), np.float16)}, str(model / "model.safetensors"))
    with pytest.raises(ModelError, match="not a BERT encoder") as err:
        NumpyEmbedder(str(model))
    assert "\n" not in str(err.value)
