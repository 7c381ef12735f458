"""The Ray batch job into Milvus Lite against the local ``codesearch index``, on the same units, in one run.

Usage::

    python bench/scale.py [--repo PATH ...] [--forks N] [--workers 1 2] [--out bench/out/scale.json]

Repositories: each ``--repo`` (default: every source directory under ``bench/corpora/<lang>/``, one
repository each), copied to ``bench/out/scale/repos/<name>``, plus ``--forks`` copies of the first ones
(``<name>-fork``) to show the dedupe. Then, each as a subprocess (model loading and Ray start-up included):

* **local**: ``codesearch index REPO --json`` for every repository, forks included, each into its own
  index directory (what one index per repository costs: a fork is embedded again);
* **batch, N workers** for each ``--workers``: ``codesearch index --backend DB --workers N --json REPOS...``
  into a new Milvus Lite file, then the same command again with nothing changed.

Reports units, embeddings computed, tokens/s of the embedding stage (wall time, actor start-up included)
and per worker (the actors' encode time; for the local runs the indexer's embedding time, model load
excluded), wall time, and the ratios to the local runs. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "scale"


def _codesearch(args: list[str]) -> tuple[dict[str, Any], float]:
    env = dict(os.environ, CODESEARCH_AUTO_DAEMON="0", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "codesearch.cli", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"codesearch {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _default_repos() -> list[Path]:
    corpora = BENCH / "corpora"
    return sorted(p for lang in sorted(corpora.iterdir()) if lang.is_dir() for p in lang.iterdir() if p.is_dir()) \
        if corpora.is_dir() else []


def prepare(repos: list[Path], forks: int) -> list[Path]:
    """Fresh copies of the repositories and the forks under bench/out/scale/repos."""
    dest = OUT / "repos"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    out = []
    for src in repos:
        out.append(dest / src.name)
        shutil.copytree(src, out[-1], ignore=shutil.ignore_patterns(".codesearch"))
    for src in out[:forks]:
        fork = dest / f"{src.name}-fork"
        shutil.copytree(src, fork)
        out.append(fork)
    return out


def run_local(repos: list[Path]) -> dict[str, Any]:
    """``codesearch index`` per repository; sums over them."""
    total: dict[str, Any] = {"units": 0, "embedded": 0, "tokens": 0, "embed_seconds": 0.0, "wall_seconds": 0.0}
    for repo in repos:
        idir = OUT / "local" / repo.name
        shutil.rmtree(idir, ignore_errors=True)
        rep, wall = _codesearch(["index", str(repo), "--index-dir", str(idir), "--json"])
        for key in ("units", "embedded", "tokens", "embed_seconds"):
            total[key] += rep[key]
        total["wall_seconds"] += wall
    total["tokens_per_second"] = total["tokens"] / total["embed_seconds"] if total["embed_seconds"] else 0.0
    return total


def run_batch(repos: list[Path], workers: int) -> dict[str, Any]:
    """The batch job into a new backend, then again with nothing changed."""
    db = OUT / f"w{workers}.db"
    shutil.rmtree(db, ignore_errors=True)
    args = ["index", "--backend", str(db), "--workers", str(workers), "--json", *map(str, repos)]
    rep, wall = _codesearch(args)
    again, wall_again = _codesearch(args)
    return dict(rep, wall_seconds=wall, rerun_embedded=again["embedded"], rerun_wall_seconds=wall_again)


def query_latency(db: Path, n: int) -> dict[str, Any]:
    """Warm in-process latency of Searcher.search through MilvusStore (query encoding included), per mode."""
    import statistics

    from codesearch.config import Settings
    from codesearch.milvus_store import UNITS, MilvusStore
    from codesearch.query import Query
    from codesearch.search import Searcher

    store = MilvusStore(str(db))
    searcher = Searcher(store, Settings())
    try:
        with store.snapshot():
            rows = store.client.query(UNITS, filter="summary != ''", output_fields=["summary"], limit=n)
        queries = [Query(" ".join(r["summary"].split())[:200]) for r in rows] or [Query("parse a url")]
        searcher.search(queries[0], k=10)  # loads the model and the collection
        out: dict[str, Any] = {"queries": len(queries), "units": store.count_units()}
        for mode in ("semantic", "lexical", "hybrid"):
            times = []
            for q in queries:
                t0 = time.perf_counter()
                searcher.search(q, k=10, mode=mode)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            out[mode] = {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}
        return out
    finally:
        searcher.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", type=Path, help="a repository (repeatable; default: bench/corpora)")
    ap.add_argument("--forks", type=int, default=2, help="copies of the first repositories, as forks (default 2)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="encoder workers to measure")
    ap.add_argument("--out", type=Path, default=BENCH / "out" / "scale.json")
    ap.add_argument("--queries", type=int, default=50, help="queries for the latency through Milvus Lite (0: skip)")
    args = ap.parse_args(argv)
    sources = args.repo or _default_repos()
    if not sources:
        ap.error("no repositories: pass --repo PATH or run bench/corpora.py install")
    repos = prepare(sources, args.forks)
    local = run_local(repos)
    batches = {w: run_batch(repos, w) for w in args.workers}
    latency = query_latency(OUT / f"w{args.workers[0]}.db", args.queries) if args.queries else None
    result = {"repositories": [r.name for r in repos], "forks": args.forks, "local": local,
              "batch": {str(w): b for w, b in batches.items()}, "query_latency": latency}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"{len(repos)} repositories ({args.forks} of them forks), {local['units']} units\n")
    print("| run | units | embeddings computed | tokens/s, embedding stage | tokens/s per worker | wall s | "
          "wall vs local | re-run embedded | re-run wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| local `codesearch index`, one index per repository | {local['units']} | {local['embedded']} | "
          f"{local['tokens_per_second']:.0f} | {local['tokens_per_second']:.0f} | {local['wall_seconds']:.1f} | "
          "1.00 | | |")
    for w, b in batches.items():
        print(f"| batch on Ray, {w} worker{'s' if w > 1 else ''} | {b['units']} | {b['embedded']} | "
              f"{b['tokens_per_second']:.0f} | {b['tokens_per_worker_second']:.0f} | {b['wall_seconds']:.1f} | "
              f"{b['wall_seconds'] / local['wall_seconds']:.2f} | {b['rerun_embedded']} | "
              f"{b['rerun_wall_seconds']:.1f} |")
    if latency:
        print(f"\nWarm query latency through Milvus Lite ({latency['units']} units, {latency['queries']} queries, "
              "query encoding included):\n")
        print("| mode | median ms | p95 ms |\n| --- | ---: | ---: |")
        for mode in ("semantic", "lexical", "hybrid"):
            print(f"| {mode} | {latency[mode]['median_ms']:.1f} | {latency[mode]['p95_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
