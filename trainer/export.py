"""Export: the directory ``codesearch.embed.TransformerEmbedder`` loads, plus a manifest of its history.

Files: ``config.json`` (BERT config), ``model.safetensors`` (encoder weights, keys ``embeddings.*`` /
``encoder.layer.*``, float16 by default), ``tokenizer.json``, ``manifest.json`` and a short ``README.md``.

``manifest.json`` holds what the encoder reads (``model_id``, ``doc_text_format``, ``query_prefix``,
``document_prefix``), the document token limit it was exported for (``max_length``; the index's
``max_length`` setting decides) and what makes the model reproducible and judgeable: the base
model (id and SHA-256), the data manifest (sources and versions, counts, file hashes), the TrainConfig of
each stage, the metrics measured, and the shipping verdict (:func:`verdict`): the model replaces the
default only if it beats both the base model and the current default in every language on docstring
queries (the held-out split and the repository benchmark) *and* on plain-language queries (the tune
split of ``bench/queries/paraphrased``, scored by ``bench/paraphrase.py``).
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


#: The measures of the ship rule, in the order the reason names the first that fails.
MEASURES = ("held_out", "repository", "paraphrased")
#: The paraphrased queries' split the rule reads (``report`` is kept for the figures quoted in docs).
PARAPHRASE_SPLIT = "tune"


def _mrr(measure: str, result: dict[str, Any], lang: str) -> float | None:
    """A language's MRR@10 in one measure's result (None when it is missing).

    ``held_out``: a ``trainer.evaluate.evaluate_pairs`` result (999 distractors); ``repository``: a
    ``bench/quality.py`` report (semantic mode); ``paraphrased``: one model's block of a
    ``bench/paraphrase.py`` report's ``results`` (paraphrased queries, :data:`PARAPHRASE_SPLIT`, semantic mode).
    """
    try:
        if measure == "held_out":
            return float(result["languages"][lang]["distractors"]["mrr@10"])
        if measure == "repository":
            return float(result["results"][lang]["modes"]["semantic"]["mrr@10"])
        return float(result[lang]["paraphrased"][PARAPHRASE_SPLIT]["semantic"]["mrr@10"])
    except (KeyError, TypeError):
        return None


def verdict(held_out: dict[str, dict[str, Any]], repo: dict[str, dict[str, Any]] | None,
            base: str = "base", candidate: str = "final",
            paraphrased: dict[str, dict[str, Any]] | None = None, default: str | None = None) -> dict[str, Any]:
    """Whether ``candidate`` beats every reference model in every language, on every measure.

    The references are the base model and, when ``default`` is given, the current default (the shipped
    model). The measures: docstring queries on the held-out split and on the repository benchmark, and
    plain-language queries (the paraphrased set's ``tune`` split; its ``report`` split stays unseen by
    the rule, for the figures quoted). All semantic-only MRR@10: the encoder's own ranking, independent
    of the fusion, which is tuned for whichever model is shipped. A tie does not beat.

    Args:
        held_out: {label: trainer.evaluate.evaluate_pairs result}.
        repo: {label: bench/quality.py report}, or None when the repository benchmark was not run.
        base: Label of the base model.
        candidate: Label of the trained model.
        paraphrased: {label: results block of bench/paraphrase.py for that model}, or None when not run.
        default: Label of the current default model (None: compare with the base model only).

    Returns:
        {"references": [...], "held_out" / "repository" / "paraphrased": {reference: {lang: bool}} or None
        when that measure was not run, "ship": bool, "reason": str}.
    """
    refs = [base] + ([default] if default and default != base else [])
    sources = {"held_out": held_out, "repository": repo, "paraphrased": paraphrased}
    what = {"held_out": "the held-out split", "repository": "the repository benchmark",
            "paraphrased": f"the paraphrased queries ({PARAPHRASE_SPLIT} split)"}
    out: dict[str, Any] = {"references": refs, "ship": False, "reason": "",
                           "paraphrase_split": PARAPHRASE_SPLIT}
    reasons = []
    for measure in MEASURES:
        results = sources[measure]
        missing = [label for label in [*refs, candidate] if not results or label not in results]
        if missing:
            out[measure] = None
            reasons.append(f"{what[measure]}: results missing for {', '.join(missing)}")
            continue
        assert results is not None
        out[measure] = {}
        for ref in refs:
            checks = {}
            for lang in LANGUAGES:
                c, r = _mrr(measure, results[candidate], lang), _mrr(measure, results[ref], lang)
                checks[lang] = c is not None and r is not None and c > r
            out[measure][ref] = checks
            lost = [lang for lang, ok in checks.items() if not ok]
            if lost:
                reasons.append(f"does not beat {ref} on {what[measure]} in {', '.join(lost)}")
    if reasons:
        out["reason"] = "; ".join(reasons)
    else:
        out["ship"] = True
        out["reason"] = (f"beats {' and '.join(refs)} on the held-out split, the repository benchmark and the "
                         f"paraphrased queries in every language")
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
        "`model.fp32.graph.onnx` and `model.int8.onnx` (written by `codesearch-train export`, or "
        "`codesearch-train onnx DIR`) are the same encoder for ONNX Runtime: the fused fp32 graph without its "
        "weights (rebuilt from `model.safetensors` by `model.fp32.graph.json`; codesearch's daemon and editor "
        "server run it), and int8 weights (setting `runtime = \"onnx\"`).",
        "",
        "Training data: docstring/code pairs mined from the packages listed in manifest.json "
        "(`data.sources`), under their own licences.",
        "",
        f"Shipping verdict: {json.dumps(manifest.get('ship', {}))}",
        "",
    ]
    return "\n".join(lines)
