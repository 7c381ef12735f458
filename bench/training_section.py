"""Render the trained encoder's results into docs/benchmarks.md and docs/training.md (section ``training``).

Usage::

    python bench/training_section.py [--work trainer/runs/default]

Reads only files the measuring commands wrote:

* ``WORK/eval/<model>.json``: ``codesearch-train eval --models base stage1 stage2`` (held-out test split,
  CodeSearchNet protocol: each query against 999 distractors, and against the whole test pool);
* ``WORK/eval/repo-<model>.json``: ``bench/quality.py --model DIR --out ...`` (the repository benchmark);
* ``WORK/stage<N>/log.jsonl`` and ``done.json``: per-step training times and dev MRR;
* ``codesearch/model/manifest.json``: what the package ships (model id, stage, verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT  # noqa: E402
from report import DOCS, replace_section  # noqa: E402

LANGS = ("go", "java", "javascript", "php", "python", "ruby")
MODELS = ("base", "stage1", "stage2")
TRAINING_DOC = ROOT / "docs" / "training.md"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def held_out_table(evals: dict[str, Any], protocol: str, shipped: str) -> list[str]:
    """Rows: language; columns: MRR@10 / R@1 of each model, then the shipped model's MRR@10 gain."""
    labels = [m for m in MODELS if m in evals]
    rows = ["| language | queries | " + " | ".join(f"{m} MRR@10 / R@1" for m in labels)
            + f" | {shipped} - base (MRR@10) |", "|---|---:|" + "---:|" * len(labels) + "---:|"]
    macro: dict[str, list[float]] = {m: [] for m in labels}
    for lang in LANGS:
        cells, values = [], {}
        for m in labels:
            v = evals[m]["languages"].get(lang)
            cells.append(f"{v[protocol]['mrr@10']:.3f} / {v[protocol]['recall@1']:.3f}" if v else "-")
            if v:
                values[m] = v[protocol]["mrr@10"]
                macro[m].append(v[protocol]["mrr@10"])
        queries = evals[labels[0]]["languages"][lang][protocol].get("queries", "")
        gain = f"{values[shipped] - values['base']:+.3f}" if shipped in values and "base" in values else "-"
        rows.append(f"| {lang} | {int(queries) if queries else ''} | " + " | ".join(cells) + f" | {gain} |")
    means = {m: sum(v) / len(v) for m, v in macro.items() if v}
    gain = f"{means[shipped] - means['base']:+.3f}" if shipped in means and "base" in means else "-"
    rows.append("| **macro** | | " + " | ".join(f"**{means[m]:.3f}**" for m in labels) + f" | **{gain}** |")
    return rows


def repo_table(base: dict[str, Any], trained: dict[str, Any]) -> list[str]:
    """Rows: language; semantic and hybrid MRR@10 of the base and the shipped model on the repository benchmark."""
    modes = [m for m in ("semantic", "hybrid") if all(m in r["results"][lang]["modes"]
                                                      for r in (base, trained) for lang in LANGS)]
    head = "| language | queries | " + " | ".join(f"{m} base | {m} shipped | gain" for m in modes) + " |"
    rows = [head, "|---|---:|" + "---:|---:|---:|" * len(modes)]
    sums: dict[tuple[str, str], float] = {}
    for lang in LANGS:
        cells = []
        for mode in modes:
            b = base["results"][lang]["modes"][mode]["mrr@10"]
            t = trained["results"][lang]["modes"][mode]["mrr@10"]
            sums[(mode, "b")] = sums.get((mode, "b"), 0.0) + b
            sums[(mode, "t")] = sums.get((mode, "t"), 0.0) + t
            cells.append(f"{b:.3f} | {t:.3f} | {t - b:+.3f}")
        queries = trained["results"][lang]["modes"][modes[0]].get("queries", "")
        rows.append(f"| {lang} | {int(queries) if queries else ''} | " + " | ".join(cells) + " |")
    n = len(LANGS)
    cells = [f"**{sums[(m, 'b')] / n:.3f}** | **{sums[(m, 't')] / n:.3f}** | "
             f"**{(sums[(m, 't')] - sums[(m, 'b')]) / n:+.3f}**" for m in modes]
    rows.append("| **macro** | | " + " | ".join(cells) + " |")
    return rows


