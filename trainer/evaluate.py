"""Held-out evaluation, CodeSearchNet protocol, per language; the repository and paraphrase benchmarks.

For each language, the test pool is that language's test pairs (seeded order, optionally capped). Each
of the first ``max_queries`` queries is ranked

* against its own document plus 999 distractors drawn (seeded, per query) from the rest of the pool, the
  CodeSearchNet setting (fewer when the pool is smaller: the count is reported), and
* against the whole pool.

Metrics are MRR@10 and Recall@1 (and Recall@10, nDCG@10) from ``codesearch.eval``. Documents are built
with the model's ``doc_text_format`` and token limit (its manifest; the packaged model gets the index
defaults), so the numbers describe what the index would do with that model.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codesearch.eval import evaluate as ir_metrics
from codesearch.eval import mrr_at_k

from .data import Pair
from .model import Encoder

log = logging.getLogger(__name__)

#: Index defaults (codesearch.config.Settings) used for a model without a manifest.
DEFAULT_DOC_TEXT_FORMAT = "header_doc_code"
DEFAULT_MAX_LENGTH = 256
QUERY_MAX_LENGTH = 128
KS = (1, 10)


def _top_ids(scores: np.ndarray, ids: Sequence[str], k: int) -> list[str]:
    """The ids of the ``k`` best scores, best first (ties broken by position)."""
    k = min(k, len(ids))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.lexsort((part, -scores[part]))]
    return [ids[int(i)] for i in order]


def _by_language(pairs: Sequence[Pair]) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        out[p.language].append(p)
    return dict(sorted(out.items()))


def model_text_settings(encoder: Encoder) -> tuple[str, int]:
    """(doc_text_format, document max_length) the index would use with this model."""
    fmt = str(encoder.manifest.get("doc_text_format") or DEFAULT_DOC_TEXT_FORMAT)
    return fmt, int(encoder.manifest.get("max_length", DEFAULT_MAX_LENGTH))


def evaluate_pairs(encoder: Encoder, pairs: Sequence[Pair], distractors: int = 999, max_queries: int = 1000,
                   max_pool: int = 0, seed: int = 0, doc_text_format: str | None = None,
                   doc_max_length: int | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Per-language MRR@10 and Recall@1 on held-out pairs.

    Args:
        encoder: The model.
        pairs: Test pairs (all languages).
        distractors: Distractors per query (CodeSearchNet: 999).
        max_queries: Queries per language (the first of the seeded pool order).
        max_pool: Cap on the pool per language (0: the whole test split of the language).
        seed: Seed of the pool order and the distractor draws.
        doc_text_format: Document format (default: the model's).
        doc_max_length: Document token limit (default: the model's).
        batch_size: Encoding batch size.

    Returns:
        {"settings": {...}, "languages": {lang: {"distractors": metrics, "pool": metrics}}, "macro": {...}}.
    """
    fmt, length = model_text_settings(encoder)
    fmt = doc_text_format or fmt
    length = doc_max_length or length
    result: dict[str, Any] = {
        "settings": {"distractors": distractors, "max_queries": max_queries, "max_pool": max_pool, "seed": seed,
                     "doc_text_format": fmt, "doc_max_length": length},
        "languages": {},
    }
    for lang, group in _by_language(pairs).items():
        order = np.random.default_rng([seed, len(lang), sum(map(ord, lang))]).permutation(len(group))
        pool = [group[int(i)] for i in order]
        if max_pool:
            pool = pool[:max_pool]
        queries = pool[:max_queries]
        ids = [p.id for p in pool]
        d = encoder.encode([p.document(fmt) for p in pool], "document", length, batch_size)  # (pool, dim)
        q = encoder.encode([p.query for p in queries], "query", QUERY_MAX_LENGTH, batch_size)  # (nq, dim)
        sims = q @ d.T  # (nq, pool)
        relevant = {p.id: {p.id} for p in queries}
        ranked_pool = {p.id: _top_ids(sims[i], ids, 10) for i, p in enumerate(queries)}
        ranked_dis: dict[str, list[str]] = {}
        n_dis = min(distractors, len(pool) - 1)
        for i, p in enumerate(queries):
            others = np.delete(np.arange(len(pool)), i)
            rng = np.random.default_rng([seed, 7919, i])
            cand = np.concatenate([[i], rng.choice(others, size=n_dis, replace=False)])
            ranked_dis[p.id] = _top_ids(sims[i, cand], [ids[int(c)] for c in cand], 10)
        result["languages"][lang] = {
            "queries": len(queries), "pool": len(pool), "distractors_per_query": n_dis,
            "distractors": _rounded(ir_metrics(ranked_dis, relevant, KS)),
            "pool_ranking": _rounded(ir_metrics(ranked_pool, relevant, KS)),
        }
        log.info("%s: MRR@10 %.3f (999 distractors), %.3f (whole pool of %d)", lang,
                 result["languages"][lang]["distractors"]["mrr@10"],
                 result["languages"][lang]["pool_ranking"]["mrr@10"], len(pool))
    langs = result["languages"]
    if langs:
        result["macro"] = {
            proto: {m: round(sum(v[proto][m] for v in langs.values()) / len(langs), 4)
                    for m in ("mrr@10", "recall@1", "recall@10")}
            for proto in ("distractors", "pool_ranking")}
    return result


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in metrics.items()}


