"""OnnxEmbedder: the encoder on ONNX Runtime with int8 weights, the product's default runtime.

It reads a model directory's ``model.int8.onnx`` (the BERT encoder exported by ``codesearch-train onnx``:
legacy exporter, ORT transformer fusions, dynamic quantisation to per-channel uint8 weights) and its
``tokenizer.json``, and pools in numpy exactly as :class:`codesearch.embed.TransformerEmbedder` does (mean
over real tokens, L2 norm). Its imports are onnxruntime, the Rust ``tokenizers`` library and numpy: no
torch, no transformers, so a cold ``codesearch query`` starts in well under a second
(docs/benchmarks.md). Vectors agree with the fp32 torch encoder to a cosine of about 0.99 per vector
(tests/test_embed_onnx.py); the index key marks them (``<id>+int8@<sha>``) so the two never mix.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .embed import (
    ONNX_FILE,
    TokenizingEncoder,
    cpu_threads,
    load_tokenizer,
    padded_batches,
    pool_normalize,
    read_model_info,
    text_prefixes,
)
from .errors import ModelError, first_line


class OnnxEmbedder(TokenizingEncoder):
    """The BERT encoder of a model directory on ONNX Runtime (``model.int8.onnx``).

    Same interface as :class:`codesearch.embed.TransformerEmbedder`: ``info``, ``encode``,
    ``token_counts``, ``tokens_encoded``, ``batch_size``; thread-safe (ONNX Runtime sessions run
    concurrently; tokenising is serialised).

    Args:
        model: Model directory, alias ("default", "base") or None for the shipped code-search model.
        max_length: Maximum tokens per document text.
        batch_size: Texts per forward pass (texts are sorted by length first).
        threads: ONNX Runtime intra-op threads; 0 means all cores.
    """

    def __init__(self, model: str | None = None, max_length: int = 128, batch_size: int = 32,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        self.info = read_model_info(model, max_length, runtime="onnx")
        path = Path(self.info.path)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self._positions = int(config.get("max_position_embeddings", 512))
        self.max_length = min(self.info.max_length, self._positions)
        self.batch_size = batch_size
        self.threads = threads if threads > 0 else cpu_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: ORT warns on stderr about harmless things
        # Worker threads sleep instead of spinning between operators: on a shared 2-core machine spinning
        # cost 25 % more CPU and more wall time for the same batch (measured under load).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        file = path / ONNX_FILE
        try:
            self._session = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"cannot load {file}: {first_line(exc)} (re-export it with "
                             f"`codesearch-train onnx {path}`, or set runtime = \"torch\")") from None
        inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise ModelError(f"{file} is not a codesearch encoder (inputs {sorted(inputs)})")
        self._token_types = "token_type_ids" in inputs
        self._output = self._session.get_outputs()[0].name
        self._prefix = text_prefixes(path)
        self._tok = load_tokenizer(path)
        self._lock = threading.Lock()

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
                raise ModelError(f"the ONNX encoder {self.info.path}/{ONNX_FILE} failed: {first_line(exc)}") \
                    from None