def stage_rows(work: Path) -> list[str]:
    """Per stage: steps x batch, pairs seen, summed step time, pairs/s, dev MRR@10 at the start and the end."""
    rows = ["| stage | steps x pairs | texts per pair | summed step time | pairs/s | dev MRR@10 start -> end |",
            "|---|---:|---:|---:|---:|---:|"]
    for stage in ("stage1", "stage2"):
        log_path, done = work / stage / "log.jsonl", _read(work / stage / "done.json")
        if not log_path.is_file() or not done:
            continue
        records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        steps = [r for r in records if "loss" in r]
        devs = [r for r in records if "dev" in r]
        seconds = sum(r["seconds"] for r in steps)
        pairs = sum(r["pairs"] for r in steps)
        cfg = done["train_config"]
        start = next((f"{r['dev']['mrr@10']:.3f}" for r in devs if r["step"] == -1), "-")
        end = f"{devs[-1]['dev']['mrr@10']:.3f}" if devs else "-"
        texts = 2 + int(cfg.get("hard_negatives", 0))
        rows.append(f"| {stage} | {cfg['steps']} x {cfg['batch_size']} | {texts} | {seconds / 60:.1f} min "
                    f"| {pairs / seconds:.1f} | {start} -> {end} |")
    return rows


def section(work: Path) -> str:
    """The markdown of the ``training`` section."""
    evals = {m: v for m in MODELS if (v := _read(work / "eval" / f"{m}.json"))}
    manifest = _read(ROOT / "codesearch" / "model" / "manifest.json") or {}
    shipped = f"stage{manifest.get('stage', 2)}"
    if shipped not in evals:
        shipped = [m for m in MODELS if m in evals][-1]
    settings = evals[shipped]["settings"] if evals else {}
    verdict = manifest.get("ship", {}).get("reason", "not exported")
    try:
        rel = work.resolve().relative_to(ROOT)
    except ValueError:
        rel = work
    flag = "" if str(rel) == "trainer/runs/default" else f" --work {rel}"
    body = [
        "## Trained encoder (`trainer/`)",
        "",
        "The default model of a fresh install is all-MiniLM-L6-v2 fine-tuned for code search by `trainer/`",
        "(GTE-style two-stage contrastive training on docstring/code pairs mined from the corpora; recipe, data",
        "and what each stage bought in [training.md](training.md)). "
        f"Shipped: `{manifest.get('model_id', '?')}` from {shipped}; verdict: {verdict}.",
        "",
        f"Reproduce (`{rel}` is the work directory):",
        "",
        "```sh",
        f".venv/bin/codesearch-train all{flag}      # corpora, mine, stage 1, stage 2, eval, export",
        f".venv/bin/python bench/quality.py --model base --out {rel}/eval/repo-base.json",
        f".venv/bin/python bench/quality.py --model {rel}/export --out {rel}/eval/repo-{shipped}.json",
        f".venv/bin/codesearch-train export{flag} --ship   # verdict; ships to codesearch/model if it wins",
        f".venv/bin/python bench/training_section.py{flag}   # this section, here and in docs/training.md",
        "```",
        "",
        f"### Held-out test split, {settings.get('distractors_per_query', 999)} distractors per query "
        "(CodeSearchNet protocol)",
        "",
        "Packages never seen in training (split by package; the repository benchmark's packages are forced into",
        f"this split). Up to {settings.get('max_queries', '?')} queries per language, seeded; each ranked against "
        "its code and 999 code snippets drawn from the same language's test pool.",
        "",
        *held_out_table(evals, "distractors", shipped),
        "",
        "### Held-out test split, each query against the whole test pool",
        "",
        *held_out_table(evals, "pool_ranking", shipped),
        "",
    ]
    base_repo, trained_repo = _read(work / "eval" / "repo-base.json"), _read(work / "eval" / f"repo-{shipped}.json")
    if base_repo and trained_repo:
        body += [
            "### Repository benchmark (`bench/quality.py`, MRR@10)",
            "",
            "The same blanked-docstring benchmark as [Search quality](#search-quality-codesearchnet-style), indexed "
            "with each model (documents at 128 tokens). Hybrid columns use each run's default fusion: semantic "
            "weight 0.6 for the base model's run, 0.7 (re-tuned for the trained model) for the shipped one.",
            "",
            *repo_table(base_repo, trained_repo),
            "",
        ]
    rows = stage_rows(work)
    if len(rows) > 2:
        body += [
            "### Training cost on the 2-core machine (CPU, fp32)",
            "",
            "Summed step times from each stage's `log.jsonl` (forward, backward and optimizer step; without dev",
            "evaluations, hard-negative mining and checkpoints).",
            "",
            *rows,
            "",
        ]
    return "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    """Write the section into both documents."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "trainer" / "runs" / "default")
    args = ap.parse_args(argv)
    body = section(args.work)
    for doc in (DOCS, TRAINING_DOC):
        doc.write_text(replace_section(doc.read_text(encoding="utf-8"), "training", body), encoding="utf-8")
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
