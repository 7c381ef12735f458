"""NumpyEmbedder: the fp32 encoder in numpy, the product's default runtime: no torch on the query path.

It runs the same BERT forward pass as :class:`codesearch.embed.TransformerEmbedder` (embeddings, six
post-norm layers of fused-QKV attention and a GELU feed-forward, mean pooling over real tokens, L2 norm)
on the same ``model.safetensors`` weights, in float32 numpy with the matrix products on numpy's own BLAS.
Its vectors are the torch encoder's to float rounding (cosine above 0.99999 per vector, checked by
tests/test_embed_numpy.py), so both share one index key and one index: an index built on torch is
updated and queried here, and the other way round. Its imports are numpy, ``safetensors.numpy`` and the
Rust ``tokenizers`` library, which a cold ``codesearch query`` loads in a fraction of what ``import
torch`` alone costs (docs/benchmarks.md).

GELU needs the error function, which numpy lacks: :func:`erf` is the Abramowitz-Stegun 7.1.26 rational
approximation (absolute error below 1.5e-7 in exact arithmetic, 5e-7 evaluated in float32: within the
rounding of the float32 activations it is applied to).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .embed import (
    TokenizingEncoder,
    load_tokenizer,
    load_weights,
    padded_batches,
    pool_normalize,
    read_bert_config,
    read_model_info,
    text_prefixes,
)
from .errors import ModelError

_P, _A1, _A2, _A3, _A4, _A5 = 0.3275911, 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429
_SQRT_HALF = np.float32(0.7071067811865476)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of a float32 array (Abramowitz-Stegun 7.1.26, absolute error < 5e-7 in float32)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + _P * a)
    poly = t * (_A1 + t * (_A2 + t * (_A3 + t * (_A4 + t * _A5))))
    y = 1.0 - poly * np.exp(-a * a)
    return np.copysign(y, x).astype(np.float32, copy=False)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT and torch's ``F.gelu`` compute it."""
    return x * np.float32(0.5) * (np.float32(1.0) + erf(x * _SQRT_HALF))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


class BlasThreads:
    """Sets numpy's BLAS (OpenBLAS) thread count before each forward pass.

    The count is per process, not per encoder: an encoder sets its own each time it runs (one C call), so
    a one-thread query encoder and an all-cores bulk encoder can live in one process.
    """

    def __init__(self, n: int) -> None:
        from threadpoolctl import ThreadpoolController

        self.n = n
        self._libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]

    def apply(self) -> None:
        for lib in self._libs:
            if lib.get_num_threads() != self.n:
                lib.set_num_threads(self.n)


