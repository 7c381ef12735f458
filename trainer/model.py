"""Encoder = Hugging Face ``BertModel`` + ``codesearch.embed.mean_pool`` + L2 normalisation.

Loads only from a local directory in the layout ``codesearch.embed.TransformerEmbedder`` reads
(``config.json``, ``model.safetensors``, ``tokenizer.json``, optional ``manifest.json``): the weights are
read with safetensors and the model is built from its config, so no code path can reach a model hub.
Texts are tokenised exactly as ``TransformerEmbedder`` does (prefix from the manifest, characters capped
at 12 per token, truncation to the token limit, no padding inside the tokenizer), so the vectors of a
trained model equal those the index computes after export.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from codesearch.embed import mean_pool

log = logging.getLogger(__name__)

#: Characters kept per text before tokenising (the same cap as codesearch.embed).
CHARS_PER_TOKEN_CAP = 12
#: Manifest keys the encoder itself uses.
TEXT_KEYS = ("query_prefix", "document_prefix")


def load_bert(path: Path, attn_implementation: str | None = None) -> tuple[Any, Any]:
    """A Hugging Face ``BertModel`` (fp32, no pooler) and its config from a model directory's
    config.json and model.safetensors; ``attn_implementation`` (e.g. "eager") if given."""
    from transformers import BertConfig, BertModel

    config = BertConfig.from_dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    bert = BertModel(config, add_pooling_layer=False)
    weights = {k.removeprefix("bert."): v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
    wanted = bert.state_dict()
    missing = [k for k in wanted if k not in weights and not k.endswith("position_ids")]
    if missing:
        raise ValueError(f"weights in {path} lack {len(missing)} tensors, e.g. {missing[:3]}")
    bert.load_state_dict({k: v for k, v in weights.items() if k in wanted}, strict=False)
    return bert, config


class Encoder(torch.nn.Module):
    """A BERT sentence encoder: mean pooling over real tokens, then L2 normalisation.

    Args:
        bert: A ``transformers.BertModel`` (no pooling layer needed).
        tokenizer: A ``tokenizers.Tokenizer`` (BERT WordPiece with [CLS]/[SEP] post-processing).
        manifest: The model directory's manifest (prefixes, max_length, doc_text_format), or {}.
    """

    def __init__(self, bert: Any, tokenizer: Tokenizer, manifest: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.bert = bert
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.manifest = dict(manifest or {})
        self.dim = int(bert.config.hidden_size)
        self.max_positions = int(bert.config.max_position_embeddings)
        #: "fp32", or "bf16" to run the transformer under autocast (pooling and norm stay fp32).
        self.precision = "fp32"

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_dir(cls, path: str | Path) -> Encoder:
        """Load an encoder from a model directory (the packaged model, a checkpoint or an export).

        Args:
            path: Directory with config.json, model.safetensors and tokenizer.json (or vocab.txt).

        Returns:
            The encoder in eval mode, fp32, on CPU.
        """
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"not a model directory (no config.json): {path}")
        bert, _config = load_bert(path)
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        return cls(bert, load_tokenizer(path), manifest).eval()

    @classmethod
    def from_config(cls, config: dict[str, Any], tokenizer: Tokenizer, seed: int = 0) -> Encoder:
        """A randomly initialised encoder of the given BERT shape (tests and from-scratch experiments).

        Args:
            config: BertConfig fields (e.g. ``trainer.config.model_config("tiny")``); ``vocab_size`` is
                set to the tokenizer's.
            tokenizer: The tokenizer.
            seed: Initialisation seed.

        Returns:
            The encoder in eval mode.
        """
        from transformers import BertConfig, BertModel

        cfg = BertConfig.from_dict({**config, "vocab_size": tokenizer.get_vocab_size()})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bert = BertModel(cfg, add_pooling_layer=False)
        return cls(bert, tokenizer, {}).eval()

    # ------------------------------------------------------------------------------------------- saving

    def save(self, path: str | Path, dtype: torch.dtype = torch.float32,
             manifest: dict[str, Any] | None = None) -> None:
        """Write the directory layout ``codesearch.embed.TransformerEmbedder`` loads.

        Args:
            path: Target directory (created; files in it are replaced).
            dtype: Weight dtype on disk (float32 for checkpoints, float16 is enough for shipping).
            manifest: manifest.json content (default: the encoder's own manifest).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.bert.config.to_dict()
        config["architectures"] = ["BertModel"]
        config.pop("_attn_implementation_autoset", None)
        (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.bert.state_dict().items()
                 if not k.endswith("position_ids")}
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
        (path / "model.safetensors").chmod(0o644)  # safetensors creates it 0600; a shipped model must be readable
        self.tokenizer.save(str(path / "tokenizer.json"))
        (path / "manifest.json").write_text(
            json.dumps(manifest if manifest is not None else self.manifest, indent=2) + "\n", encoding="utf-8")

    # ----------------------------------------------------------------------------------------- encoding

    def tokenize(self, texts: Sequence[str], max_length: int, kind: str = "document",
                 device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Tokenise like ``TransformerEmbedder`` and pad to the longest text.

        Args:
            texts: The texts.
            max_length: Token limit (capped at the model's positions).
            kind: "query" or "document" (chooses the manifest prefix).
            device: Where the tensors go.

        Returns:
            {"input_ids": (n, seq), "attention_mask": (n, seq)}, int64.
        """
        limit = min(max_length, self.max_positions)
        prefix = str(self.manifest.get(f"{kind}_prefix", ""))
        cap = limit * CHARS_PER_TOKEN_CAP
        self.tokenizer.enable_truncation(limit)
        encodings = self.tokenizer.encode_batch([prefix + t[:cap] for t in texts])
        width = max((len(e.ids) for e in encodings), default=1)
        ids = torch.zeros((len(texts), width), dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, enc in enumerate(encodings):
            ids[row, :len(enc.ids)] = torch.tensor(enc.ids, dtype=torch.long)
            mask[row, :len(enc.ids)] = 1
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed tokenised texts.

        Args:
            inputs: {"input_ids": (n, seq), "attention_mask": (n, seq)}.

        Returns:
            L2-normalised embeddings, (n, dim).
        """
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            hidden = self.bert(input_ids=ids, attention_mask=mask,
                               token_type_ids=torch.zeros_like(ids)).last_hidden_state  # (n, seq, dim)
        pooled = mean_pool(hidden.float(), mask)  # (n, dim)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], kind: str = "document", max_length: int = 256,
               batch_size: int = 32, device: torch.device | str | None = None) -> np.ndarray:
        """Embed texts for evaluation (eval mode, sorted by length to avoid padding).

        Args:
            texts: The texts.
            kind: "query" or "document".
            max_length: Token limit.
            batch_size: Texts per forward pass.
            device: Device (default: where the model is).

        Returns:
            float32 array (len(texts), dim).
        """
        was_training = self.training
        self.eval()
        device = device or next(self.parameters()).device
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenize([texts[i] for i in idx], max_length, kind, device)
                emb = self(batch)
                out[idx] = emb.float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------------------------------ freezing

    def freeze_lower(self, layers: int) -> int:
        """Freeze the embeddings and the lowest ``layers`` transformer layers (0: freeze nothing).

        Returns:
            The number of trainable parameters left.
        """
        if layers > 0:
            for p in self.bert.embeddings.parameters():
                p.requires_grad_(False)
            for layer in self.bert.encoder.layer[:layers]:
                for p in layer.parameters():
                    p.requires_grad_(False)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer of a model directory (tokenizer.json, else a lower-casing WordPiece from vocab.txt)."""
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    if (path / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        wp = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=True)
        return Tokenizer.from_str(wp.to_str())
    raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {path}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve "auto": bf16 autocast on CUDA, fp32 on CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)
