"""Indexing and query speed, memory and index size on the quality benchmark's blanked repositories.

Usage::

    python bench/speed.py [--langs python java] [--queries 100] [--model DIR] [--doc-text-format FMT]
    python bench/speed.py --repo PATH [--queries 100]

For each repository (by default the copy ``bench/quality.py`` prepared for each language in ``--langs``,
copied again to ``bench/out/speed/<name>/repo`` so that nothing else touches it; or any ``--repo``):

* **full index**: ``codesearch index REPO --json`` from an empty index directory, as a subprocess:
  wall time, units/s (units / wall time) and tokens/s (tokens / embedding time, when the summary reports
  ``tokens``), and the peak RSS of that process (``wait4`` rusage);
* **no-change re-index**: the same command again, nothing changed (wall time);
* **index size**: total bytes under the index directory;
* **cold query**: ``codesearch query TEXT --json`` wall time as a subprocess (model load included),
  median of 5 different queries;
* **warm query**: in-process latency of ``Searcher.search(text, k=10, mode=M)`` for each mode, median and
  p95 over ``--queries`` queries after one warm-up query.

Queries are the quality benchmark's (docstring summaries) when present, else function names.
Prints markdown tables and writes ``bench/out/speed.json`` (override with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    OUT,
    codesearch_cmd,
    du_bytes,
    last_json_object,
    log,
    machine,
    query_modes,
    run_measured,
    write_json,
)

SPEED_OUT = OUT / "speed"
QUALITY_OUT = OUT / "quality"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by linear interpolation between order statistics."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load_queries(name: str, repo: Path, n: int) -> list[str]:
    """Up to ``n`` query texts: the quality benchmark's for this language, else unit names from the index."""
    qfile = QUALITY_OUT / name / "queries.jsonl"
    texts: list[str] = []
    if qfile.exists():
        texts = [json.loads(line)["query"] for line in qfile.read_text().splitlines() if line.strip()]
    if not texts:
        from parsers import extract, language_for_path

        for dirpath, _, filenames in os.walk(repo):
            for fn in sorted(filenames):
                lang = language_for_path(fn)
                if lang is None:
                    continue
                try:
                    syms = extract((Path(dirpath) / fn).read_bytes(), lang, fn)
                except Exception:  # unparsable file: no queries from it
                    continue
                texts += [s.name.replace("_", " ") for s in syms if len(s.name) > 3]
            if len(texts) >= n:
                break
    while texts and len(texts) < n:
        texts = texts + texts
    return texts[:n]


def index_cmd(repo: Path, index_dir: Path, model: str | None) -> list[str]:
    """The ``codesearch index`` command line."""
    cmd = [*codesearch_cmd(), "index", str(repo), "--index-dir", str(index_dir), "--json"]
    return cmd + (["--model", model] if model else [])