class NumpyEmbedder(TokenizingEncoder):
    """The BERT encoder of a model directory in float32 numpy (``model.safetensors``).

    Same interface as :class:`codesearch.embed.TransformerEmbedder`: ``info``, ``encode``,
    ``token_counts``, ``tokens_encoded``, ``batch_size``; thread-safe (one forward pass at a time).

    Args:
        model: Model directory, alias ("default", "base") or None for the shipped code-search model.
        max_length: Maximum tokens per document text.
        batch_size: Texts per forward pass (texts are sorted by length first).
        threads: BLAS threads; 0 means one. On these shared 2-core machines numpy's BLAS on two threads
            collapsed (0.15x torch's two-thread bulk rate under load, docs/benchmarks.md), so parallel
            encoding comes from one-thread encoders side by side (the daemon's ParallelEmbedder), not
            from BLAS threads.
    """

    def __init__(self, model: str | None = None, max_length: int = 128, batch_size: int = 32,
                 threads: int = 0) -> None:
        from safetensors.numpy import load_file

        self.info = read_model_info(model, max_length, runtime="numpy")
        path = Path(self.info.path)
        shape = read_bert_config(path)
        self._heads, self._layers, self._eps, self._positions = shape.heads, shape.layers, shape.eps, shape.positions
        self.max_length = min(self.info.max_length, self._positions)
        self.batch_size = batch_size
        self.threads = threads if threads > 0 else 1
        self._blas = BlasThreads(self.threads)
        self._w = self._prepare_weights(load_weights(path, load_file))
        self._prefix = text_prefixes(path)
        self._tok = load_tokenizer(path)
        self._lock = threading.Lock()

    def _prepare_weights(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """float32 weights; linear layers transposed to (in, out) and stored so (C order): ``x @ w`` is one GEMM.

        A query's few rows make each GEMM a pass over the weights, which BLAS reads faster in their own
        order than through a transposed view (matmuls of one query 6.9 ms against 8.8, measured by hand at
        load 1.5); the copy costs one pass per weight at load. The word
        embeddings (half the parameters) stay in the file's dtype (float16 for the shipped model): only the
        rows of a batch's tokens are converted, which gives the same numbers with half the memory.
        """
        words = raw.get("embeddings.word_embeddings.weight", raw.get("bert.embeddings.word_embeddings.weight"))
        w = {k.removeprefix("bert."): v for k, v in raw.items()}

        def f32(v: np.ndarray) -> np.ndarray:
            return np.asarray(v, dtype=np.float32)

        out: dict[str, np.ndarray] = {"embeddings.word_embeddings.weight": words}
        try:
            if words is None:
                raise KeyError("embeddings.word_embeddings.weight")
            for name in ("position_embeddings.weight", "token_type_embeddings.weight",
                         "LayerNorm.weight", "LayerNorm.bias"):
                out["embeddings." + name] = f32(w["embeddings." + name])
            for i in range(self._layers):
                p = f"encoder.layer.{i}."
                a = p + "attention.self."
                out[p + "qkv.w"] = np.ascontiguousarray(f32(np.concatenate(
                    [w[a + "query.weight"], w[a + "key.weight"], w[a + "value.weight"]])).T)
                out[p + "qkv.b"] = f32(np.concatenate([w[a + "query.bias"], w[a + "key.bias"], w[a + "value.bias"]]))
                for short, name in (("attn_out", "attention.output.dense"), ("inter", "intermediate.dense"),
                                    ("out", "output.dense")):
                    out[p + short + ".w"] = np.ascontiguousarray(f32(w[p + name + ".weight"]).T)
                    out[p + short + ".b"] = f32(w[p + name + ".bias"])
                for short, name in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
                    out[p + short + ".w"] = f32(w[p + name + ".weight"])
                    out[p + short + ".b"] = f32(w[p + name + ".bias"])
        except KeyError as exc:
            raise ModelError(f"weights are not a BERT encoder (missing {exc})") from None
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run the encoder. ids, mask: (batch, seq) int64 -> hidden states (batch, seq, dim)."""
        w, eps = self._w, self._eps
        batch, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids].astype(np.float32)
             + w["embeddings.position_embeddings.weight"][:seq][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        dim = x.shape[-1]
        heads, head_dim = self._heads, dim // self._heads
        # Padding keys get a large negative score (every row has at least one real token).
        bias = np.where(mask[:, None, None, :] > 0, np.float32(0), np.float32(-1e30)).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(head_dim))
        x = x.reshape(batch * seq, dim)
        for i in range(self._layers):
            p = f"encoder.layer.{i}."
            qkv = (x @ w[p + "qkv.w"] + w[p + "qkv.b"]).reshape(batch, seq, 3, heads, head_dim)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (batch, heads, seq, head_dim)
            scores = (q * scale) @ k.transpose(0, 1, 3, 2) + bias  # (batch, heads, seq, seq)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, dim)
            x = layer_norm(ctx @ w[p + "attn_out.w"] + w[p + "attn_out.b"] + x, w[p + "ln1.w"], w[p + "ln1.b"], eps)
            h = gelu(x @ w[p + "inter.w"] + w[p + "inter.b"])
            x = layer_norm(h @ w[p + "out.w"] + w[p + "out.b"] + x, w[p + "ln2.w"], w[p + "ln2.b"], eps)
        return x.reshape(batch, seq, dim)

    def _fill(self, out: np.ndarray, encodings: list[Any]) -> None:
        with self._lock:  # one forward pass at a time: the BLAS thread count is per process
            self._blas.apply()
            for chunk, ids, mask in padded_batches(encodings, self.batch_size):
                out[chunk] = pool_normalize(self._forward(ids, mask), mask)

