"""Export: the directory ``codesearch.embed.TransformerEmbedder`` loads, plus a manifest of its history.

Files: ``config.json`` (BERT config), ``model.safetensors`` (encoder weights, keys ``embeddings.*`` /
``encoder.layer.*``, float16 by default), ``tokenizer.json``, ``manifest.json`` and a short ``README.md``.

``manifest.json`` holds what the encoder reads (``model_id``, ``doc_text_format``, ``query_prefix``,
``document_prefix``), the document token limit it was exported for (``max_length``; the index's
``max_length`` setting decides) and what makes the model reproducible and judgeable: the base
model (id and SHA-256), the data manifest (sources and versions, counts, file hashes), the TrainConfig of
each stage, the metrics measured, and the shipping verdict: the model should replace the default only if
it beats the base model on the held-out split *and* on the repository benchmark in every language.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .model import Encoder

__all__ = ["export_model", "verdict"]

LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")


def verdict(held_out: dict[str, dict[str, Any]], repo: dict[str, dict[str, Any]] | None,
            base: str = "base", candidate: str = "final") -> dict[str, Any]:
    """Whether ``candidate`` beats ``base`` in every language, on both measures.

    Args:
        held_out: {label: trainer.evaluate.evaluate_pairs result}; uses MRR@10 with 999 distractors.
        repo: {label: bench/quality.py report} or None when the repository benchmark was not run.
        base: Label of the base model.
        candidate: Label of the trained model.

    Returns:
        {"held_out": {lang: bool}, "repository": {lang: bool} | None, "ship": bool, "reason": str}.
    """
    out: dict[str, Any] = {"held_out": {}, "repository": None, "ship": False, "reason": ""}
    if base not in held_out or candidate not in held_out:
        out["reason"] = "held-out results missing"
        return out
    for lang in LANGUAGES:
        b = held_out[base]["languages"].get(lang)
        c = held_out[candidate]["languages"].get(lang)
        out["held_out"][lang] = bool(b and c and c["distractors"]["mrr@10"] > b["distractors"]["mrr@10"])
    if repo and base in repo and candidate in repo:
        out["repository"] = {}
        for lang in LANGUAGES:
            try:
                b_mrr = repo[base]["results"][lang]["modes"]["semantic"]["mrr@10"]
                c_mrr = repo[candidate]["results"][lang]["modes"]["semantic"]["mrr@10"]
            except KeyError:
                out["repository"][lang] = False
                continue
            out["repository"][lang] = c_mrr > b_mrr
    if not all(out["held_out"].values()):
        out["reason"] = "does not beat the base model on the held-out split in every language"
    elif out["repository"] is None:
        out["reason"] = "repository benchmark not run"
    elif not all(out["repository"].values()):
        out["reason"] = "does not beat the base model on the repository benchmark in every language"
    else:
        out["ship"] = True
        out["reason"] = "beats the base model on both measures in every language"
    return out


def export_model(model_dir: Path, out_dir: Path, *, model_id: str = "codesearch-minilm-gte",
                 dtype: str = "float16", max_length: int | None = None,
                 data_manifest: dict[str, Any] | None = None, train_configs: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, ship: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a shippable model directory.

    Args:
        model_dir: The trained model (a stage's ``model/``).
        out_dir: Export directory (files in it are replaced).
        model_id: The identity recorded in every index built with the model.
        dtype: "float16" or "float32" weights on disk (the encoder computes in float32 either way).
        max_length: Document token limit it is exported for (default: the stage model's); recorded only.
        data_manifest: The data manifest of the training data.
        train_configs: {stage: TrainConfig dict}.
        metrics: Measured results (held-out and repository benchmark).
        ship: The :func:`verdict`.

    Returns:
        The manifest written.
    """
    encoder = Encoder.from_dir(model_dir)
    src = encoder.manifest
    manifest: dict[str, Any] = {
        "model_id": model_id,
        "max_length": int(max_length or src.get("max_length", 256)),
        "doc_text_format": src.get("doc_text_format", "header_doc_code"),
        "query_prefix": src.get("query_prefix", ""),
        "document_prefix": src.get("document_prefix", ""),
        "pooling": "mean",
        "normalize": True,
        "dtype": dtype,
        "stage": src.get("stage"),
        # Without the absolute path it was loaded from on the training machine.
        "base_model": {k: v for k, v in src.get("base_model", {}).items() if k != "path"},
        "data": _data_summary(data_manifest or {}),
        "train_configs": train_configs or {"stage": src.get("train_config", {})},
        "metrics": metrics or {},
        "ship": ship or {"ship": False, "reason": "not evaluated"},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "trainer": "codesearch trainer (GTE-style multi-stage contrastive training)",
    }
    torch_dtype = {"float16": torch.float16, "float32": torch.float32}[dtype]
    encoder.save(out_dir, torch_dtype, manifest)
    (out_dir / "README.md").write_text(_model_card(manifest), encoding="utf-8")
    return manifest


def _data_summary(data: dict[str, Any]) -> dict[str, Any]:
    keep = ("sources", "rules", "pairs", "counts", "files", "duplicates_dropped", "benchmark_holdout",
            "corpora")
    return {k: data[k] for k in keep if k in data}


def _model_card(manifest: dict[str, Any]) -> str:
    base = manifest.get("base_model", {})
    lines = [
        f"# {manifest['model_id']}",
        "",
        "A code-search sentence encoder for `codesearch`, fine-tuned from "
        f"{base.get('model_id', 'its base model')} (Apache-2.0) with the GTE multi-stage contrastive recipe "
        "(see docs/training.md of the codesearch repository).",
        "",
        "Load it with `codesearch index --model DIR` (or `TransformerEmbedder(DIR)`): mean pooling, L2 "
        f"normalisation, documents as `{manifest['doc_text_format']}`, exported for {manifest['max_length']} tokens.",
        "",
        "`model.int8.onnx` (written by `codesearch-train export`, or `codesearch-train onnx DIR`) is the same "
        "encoder for ONNX Runtime with int8 weights, which codesearch runs by default (setting `runtime`).",
        "",
        "Training data: docstring/code pairs mined from the packages listed in manifest.json "
        "(`data.sources`), under their own licences.",
        "",
        f"Shipping verdict: {json.dumps(manifest.get('ship', {}))}",
        "",
    ]
    return "\n".join(lines)
