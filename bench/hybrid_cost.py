"""What the lexical side costs: index size and build time relative to the dense side, and query latency
per mode.

Usage::

    python bench/hybrid_cost.py [--langs python go ...] [--queries 100] [--sample 256]

Runs on the indexes and queries that ``bench/quality.py`` left in ``bench/out/quality/<lang>/``
(``repo/``, ``index-default/``, ``queries.jsonl``), so run that first. For each language, in one
process (ratios are measured in one run, since these machines are noisy):

- **size**: bytes of the FTS5 tables (SQLite ``dbstat``) vs the dense side (the ``vectors`` table plus
  the FAISS file);
- **build time**: tokenising every unit and inserting it into a fresh FTS5 table, vs embedding a seeded
  sample of ``--sample`` unit texts with the index's encoder, extrapolated to all units;
- **latency**: warm in-process ``Searcher.search`` per mode (semantic, lexical, hybrid), median and p95
  over ``--queries`` queries (each query once per mode, interleaved).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from codesearch.config import load_settings  # noqa: E402
from codesearch.index import DB_NAME, IndexReader, connect, fts_columns  # noqa: E402
from codesearch.search import Searcher  # noqa: E402
from codesearch.types import document_text  # noqa: E402

OUT = BENCH / "out"
MODES = ("semantic", "lexical", "hybrid")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def table_bytes(db: Path, prefix: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE ?",
                                (prefix + "%",)).fetchone()[0])
    finally:
        conn.close()


def measure(lang: str, n_queries: int, sample: int) -> dict[str, object]:
    base = OUT / "quality" / lang
    repo, index_dir = base / "repo", base / "index-default"
    db = index_dir / DB_NAME
    settings = load_settings(repo).replace(index_dir=str(index_dir))
    conn = connect(db, readonly=True)
    rows = conn.execute("SELECT * FROM units").fetchall()
    conn.close()
    fts_bytes = table_bytes(db, "units_fts")
    dense_bytes = table_bytes(db, "vectors") + sum(p.stat().st_size for p in index_dir.glob("vectors.g*.faiss"))

    t0 = time.perf_counter()
    mem = sqlite3.connect(":memory:")
    mem.execute("CREATE VIRTUAL TABLE f USING fts5(name, doc, code, content='', "
                "tokenize=\"porter unicode61 remove_diacritics 0 tokenchars '_'\")")
    with mem:
        mem.executemany("INSERT INTO f(rowid, name, doc, code) VALUES (?, ?, ?, ?)",
                        [(r["id"], *fts_columns(r)) for r in rows])
    lexical_seconds = time.perf_counter() - t0

    searcher = Searcher(IndexReader(index_dir), settings)
    fmt = searcher.reader.meta["doc_text_format"]
    from codesearch.index import row_to_symbol

    picked = random.Random(0).sample(rows, min(sample, len(rows)))
    texts = [document_text(row_to_symbol(r), fmt) for r in picked]
    embedder = searcher.embedder
    embedder.encode(texts[:8])  # warm-up
    t0 = time.perf_counter()
    embedder.encode(texts)
    dense_seconds = (time.perf_counter() - t0) * len(rows) / len(picked)

    queries = [json.loads(line)["query"] for line in (base / "queries.jsonl").read_text().splitlines()][:n_queries]
    lat: dict[str, list[float]] = {m: [] for m in MODES}
    for q in queries[:5]:
        searcher.search(q, k=10, mode="hybrid")
    for q in queries:
        for mode in MODES:
            t0 = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            lat[mode].append((time.perf_counter() - t0) * 1000)
    searcher.close()
    return {
        "language": lang, "units": len(rows),
        "fts_bytes": fts_bytes, "dense_bytes": dense_bytes, "size_ratio": fts_bytes / dense_bytes,
        "lexical_build_s": lexical_seconds, "dense_build_s_est": dense_seconds,
        "time_ratio": lexical_seconds / dense_seconds,
        "latency_ms": {m: {"median": statistics.median(v), "p95": pct(v, 0.95)} for m, v in lat.items()},
        "queries": len(queries),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--langs", nargs="+", default=["python", "go", "java", "javascript", "php", "ruby"])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--sample", type=int, default=256)
    args = ap.parse_args(argv)
    results = []
    for lang in args.langs:
        if not (OUT / "quality" / lang / "index-default").is_dir():
            print(f"skip {lang}: run bench/quality.py first", file=sys.stderr)
            continue
        print(f"measuring {lang}", file=sys.stderr)
        results.append(measure(lang, args.queries, args.sample))
    (OUT / "hybrid_cost.json").write_text(json.dumps(results, indent=2))
    print("| language | units | lexical size / dense size | lexical build / dense build | "
          "semantic ms (median / p95) | lexical ms | hybrid ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        lat = r["latency_ms"]
        cells = " | ".join(f"{lat[m]['median']:.1f} / {lat[m]['p95']:.1f}" for m in MODES)
        print(f"| {r['language']} | {r['units']} | {r['fts_bytes'] / 1e6:.2f} MB / {r['dense_bytes'] / 1e6:.2f} MB "
              f"= {r['size_ratio']:.2f} | {r['lexical_build_s']:.2f} s / {r['dense_build_s_est']:.0f} s = "
              f"{r['time_ratio']:.4f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