def measure_repo(name: str, src_repo: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """All measurements for one repository."""
    work = SPEED_OUT / name
    repo = work / "repo"
    index_dir = work / "index"
    if repo.exists():
        shutil.rmtree(repo)
    if index_dir.exists():
        shutil.rmtree(index_dir)
    shutil.copytree(src_repo, repo, ignore=shutil.ignore_patterns(".codesearch"))
    res: dict[str, Any] = {"source": str(src_repo)}

    log(f"{name}: full index of {repo}")
    full = run_measured(index_cmd(repo, index_dir, args.model), env=env)
    if full.returncode != 0:
        raise RuntimeError(f"index failed with exit status {full.returncode}")
    summary = last_json_object(full.stdout) or {}
    units = int(summary.get("units", 0))
    res["index_summary"] = summary
    res["units"] = units
    res["files"] = summary.get("files")
    res["full_index_seconds"] = round(full.seconds, 2)
    res["full_index_cpu_seconds"] = round(full.cpu_seconds, 1)
    res["units_per_second"] = round(units / full.seconds, 2) if full.seconds else None
    tokens = summary.get("tokens")
    embed_s = summary.get("embed_seconds")
    res["tokens"] = tokens
    res["tokens_per_second_embedding"] = round(tokens / embed_s, 1) if tokens and embed_s else None
    res["tokens_per_second_wall"] = round(tokens / full.seconds, 1) if tokens else None
    res["index_peak_rss_mb"] = round(full.max_rss_mb, 1)
    res["index_bytes"] = du_bytes(index_dir)
    log(f"{name}: {units} units in {full.seconds:.1f} s ({res['units_per_second']} units/s), "
        f"peak RSS {full.max_rss_mb:.0f} MB, index {res['index_bytes'] / 1e6:.1f} MB")

    again = run_measured(index_cmd(repo, index_dir, args.model), env=env)
    if again.returncode != 0:
        raise RuntimeError(f"re-index failed with exit status {again.returncode}")
    res["noop_reindex_seconds"] = round(again.seconds, 2)
    res["noop_reindex_summary"] = last_json_object(again.stdout)
    res["noop_reindex_peak_rss_mb"] = round(again.max_rss_mb, 1)
    log(f"{name}: no-change re-index {again.seconds:.2f} s")

    queries = load_queries(name, repo, max(args.queries, 6))
    cold: list[float] = []
    cold_rss: list[float] = []
    for text in queries[:5]:
        cmd = [*codesearch_cmd(), "query", text, "--json", "-k", "10", "--repo", str(repo),
               "--index-dir", str(index_dir)]
        if args.model:
            cmd += ["--model", args.model]
        r = run_measured(cmd, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"query failed with exit status {r.returncode}")
        cold.append(r.seconds)
        cold_rss.append(r.max_rss_mb)
    res["cold_query_seconds_median"] = round(statistics.median(cold), 3)
    res["cold_query_seconds"] = [round(x, 3) for x in cold]
    res["query_peak_rss_mb"] = round(max(cold_rss), 1)
    log(f"{name}: cold CLI query median {statistics.median(cold):.2f} s")

    res["warm"] = warm_latency(repo, index_dir, queries[: args.queries], args.model, env)
    return res


def warm_latency(repo: Path, index_dir: Path, queries: list[str], model: str | None,
                 env: dict[str, str]) -> dict[str, dict[str, float]]:
    """In-process query latency per mode with a warm ``Searcher`` (ms: median, p95, mean)."""
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from codesearch.config import load_settings
        from codesearch.search import Searcher

        settings = load_settings(repo).replace(index_dir=str(index_dir), model=model)
        t0 = time.perf_counter()
        searcher = Searcher.open(repo, settings)
        open_s = time.perf_counter() - t0
        out: dict[str, dict[str, float]] = {}
        modes = query_modes() or ["semantic"]
        t0 = time.perf_counter()
        searcher.search(queries[0], k=10, mode=modes[0])  # loads the encoder
        first_s = time.perf_counter() - t0
        for mode in modes:
            searcher.search(queries[0], k=10, mode=mode)  # warm-up per mode
            times = []
            for text in queries:
                t0 = time.perf_counter()
                searcher.search(text, k=10, mode=mode)
                times.append((time.perf_counter() - t0) * 1000)
            out[mode] = {"median_ms": round(statistics.median(times), 2),
                         "p95_ms": round(percentile(times, 0.95), 2),
                         "mean_ms": round(statistics.fmean(times), 2), "queries": len(times)}
            log(f"warm {mode}: median {out[mode]['median_ms']:.1f} ms, p95 {out[mode]['p95_ms']:.1f} ms")
        out["_open"] = {"open_ms": round(open_s * 1000, 1), "first_query_ms": round(first_s * 1000, 1)}
        close = getattr(searcher, "close", None)
        if close is not None:
            close()
        return out
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def markdown(results: dict[str, Any]) -> str:
    """Two markdown tables: indexing, then querying."""
    lines = [
        "| repo | files | units | full index (s) | units/s | tokens/s (embedding) | peak RSS (MB) "
        "| no-change re-index (s) | index size (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        tps = r.get("tokens_per_second_embedding")
        lines.append(
            f"| {name} | {r.get('files')} | {r['units']} | {r['full_index_seconds']:.1f} "
            f"| {r['units_per_second']:.1f} | {f'{tps:.0f}' if tps else 'n/a'} | {r['index_peak_rss_mb']:.0f} "
            f"| {r['noop_reindex_seconds']:.2f} | {r['index_bytes'] / 1e6:.1f} |")
    lines.append("")
    modes = [m for m in next(iter(results.values()))["warm"] if not m.startswith("_")] if results else []
    head = "| repo | cold CLI query (s, median of 5) | query peak RSS (MB) | " + " | ".join(
        f"warm {m} median / p95 (ms)" for m in modes) + " |"
    lines += [head, "|---|---:|---:|" + "---:|" * len(modes)]
    for name, r in results.items():
        warm = " | ".join(f"{r['warm'][m]['median_ms']:.1f} / {r['warm'][m]['p95_ms']:.1f}" for m in modes)
        lines.append(f"| {name} | {r['cold_query_seconds_median']:.2f} | {r['query_peak_rss_mb']:.0f} | {warm} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--langs", nargs="+", default=["python"],
                    help="languages whose quality-benchmark copy to measure (default: python)")
    ap.add_argument("--repo", type=Path, help="measure this repository instead")
    ap.add_argument("--queries", type=int, default=100, help="warm queries per mode (default 100)")
    ap.add_argument("--model", help="model directory, passed to index and query")
    ap.add_argument("--doc-text-format", help="sets CODESEARCH_DOC_TEXT_FORMAT")
    ap.add_argument("--out", type=Path, default=OUT / "speed.json")
    args = ap.parse_args(argv)
    env = {"CODESEARCH_DOC_TEXT_FORMAT": args.doc_text_format} if args.doc_text_format else {}

    targets: dict[str, Path] = {}
    if args.repo:
        targets[args.repo.resolve().name] = args.repo.resolve()
    else:
        for lang in args.langs:
            repo = QUALITY_OUT / lang / "repo"
            if not repo.is_dir():
                raise SystemExit(f"{repo} is missing: run `python bench/quality.py --prepare-only --langs {lang}`")
            targets[lang] = repo
    t0 = time.perf_counter()
    host = machine()
    results = {name: measure_repo(name, repo, args, env) for name, repo in targets.items()}
    report = {
        "benchmark": "speed",
        "command": "python bench/speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": host,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "results": results,
    }
    write_json(args.out, report)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
