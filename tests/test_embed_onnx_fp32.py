"""The fp32 graph on ONNX Runtime (the servers' encoder) against the torch encoder: the same vectors.

Tolerances (the shipped model, measured on the fixture repositories): cosine to the torch vector per text at
least 0.99999 (seen: 0.9999999 for documents and queries); the same ranking of the fixture units for every
fixture query (top 10 in order, up to ties closer than 1e-5).
"""

from __future__ import annotations

import json

import pytest

from codesearch.config import Settings
from codesearch.daemon import Daemon
from codesearch.embed import FP32, FP32_GRAPH, FP32_RECIPE, SHIPPED_MODEL, TransformerEmbedder, load_embedder
from codesearch.embed_numpy import NumpyEmbedder
from codesearch.embed_onnx import OnnxFp32Embedder
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
def fp32_embedder():
    return runtime_embedder("onnx-fp32")


@pytest.fixture(scope="module")
def vectors(fp32_embedder, real_embedder):
    return fixture_vectors({"ort": fp32_embedder, "torch": real_embedder})


def test_the_servers_run_it_and_a_one_shot_query_runs_numpy(fp32_embedder, real_embedder):
    assert (SHIPPED_MODEL / FP32_GRAPH).stat().st_size < 100_000  # the graph only: the weights are the safetensors'
    assert isinstance(fp32_embedder, OnnxFp32Embedder)
    assert fp32_embedder.info.runtime == FP32 and fp32_embedder.info.key == real_embedder.info.key
    assert isinstance(load_embedder(None, max_length=128, serving=True), OnnxFp32Embedder)
    assert isinstance(load_embedder(None, max_length=128), NumpyEmbedder)
    assert isinstance(load_embedder(None, max_length=128, bulk=True, serving=True), TransformerEmbedder)
    assert isinstance(load_embedder(None, max_length=128, runtime="numpy", serving=True), NumpyEmbedder)


def test_fp32_graph_vectors_equal_torch_on_fixture_code(vectors):
    assert_torch_vectors(vectors["ort"], vectors["torch"])


def test_fp32_graph_rankings_equal_torch(vectors):
    assert_torch_rankings(vectors["ort"], vectors["torch"])


def test_batching_does_not_change_fp32_graph_vectors(fp32_embedder):
    assert batching_cosines(fp32_embedder, 30).min() >= 0.99999
    assert fp32_embedder.encode([]).shape == (0, fp32_embedder.info.dim)


def test_the_daemon_encodes_with_it(tmp_path, copy_fixture_repo):
    repo = copy_fixture_repo("mini_go")
    daemon = Daemon(repo, Settings())
    try:
        assert isinstance(daemon.service._load_embedder().inner, OnnxFp32Embedder)
    finally:
        daemon.close()


def test_a_model_without_the_graph_serves_on_numpy(tmp_path):
    model = model_copy(tmp_path / "model", None, fp32_graph=False)
    assert isinstance(load_embedder(str(model), max_length=64, serving=True), NumpyEmbedder)
    with pytest.raises(ModelError, match="codesearch-train onnx") as err:
        load_embedder(str(model), max_length=64, runtime="onnx-fp32")
    assert "\n" not in str(err.value) and FP32_GRAPH in str(err.value)


@pytest.mark.parametrize("content", [b"not an onnx model at all\n", b""], ids=["garbage", "empty"])
def test_a_corrupt_graph_is_a_one_line_error(tmp_path, content):
    model = model_copy(tmp_path / "model", None)
    (model / FP32_GRAPH).write_bytes(content)
    with pytest.raises(ModelError, match="cannot load") as err:
        OnnxFp32Embedder(str(model))
    assert "\n" not in str(err.value) and FP32_GRAPH in str(err.value)


@pytest.mark.parametrize("recipe", ["{not json", json.dumps({"initializers": []}),
                                    json.dumps({"initializers": {"x": {"op": "copy", "keys": ["no.such.weight"]}}}),
                                    json.dumps({"initializers": {"x": {"op": "rotate", "keys": []}}})],
                         ids=["not-json", "not-a-map", "missing-weight", "unknown-op"])
def test_a_recipe_that_does_not_fit_is_a_one_line_error(tmp_path, recipe):
    model = model_copy(tmp_path / "model", None)
    (model / FP32_RECIPE).write_text(recipe)
    with pytest.raises(ModelError) as err:
        OnnxFp32Embedder(str(model))
    assert "\n" not in str(err.value) and "codesearch-train onnx" in str(err.value)


def test_a_recipe_with_a_wrong_shape_is_a_one_line_error(tmp_path):
    model = model_copy(tmp_path / "model", None)
    recipe = json.loads((model / FP32_RECIPE).read_text())
    first = next(iter(recipe["initializers"].values()))
    first["shape"] = [3, 3]
    (model / FP32_RECIPE).write_text(json.dumps(recipe))
    with pytest.raises(ModelError, match="the graph wants") as err:
        OnnxFp32Embedder(str(model))
    assert "\n" not in str(err.value)