def dev_mrr(encoder: Encoder, pairs: Sequence[Pair], doc_text_format: str, query_max_length: int,
            doc_max_length: int, batch_size: int = 32) -> dict[str, Any]:
    """MRR@10 of each dev query against its language's dev sample (the running score while training).

    Returns:
        {"mrr@10": macro average, "languages": {lang: mrr@10}}.
    """
    per: dict[str, float] = {}
    for lang, pool in _by_language(pairs).items():
        ids = [p.id for p in pool]
        d = encoder.encode([p.document(doc_text_format) for p in pool], "document", doc_max_length, batch_size)
        q = encoder.encode([p.query for p in pool], "query", query_max_length, batch_size)
        sims = q @ d.T  # (n, n)
        ranked = {p.id: _top_ids(sims[i], ids, 10) for i, p in enumerate(pool)}
        per[lang] = round(mrr_at_k(ranked, {p.id: {p.id} for p in pool}, 10), 4)
    return {"mrr@10": round(sum(per.values()) / len(per), 4) if per else 0.0, "languages": per}


def sample_per_language(pairs: Sequence[Pair], per_language: int, seed: int) -> list[Pair]:
    """A seeded sample of at most ``per_language`` pairs of each language."""
    out: list[Pair] = []
    for lang, group in _by_language(pairs).items():
        order = np.random.default_rng([seed, sum(map(ord, lang))]).permutation(len(group))
        out.extend(group[int(i)] for i in order[:per_language])
    return out


def markdown_table(results: dict[str, dict[str, Any]], protocol: str = "distractors") -> str:
    """One row per language, one MRR@10 / R@1 column pair per model.

    Args:
        results: {model label: evaluate_pairs result}.
        protocol: "distractors" (999 distractors) or "pool_ranking" (whole test pool).

    Returns:
        A markdown table.
    """
    labels = list(results)
    langs = sorted({lang for r in results.values() for lang in r["languages"]})
    head = "| language | queries | " + " | ".join(f"{m} MRR@10 | {m} R@1" for m in labels) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(labels)
    rows = [head, sep]
    for lang in langs:
        first = next(r["languages"][lang] for r in results.values() if lang in r["languages"])
        cells = []
        for m in labels:
            v = results[m]["languages"].get(lang)
            cells.append(f"{v[protocol]['mrr@10']:.3f} | {v[protocol]['recall@1']:.3f}" if v else "- | -")
        rows.append(f"| {lang} | {first['queries']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def benchmark_leakage(train_pairs: Sequence[Pair], bench_files: dict[str, set[str]]) -> dict[str, int]:
    """Training pairs whose file is in a prepared benchmark repository (must be 0 everywhere).

    Args:
        train_pairs: The training split.
        bench_files: {language: {"<source>/<path>"}} from ``bench/out/quality/<lang>/selection.json``.

    Returns:
        {language: number of leaking training pairs}.
    """
    out: dict[str, int] = {}
    for lang, files in bench_files.items():
        out[lang] = sum(1 for p in train_pairs if p.language == lang and f"{p.source}/{p.path}" in files)
    return out


def run_repo_benchmark(model_dir: Path, out_json: Path, languages: Sequence[str]) -> dict[str, Any]:
    """Run ``bench/quality.py`` (semantic mode) with a model directory; returns its JSON report.

    Args:
        model_dir: Model directory.
        out_json: Where the benchmark writes its report.
        languages: Languages to run.
    """
    from .corpora import BENCH

    cmd = [sys.executable, str(BENCH / "quality.py"), "--modes", "semantic", "--out", str(out_json),
           "--langs", *languages, "--model", str(model_dir)]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return dict(json.loads(out_json.read_text(encoding="utf-8")))


def run_paraphrase_benchmark(model_dirs: dict[str, Path], out_json: Path, languages: Sequence[str]) -> dict[str, Any]:
    """Run ``bench/paraphrase.py`` with the base model, the shipped default and ``model_dirs``.

    The paraphrased queries were written against the 1,500-unit copies that ``bench/quality.py
    --prepare-only --max-units 1500 --max-queries 200`` prepares; they live in ``bench/out-para`` (unless
    ``CODESEARCH_BENCH_OUT`` says otherwise), apart from the 3,000-unit copies of the repository benchmark.
    Every index is refreshed, so a changed shipped model is re-indexed. The report gets the SHA-256 of
    each model's weights (``model_sha256``, by label; the shipped model is ``default`` there), so a
    verdict can refuse figures of other weights.

    Args:
        model_dirs: {label: model directory} of the models to score besides ``base`` and ``default``.
        out_json: Where the report goes.
        languages: Languages to run.

    Returns:
        The report.
    """
    import os

    from codesearch.embed import SHIPPED_MODEL, base_model_dir

    from .corpora import BENCH
    from .train import file_sha256

    cmd = [sys.executable, str(BENCH / "paraphrase.py"), "--models", "base", "default", "--refresh",
           "--no-fixtures", "--langs", *languages, "--out", str(out_json)]
    for label, path in model_dirs.items():
        cmd += ["--model-dir", f"{label}={path}"]
    env = {**os.environ, "CODESEARCH_BENCH_OUT": os.environ.get("CODESEARCH_BENCH_OUT") or str(BENCH / "out-para")}
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)
    report = dict(json.loads(out_json.read_text(encoding="utf-8")))
    dirs = {"base": base_model_dir(), "default": SHIPPED_MODEL, **model_dirs}
    report["model_sha256"] = {label: file_sha256(Path(d) / "model.safetensors") for label, d in dirs.items()}
    out_json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report

