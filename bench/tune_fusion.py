"""Choose the hybrid fusion on the quality benchmark: replay each side's candidates under many settings.

Usage::

    python bench/tune_fusion.py [--langs python go ...] [--depth 100] [--model DIR]

Uses the indexes and queries that ``bench/quality.py`` left in ``bench/out/quality/<lang>/``. Each
query is encoded once and each side's top ``--depth`` candidates (id, score) are fetched once; every
fusion setting is then replayed on those lists, exactly as ``Searcher.search`` fuses them (same
functions), and scored with MRR@10 / Recall@1 / Recall@10 per language and macro-averaged. Lexical
column weights (name, doc, code) are varied by re-running the lexical side. Prints a table of the
best settings and writes all of them to ``bench/out/tune_fusion.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from quality import index_dir_for  # noqa: E402

import codesearch.index as index_mod  # noqa: E402
from codesearch.config import Settings, load_settings  # noqa: E402
from codesearch.eval import evaluate  # noqa: E402
from codesearch.index import IndexReader  # noqa: E402
from codesearch.search import Searcher, coverage, lexical_strength, rrf, term_weights, weighted_fusion  # noqa: E402
from codesearch.search import fuse as search_fuse  # noqa: E402

OUT = BENCH / "out"
LANGS = ["python", "go", "java", "javascript", "php", "ruby"]
COLUMN_WEIGHTS = [(3.0, 2.0, 1.0), (1.0, 1.0, 1.0), (5.0, 1.0, 1.0), (2.0, 1.0, 1.0)]


def fuse(sem, lex, setting, k=10, strength=None, weights=None):
    fusion, w, param, oversample = setting
    depth = k * oversample
    sem, lex = sem[:depth], lex[:depth]
    if fusion == "adaptive":
        settings = Settings(fusion="adaptive", semantic_weight=w)
        return [u for u, _ in search_fuse(sem, lex, settings, lexical=lexical_strength(lex, weights))[:k]]
    if fusion == "coverage":
        return [u for u, _ in search_fuse(sem, lex, Settings(fusion="coverage", semantic_weight=w), strength)[:k]]
    if fusion == "semantic":
        return [u for u, _ in sem[:k]]
    if fusion == "lexical":
        return [u for u, _ in lex[:k]]
    if fusion == "rrf":
        scores = rrf([[u for u, _ in sem], [u for u, _ in lex]], param, (2 * w, 2 - 2 * w))
    elif fusion == "weighted_max":
        scores = weighted_fusion([sem, lex], (w, 1 - w), ("minmax", "max"))
    else:
        scores = weighted_fusion([sem, lex], (w, 1 - w))
    return [u for u, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def prepare_fixtures() -> None:
    """Index the six fixture repositories together, with their paraphrased QUERIES.json, as a dataset."""
    import shutil

    from codesearch.indexer import index_repository

    base = OUT / "quality" / "fixtures"
    repo = base / "repo"
    if base.exists():
        shutil.rmtree(base)
    queries = []
    for src in sorted((BENCH.parent / "tests" / "fixtures" / "repos").glob("mini_*")):
        shutil.copytree(src, repo / src.name)
        for q in json.loads((src / "QUERIES.json").read_text()):
            path, _, qualname = q["target"].partition(":")
            queries.append((q["query"], f"{src.name}/{path}", qualname))
    index_repository(repo, load_settings(repo).replace(index_dir=str(base / "index-default")))
    from codesearch.index import DB_NAME, connect

    conn = connect(base / "index-default" / DB_NAME, readonly=True)
    lines = []
    for i, (query, path, qualname) in enumerate(queries):
        row = conn.execute("SELECT start_line FROM units WHERE path = ? AND qualified_name = ?",
                           (path, qualname)).fetchone()
        lines.append(json.dumps({"qid": f"fixtures-{i}", "query": query, "target": f"{path}:{row[0]}"}))
    conn.close()
    (base / "queries.jsonl").write_text("\n".join(lines) + "\n")


def candidates(lang: str, depth: int, model: str | None = None):
    base = OUT / "quality" / lang
    settings = load_settings(base / "repo")
    # The index bench/quality.py built for this model (its queries always use the index's own model).
    searcher = Searcher(IndexReader(index_dir_for(lang, None, model)), settings)
    queries = [json.loads(x) for x in (base / "queries.jsonl").read_text().splitlines()]
    vecs = searcher.embedder.encode([q["query"] for q in queries], kind="query")
    reader = searcher.reader
    out = {"sem": {}, "lex": {}, "relevant": {}}
    with reader.snapshot():
        conn = reader.conn
        loc = {f"{r[1]}:{r[2]}": r[0] for r in conn.execute("SELECT id, path, start_line FROM units")}
        for q, v in zip(queries, vecs, strict=True):
            out["sem"][q["qid"]] = reader.vector_search(v, depth, None)
            out["relevant"][q["qid"]] = {loc.get(q["target"], -1)}
        for cw in COLUMN_WEIGHTS:
            index_mod.LEXICAL_WEIGHTS = cw
            out["lex"][cw] = {q["qid"]: reader.lexical_search(q["query"], depth, None) for q in queries}
        index_mod.LEXICAL_WEIGHTS = COLUMN_WEIGHTS[0]
        # Each lexical candidate's query coverage, for the "coverage" fusion (as Searcher.search computes it).
        out["strength"], out["weights"] = {}, {}
        for q in queries:
            weights = out["weights"][q["qid"]] = term_weights(q["query"], reader)
            ids = {u for cw in COLUMN_WEIGHTS for u, _ in out["lex"][cw][q["qid"]]}
            out["strength"][q["qid"]] = {u: coverage(weights, sym) for u, sym in reader.symbols(list(ids)).items()}
    searcher.close()
    return out


def worst_margin(result: dict, base: dict, langs: list[str]) -> float:
    """The smallest, over languages, of a setting's MRR@10 minus the better single side's."""
    return min(result["per_language"][lang]["mrr@10"] - max(base["semantic"]["per_language"][lang]["mrr@10"],
                                                             base["lexical"]["per_language"][lang]["mrr@10"])
               for lang in langs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--langs", nargs="+", default=LANGS)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--model", help="use the indexes `bench/quality.py --model DIR` built (default: the default model)")
    args = ap.parse_args(argv)
    langs = [lang for lang in args.langs if index_dir_for(lang, None, args.model).is_dir()]
    prepare_fixtures()
    data = {lang: candidates(lang, args.depth, args.model) for lang in langs}
    data["fixtures"] = candidates("fixtures", args.depth)  # indexed just now with the default model
    settings = [("semantic", 0, 0, 1), ("lexical", 0, 0, 1)]
    settings += [("rrf", w, kk, o) for w in (0.4, 0.5, 0.6, 0.7, 0.8) for kk in (5, 20, 60) for o in (3, 5, 10)]
    settings += [(f, w, 0, o) for f in ("weighted", "weighted_max", "coverage") for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
                 for o in (3, 5, 10)]
    # The adaptive fusion's weak-match weight (its strong-match weight and range are search.py's constants).
    settings += [("adaptive", w, 0, o) for w in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95) for o in (3, 5, 10)]
    results = []
    for cw, setting in itertools.product(COLUMN_WEIGHTS, settings):
        if setting[0] == "semantic" and cw != COLUMN_WEIGHTS[0]:
            continue
        per_lang = {}
        for lang in [*langs, "fixtures"]:
            d = data[lang]
            runs = {qid: fuse(d["sem"][qid], d["lex"][cw][qid], setting, strength=d["strength"][qid],
                              weights=d["weights"][qid]) for qid in d["sem"]}
            per_lang[lang] = evaluate(runs, d["relevant"], ks=(1, 10))
        macro = {m: sum(per_lang[lang][m] for lang in langs) / len(langs) for m in ("mrr@10", "recall@1", "recall@10")}
        results.append({"columns": cw, "setting": setting, "macro": macro,
                        "per_language": {lang: {m: r[m] for m in ("mrr@10", "recall@1", "recall@10")}
                                         for lang, r in per_lang.items()}})
    results.sort(key=lambda r: -r["macro"]["mrr@10"])
    (OUT / "tune_fusion.json").write_text(json.dumps(results, indent=1))
    print(f"languages: {', '.join(langs)}")
    print("| columns | fusion | w_sem | rrf_k | oversample | macro MRR@10 | R@1 | R@10 "
          "| min over languages of (hybrid - max(sem, lex)) MRR | fixtures MRR@10 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = {r["setting"][0]: r for r in results if r["setting"][0] in ("semantic", "lexical")
            and r["columns"] == COLUMN_WEIGHTS[0]}
    for r in results[:15] + [base["semantic"], base["lexical"]]:
        margin = worst_margin(r, base, langs)
        f, w, kk, o = r["setting"]
        m = r["macro"]
        print(f"| {r['columns']} | {f} | {w} | {kk} | {o} | {m['mrr@10']:.3f} | {m['recall@1']:.3f} | "
              f"{m['recall@10']:.3f} | {margin:+.3f} | {r['per_language']['fixtures']['mrr@10']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
