"""The encoder on ONNX Runtime: its fused fp32 graph (the servers' default) and the int8 file (opt-in).

Both read a graph exported by ``codesearch-train onnx`` (legacy exporter, ORT transformer fusions) and the
model directory's ``tokenizer.json``, and pool in numpy exactly as :class:`codesearch.embed.TransformerEmbedder`
does (mean over real tokens, L2 norm). Their imports are onnxruntime, the Rust ``tokenizers`` library and
numpy: no torch, no transformers.

- :class:`OnnxFp32Embedder` runs ``model.fp32.graph.onnx``: the fused fp32 graph without its weights,
  which it rebuilds from ``model.safetensors`` at load time (``model.fp32.graph.json`` says how: copies,
  transposes, concatenated query/key/value) and hands to ONNX Runtime as external initializers, so the
  model's weights are stored once. Its vectors are the torch and numpy encoders' (cosine above 0.99999,
  tests/test_embed_onnx_fp32.py), under their index key; a query takes about half numpy's time but the load
  about twice as long, so the long-lived servers use it and a one-shot ``codesearch query`` uses numpy.
- :class:`OnnxEmbedder` runs ``model.int8.onnx`` (dynamic quantisation to per-channel uint8 weights).
  Its vectors agree with fp32 to a cosine of about 0.99 per vector; the index key marks them
  (``<id>+int8@<sha>``) so the two never mix.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .embed import (
    FP32_GRAPH,
    FP32_RECIPE,
    FP32_WEIGHTS_FILE,
    ONNX_FILE,
    TokenizingEncoder,
    cpu_threads,
    load_tokenizer,
    load_weights,
    padded_batches,
    pool_normalize,
    read_model_info,
    text_prefixes,
)
from .errors import ModelError, first_line


class _OrtEncoder(TokenizingEncoder):
    """The BERT encoder of a model directory on ONNX Runtime; what both ONNX Runtime encoders share: the
    session, the feed, pooling and one-line errors. A subclass names its ``RUNTIME`` setting and graph
    ``FILE`` and starts the session in :meth:`_load`.

    Same interface as :class:`codesearch.embed.TransformerEmbedder`: ``info``, ``encode``,
    ``token_counts``, ``tokens_encoded``, ``batch_size``; thread-safe (ONNX Runtime sessions run
    concurrently; tokenising is serialised).

    Args:
        model: Model directory, alias ("default", "base") or None for the shipped code-search model.
        max_length: Maximum tokens per document text.
        batch_size: Texts per forward pass (texts are sorted by length first).
        threads: ONNX Runtime intra-op threads; 0 means all cores.
    """

    RUNTIME: str
    FILE: str
    _session: Any
    _file: Path

    def __init__(self, model: str | None = None, max_length: int = 128, batch_size: int = 32,
                 threads: int = 0) -> None:
        self.info = read_model_info(model, max_length, runtime=self.RUNTIME)
        path = Path(self.info.path)
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model config in {path}: {exc}") from None
        self._positions = int(config.get("max_position_embeddings", 512))
        self.max_length = min(self.info.max_length, self._positions)
        self.batch_size = batch_size
        self.threads = threads if threads > 0 else cpu_threads()
        self._prefix = text_prefixes(path)
        self._tok = load_tokenizer(path)
        self._lock = threading.Lock()
        self._file = path / self.FILE
        self._load(path)

    def _load(self, path: Path) -> None:
        """Start the session (:meth:`_open`) for the model directory ``path``."""
        raise NotImplementedError

    def _open(self, source: Path | bytes, weights: np.ndarray | None = None) -> None:
        """Start the session on ``source``: a file, or a graph's bytes whose weights are ``weights`` (the
        bytes of the in-memory file :data:`FP32_WEIGHTS_FILE` its external-data stubs point into)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: ORT warns on stderr about harmless things
        # Worker threads sleep instead of spinning between operators: on a shared 2-core machine spinning
        # cost 25 % more CPU and more wall time for the same batch (measured under load).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = Path(self.info.path)
        try:
            if weights is not None:
                # A long-lived server's encoder: no memory arena, which kept about 80 MB after one batch of
                # documents (measured: queries as fast, a batch of documents about 4 % slower).
                opts.enable_cpu_mem_arena = False
                opts.add_external_initializers_from_files_in_memory([FP32_WEIGHTS_FILE], [weights], [len(weights)])
            self._session = ort.InferenceSession(source if isinstance(source, bytes) else str(source), opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"cannot load {self._file}: {first_line(exc)} (re-export it with "
                             f"`codesearch-train onnx {path}`, or set runtime = \"numpy\")") from None
        inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise ModelError(f"{self._file} is not a codesearch encoder (inputs {sorted(inputs)})")
        self._token_types = "token_type_ids" in inputs
        self._output = self._session.get_outputs()[0].name

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids, mask: (batch, seq) int64 -> L2-normalised mean-pooled vectors (batch, dim)."""
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        return pool_normalize(self._session.run([self._output], feed)[0], mask)  # hidden: (batch, seq, dim)

    def _fill(self, out: np.ndarray, encodings: list[Any]) -> None:
        for chunk, ids, mask in padded_batches(encodings, self.batch_size):
            try:
                out[chunk] = self._run(ids, mask)
            except Exception as exc:  # an ORT failure at run time (a broken graph loads but cannot run)
                raise ModelError(f"the ONNX encoder {self._file} failed: {first_line(exc)}") from None


class OnnxEmbedder(_OrtEncoder):
    """The encoder on ONNX Runtime with int8 weights (``model.int8.onnx``); arguments as :class:`_OrtEncoder`."""

    RUNTIME, FILE = "onnx", ONNX_FILE

    def _load(self, path: Path) -> None:
        self._open(self._file)


class OnnxFp32Embedder(_OrtEncoder):
    """The encoder in fp32 on ONNX Runtime (``model.fp32.graph.onnx``); arguments as :class:`_OrtEncoder`.

    The fp32 vectors of ``model.safetensors``, as the torch and numpy encoders compute them (one index
    key). The weights are rebuilt from the safetensors by the recipe ``model.fp32.graph.json`` (module
    docstring).
    """

    RUNTIME, FILE = "onnx-fp32", FP32_GRAPH

    def _load(self, path: Path) -> None:
        from safetensors.numpy import load_file

        try:
            graph = self._file.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot load {self._file}: {exc}") from None
        try:
            recipe = json.loads((path / FP32_RECIPE).read_text(encoding="utf-8"))["initializers"]
            if not isinstance(recipe, dict):
                raise ValueError("initializers is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read {path / FP32_RECIPE}: {exc} (re-export it with "
                             f"`codesearch-train onnx {path}`, or set runtime = \"numpy\")") from None
        weights = {k.removeprefix("bert."): v for k, v in load_weights(path, load_file).items()}
        try:
            size = max((int(how["offset"]) + int(how["length"]) for how in recipe.values()), default=0)
            data = np.zeros(size, dtype=np.uint8)
            for name, how in recipe.items():
                value = build_initializer(how, weights)
                if list(value.shape) != list(how["shape"]) or value.nbytes != int(how["length"]):
                    raise ValueError(f"{name} has shape {list(value.shape)}, the graph wants {how['shape']}")
                start = int(how["offset"])
                data[start:start + value.nbytes] = value.reshape(-1).view(np.uint8)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{path / FP32_RECIPE} does not fit {path / 'model.safetensors'}: {exc} "
                             f"(re-export it with `codesearch-train onnx {path}`)") from None
        del weights
        self._open(graph, data)  # ONNX Runtime copies the weights: ``data`` is freed on return


def build_initializer(recipe: dict[str, Any], weights: dict[str, np.ndarray]) -> np.ndarray:
    """One initializer of the fp32 graph from the model's weights (names without ``bert.``), C-contiguous float32.

    ``recipe``: ``{"op": "copy" | "transpose" | "concat" | "concat_transpose", "keys": [weight names], ...}``
    (written by ``trainer.onnx_export.export_fp32_graph``, with the ``shape``, and the ``offset`` and
    ``length`` in bytes of the initializer in the graph's in-memory weights file).
    """
    op, keys = recipe["op"], recipe["keys"]
    parts = [np.asarray(weights[k], dtype=np.float32) for k in keys]
    if op == "copy" and len(parts) == 1:
        out = parts[0]
    elif op == "transpose" and len(parts) == 1 and parts[0].ndim == 2:
        out = parts[0].T
    elif op == "concat":
        out = np.concatenate(parts)
    elif op == "concat_transpose":
        out = np.concatenate(parts).T
    else:
        raise ValueError(f"unknown weight recipe {recipe!r}")
    return np.ascontiguousarray(out)
