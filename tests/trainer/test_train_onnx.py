"""``codesearch-train onnx`` / ``export``: the int8 ONNX file of a model directory, checked against torch."""

from __future__ import annotations

import json
import shutil

import numpy as np

from codesearch.embed import FP32_GRAPH, FP32_RECIPE, ONNX_FILE, TransformerEmbedder, load_embedder
from codesearch.embed_onnx import OnnxEmbedder, OnnxFp32Embedder
from trainer.cli import main
from trainer.onnx_export import export_onnx

TEXTS = ["parse a cookie header", "def retry(fn, attempts=5):\n    for i in range(attempts):\n        fn()",
         "x", "public static String slugify(String title) { return title.toLowerCase(); } " * 8,
         "func (s *Server) Close() error { return s.listener.Close() }"]


def test_export_onnx_gives_the_torch_vectors(tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    path = export_onnx(model)
    assert path == model / ONNX_FILE and path.stat().st_mode & 0o044 == 0o044
    emb = load_embedder(str(model), max_length=64, runtime="onnx")
    assert isinstance(emb, OnnxEmbedder) and emb.info.key.startswith("tiny-test+int8@")
    ref = TransformerEmbedder(str(model), max_length=64)
    for kind in ("document", "query"):
        cos = np.sum(emb.encode(TEXTS, kind=kind) * ref.encode(TEXTS, kind=kind), axis=1)
        # A random tiny BERT quantises worse than the trained MiniLM (0.99): still the same directions.
        assert cos.min() > 0.95, cos
    # The fp32 graph beside it: kilobytes (its weights are rebuilt from model.safetensors), torch's vectors.
    assert (model / FP32_GRAPH).stat().st_size < 100_000 and (model / FP32_RECIPE).is_file()
    fp32 = load_embedder(str(model), max_length=64, serving=True)
    assert isinstance(fp32, OnnxFp32Embedder) and fp32.info.key == ref.info.key
    for kind in ("document", "query"):
        cos = np.sum(fp32.encode(TEXTS, kind=kind) * ref.encode(TEXTS, kind=kind), axis=1)
        assert cos.min() > 0.99999, cos


def test_onnx_command(tmp_path, tiny_model_dir, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert main(["onnx", str(model)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["onnx"] == str(model / ONNX_FILE) and out["cosine_to_torch"]["min"] > 0.95
    assert main(["onnx", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip() == f"not a model directory (needs config.json and model.safetensors): " \
                                              f"{tmp_path / 'nope'}"
