"""ONNX export: a model directory's BERT encoder as ``model.int8.onnx`` and as the weightless fp32 graph.

Three steps, each chosen by measurement on AVX2 CPUs without VNNI (docs/design.md, bench/runtime.py):

1. **Export** the Hugging Face ``BertModel`` with the legacy TorchScript exporter (``dynamo=False``) and
   eager attention: ONNX Runtime's transformer optimizer fuses that attention pattern into one
   ``Attention`` node; a dynamo export of SDPA attention is not fused.
2. **Optimise** with ``onnxruntime.transformers.optimizer`` (attention, layer norm, GELU, embedding fusions).
3. **Quantise** the weights dynamically to **uint8, one scale per output channel** (activations are
   quantised to uint8 at run time: ORT's u8u8 kernels). This keeps cosine 0.990 min / 0.995 mean to fp32 on
   code and the benchmark's MRR (docs/benchmarks.md). Signed int8 weights (u8s8 kernels, ORT's default)
   per tensor lose too much (0.93 / 0.96); per channel they keep 0.987 / 0.995 and are faster on CPUs with
   VNNI (1.24x torch fp32 per core vs 0.88x, on a Xeon with AVX-512 VNNI), but cost about 0.006 semantic
   MRR@10 on the benchmark (outside the quality budget), and without VNNI their ``vpmaddubsw`` sums
   saturate (cosine 0.956 on an AVX2 EPYC), where uint8 per channel ran 1.65x torch fp32 in bulk.
   The fused graph has tensors without type information, so ``DefaultTensorType`` is set to float.

The encoder's input is ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch x seq) and its
output ``last_hidden_state`` (batch x seq x dim); pooling and normalisation stay in
``codesearch.embed_onnx`` (numpy), as in the torch encoder.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codesearch.embed import FP32_GRAPH, FP32_RECIPE, FP32_WEIGHTS_FILE, ONNX_FILE
from codesearch.embed_onnx import build_initializer

from .model import load_bert

log = logging.getLogger(__name__)

__all__ = ["FP32_GRAPH", "FP32_RECIPE", "ONNX_FILE", "compare", "export_fp32", "export_fp32_graph", "export_onnx",
           "export_raw"]

#: The fp32 graph before quantisation (bench/runtime.py compares it; not shipped).
FP32_FILE = "model.fp32.onnx"


class _HiddenStates(torch.nn.Module):
    """BertModel -> last_hidden_state, with positional inputs (what the exporter traces)."""

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state  # (batch, seq, dim)


def _load_bert(model_dir: Path) -> Any:
    # eager attention: the pattern ORT's optimizer fuses (SDPA exports are not fused)
    bert, config = load_bert(model_dir, attn_implementation="eager")
    return bert.eval(), config


def export_raw(model_dir: Path, dest: Path, opset: int = 17) -> Path:
    """Step 1 only: the unfused fp32 graph (what runtimes without ORT's fused operators read, e.g. OpenVINO)."""
    _export_raw(Path(model_dir), Path(dest), opset)
    return Path(dest)


def _export_raw(model_dir: Path, dest: Path, opset: int) -> Any:
    bert, config = _load_bert(model_dir)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "seq"}
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing notes about Python booleans and index ops: shapes stay dynamic (checked by the tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(_HiddenStates(bert), (ids, mask, torch.zeros_like(ids)), str(dest),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    return config


def export_fp32(model_dir: Path, dest: Path, opset: int = 17) -> Path:
    """Export and optimise (steps 1-2) to the fp32 graph ``dest``.

    Args:
        model_dir: A model directory (config.json, model.safetensors).
        dest: The .onnx file to write.
        opset: ONNX opset.

    Returns:
        ``dest``.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with tempfile.TemporaryDirectory(prefix="codesearch-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        config = _export_raw(Path(model_dir), raw, opset)
        opt = optimize_model(str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                             hidden_size=int(config.hidden_size))
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        log.info("fused operators: %s", fused)
        opt.save_model_to_file(str(dest))
    return dest


#: Initializers at most this many bytes that are no weight of the model (shapes, scalars) stay in the graph.
_SMALL_CONSTANT = 4096


def _weight_recipe(name: str, value: np.ndarray, weights: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """How the graph's initializer ``name`` is computed from the model's weights (None: from none of them).

    An exported and fused BERT's initializers are the weights as they are, transposed (a Linear layer's
    (out, in) weight as MatMul's (in, out)), or the query, key and value weights or biases concatenated
    (and transposed) for ONNX Runtime's fused ``Attention``. Each candidate is checked for equality.
    """
    candidates: list[dict[str, Any]] = []
    key = name.removeprefix("bert.")
    if key in weights:
        candidates.append({"op": "copy", "keys": [key]})
    if value.ndim == 2:
        candidates += [{"op": "transpose", "keys": [k]} for k, w in weights.items() if w.shape == value.shape[::-1]]
    prefixes = sorted({k.rsplit(".", 2)[0] for k in weights if k.endswith(("query.weight", "query.bias"))})
    for prefix in prefixes:
        part = "weight" if value.ndim == 2 else "bias"
        keys = [f"{prefix}.{x}.{part}" for x in ("query", "key", "value")]
        if all(k in weights for k in keys):
            candidates.append({"op": "concat_transpose" if part == "weight" else "concat", "keys": keys})
    for recipe in candidates:
        built = build_initializer(recipe, weights)
        if built.shape == value.shape and np.array_equal(built, value):
            return recipe
    return None


def export_fp32_graph(fp32: Path, model_dir: Path) -> tuple[Path, Path]:
    """Write the fused fp32 graph ``fp32`` without its weights, and the recipe that rebuilds them.

    ``model_dir/model.fp32.graph.onnx`` is the graph (kilobytes: every weight-sized initializer is an
    external-data stub into an in-memory file) and ``model_dir/model.fp32.graph.json`` maps each stub to
    the ``model.safetensors`` tensors it is made of (:func:`_weight_recipe`) and to its place in that file.
    codesearch.embed_onnx builds the file from the safetensors at load time and hands it to ONNX Runtime
    (``add_external_initializers_from_files_in_memory``), so the model directory holds its weights once
    and ONNX Runtime runs them in fp32 with its fused kernels.

    Raises:
        ValueError: An initializer of weight size is none of the model's weights (the recipe would be wrong).
    """
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    weights = {k.removeprefix("bert."): v.astype(np.float32)
               for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    graph = onnx.load(str(fp32))
    recipes: dict[str, dict[str, Any]] = {}
    offset = 0
    for init in graph.graph.initializer:
        value = numpy_helper.to_array(init)
        recipe = _weight_recipe(init.name, value, weights)
        if recipe is None:
            if value.nbytes > _SMALL_CONSTANT:
                raise ValueError(f"initializer {init.name} {list(value.shape)} is none of the model's weights")
            continue
        length = value.size * np.dtype(np.float32).itemsize  # build_initializer gives float32
        recipes[init.name] = {**recipe, "shape": list(value.shape), "offset": offset, "length": length}
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, val in (("location", FP32_WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
            entry = init.external_data.add()
            entry.key, entry.value = key, val
        offset += -(-length // 64) * 64  # 64-byte aligned, as ONNX Runtime may map them
    graph_path, recipe_path = model_dir / FP32_GRAPH, model_dir / FP32_RECIPE
    for path, data in ((graph_path, graph.SerializeToString()),
                       (recipe_path, json.dumps({"format": 1, "initializers": recipes}, indent=1).encode())):
        staged = path.with_name(path.name + ".tmp")
        staged.write_bytes(data)
        staged.chmod(0o644)
        staged.replace(path)
    return graph_path, recipe_path


def export_onnx(model_dir: Path, dest: Path | None = None, opset: int = 17) -> Path:
    """Write ``model_dir/model.int8.onnx`` (or ``dest``): export, optimise, quantise (module docstring).

    The fused fp32 graph is also written, without its weights, as ``model.fp32.graph.onnx`` beside the
    model's weights (:func:`export_fp32_graph`): what the daemon and the editor and agent servers run.

    Args:
        model_dir: A model directory (config.json, model.safetensors).
        dest: Where to write (default ``model_dir/model.int8.onnx``); replaced atomically.
        opset: ONNX opset.

    Returns:
        The file written.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(model_dir)
    dest = Path(dest) if dest is not None else model_dir / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="codesearch-onnx-") as tmp:
        fp32 = export_fp32(model_dir, Path(tmp) / FP32_FILE, opset)
        export_fp32_graph(fp32, model_dir)
        out = Path(tmp) / ONNX_FILE
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the quantiser logs a line per tensor on the root logger
        try:
            quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        staged = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(out, staged)
        staged.chmod(0o644)
        staged.replace(dest)
    return dest


def compare(model_dir: Path, texts: Sequence[str], kind: str = "document", max_length: int = 128) -> dict[str, float]:
    """Cosine between the torch encoder's and the ONNX encoder's vectors of ``texts`` (one per text).

    Returns:
        {"min": ..., "mean": ..., "texts": n}.
    """
    from codesearch.embed import TransformerEmbedder
    from codesearch.embed_onnx import OnnxEmbedder

    a = TransformerEmbedder(str(model_dir), max_length=max_length).encode(list(texts), kind=kind)
    b = OnnxEmbedder(str(model_dir), max_length=max_length).encode(list(texts), kind=kind)
    cos = np.sum(a * b, axis=1)  # both L2-normalised
    return {"min": float(cos.min()), "mean": float(cos.mean()), "texts": len(texts)}
