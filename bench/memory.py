"""Daemon memory and warm query latency by encoder runtime: torch, numpy and ONNX Runtime fp32 (the default).

Usage::

    .venv/bin/python bench/freshness.py build    # once: the 10k-unit repository and the 100k-unit copies
    .venv/bin/python bench/memory.py [--rounds 2] [--queries 60] [--write-doc]

For each size (the 10k and 100k indexes of ``bench/freshness.py``) and each runtime (``torch``: the
daemon two versions ago; ``numpy``: the daemon before; ``auto``: the fused fp32 graph on ONNX Runtime, the
daemon now; all three the same vectors), alternating the runtimes ``--rounds`` times, it starts
``codesearch watch`` on a copy of the index (``CODESEARCH_RUNTIME`` set), waits until it is idle, sends
``--queries`` warm queries through its socket as ``codesearch query`` does, and reads the daemon's
idle RSS (VmRSS) and its peak (VmHWM) from /proc. Then, in this process, it times the steps of one
warm query on the 100k index with the daemon's encoder (encode, vector search, lexical search, the whole
``Searcher.search``), the breakdown of what remains, and the query encoding on numpy next to it.

Writes ``bench/out/memory.json``; ``--write-doc`` renders the ``memory`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import OUT, machine, write_doc_section, write_json  # noqa: E402
from freshness import BASE, BASE100K, QUERIES, Watcher, log, rss_mb, summary  # noqa: E402

#: The whole search as the version before issue 12's query-path work ran it (see query_breakdown).
SEQUENTIAL = "whole search, sides in sequence (before)"
#: The same query encoded on numpy (the daemon's encoder before ONNX Runtime's fp32 graph).
NUMPY_ENCODE = "encode on numpy (before)"
RUNTIMES = {"torch": "torch", "numpy": "numpy (the default before)", "auto": "ONNX Runtime fp32 graph (default)"}
WORK = OUT / "memory"


def daemon_round(base: Path, runtime: str, n_queries: int) -> dict[str, Any]:
    """One daemon on a fresh copy of ``base`` under ``runtime``: warm socket latency and idle RSS."""
    from codesearch.client import QueryRunner
    from codesearch.config import load_settings

    work = WORK / f"{base.name}-{runtime}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work, symlinks=True, copy_function=os.link,
                    ignore=shutil.ignore_patterns("daemon.*", "*.lock"))
    # The index files are written by the daemon: give it its own copies, not links to the base's.
    shutil.rmtree(work / ".codesearch")
    shutil.copytree(base / ".codesearch", work / ".codesearch", ignore=shutil.ignore_patterns("daemon.*"))
    os.environ["CODESEARCH_RUNTIME"] = runtime
    try:
        with Watcher(work) as w:
            settings = load_settings(work)
            remote = QueryRunner(w.idir, settings)
            assert remote.via == "daemon", remote.via
            remote.search("warm up", k=10)
            times = []
            for i in range(n_queries):
                t0 = time.perf_counter()
                remote.search(QUERIES[i % len(QUERIES)], k=10)
                times.append(time.perf_counter() - t0)
            remote.close()
            time.sleep(1.0)
            rss, hwm = rss_mb(w.proc.pid)
            start = w.start_seconds
            w.stop()
    finally:
        os.environ.pop("CODESEARCH_RUNTIME", None)
        shutil.rmtree(work, ignore_errors=True)
    return {"socket_ms": summary(times), "socket_s": times, "rss_idle_mb": rss, "rss_peak_mb": hwm,
            "start_seconds": round(start, 1)}


def query_breakdown(base: Path, n_queries: int) -> dict[str, Any]:
    """Median ms of each step of a warm in-process query on ``base`` with the daemon's encoder."""
    import faiss

    from codesearch.config import load_settings
    from codesearch.embed import load_embedder
    from codesearch.embed_numpy import NumpyEmbedder
    from codesearch.index import IndexReader, find_index_dir
    from codesearch.search import Searcher
    from codesearch.store import LocalStore

    settings = load_settings(base)
    reader = IndexReader(find_index_dir(base, settings.index_dir))
    encoder = load_embedder(reader.meta.get("model_path"), max_length=settings.max_length, threads=1, serving=True)
    searcher = Searcher(reader, settings, embedder=encoder)
    numpy_encoder = NumpyEmbedder(reader.meta.get("model_path"), max_length=settings.max_length, threads=1)
    store = searcher.store
    searcher.search("warm up", k=10)
    numpy_encoder.encode(["warm up"], kind="query")
    steps: dict[str, list[float]] = {"encode": [], "vector search": [], "lexical search": [], "whole search": [],
                                     SEQUENTIAL: [], NUMPY_ENCODE: []}
    depth = settings.k * settings.oversample
    set_threads = faiss.omp_set_num_threads
    try:
        for i in range(n_queries):
            q = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            vec = searcher.embedder.encode([q], kind="query")[0]
            t1 = time.perf_counter()
            with store.snapshot():
                store.vector_search(vec, depth, None)
                t2 = time.perf_counter()
                store.lexical_search(q, depth, None)
                t3 = time.perf_counter()
            searcher.search(q, k=10)
            t4 = time.perf_counter()
            # As before the concurrent sides: one after the other, FAISS on OpenMP's default threads (the
            # reader's own per-search setting of one thread is suspended for it).
            LocalStore.concurrent_reads = False
            set_threads(os.cpu_count() or 1)
            faiss.omp_set_num_threads = lambda n: None
            try:
                searcher.search(q, k=10)
            finally:
                faiss.omp_set_num_threads = set_threads
            t5 = time.perf_counter()
            LocalStore.concurrent_reads = True
            set_threads(1)
            numpy_encoder.encode([q], kind="query")
            t6 = time.perf_counter()
            for name, a, b in (("encode", t0, t1), ("vector search", t1, t2), ("lexical search", t2, t3),
                               ("whole search", t3, t4), (SEQUENTIAL, t4, t5), (NUMPY_ENCODE, t5, t6)):
                steps[name].append(1000 * (b - a))
    finally:
        faiss.omp_set_num_threads = set_threads
        LocalStore.concurrent_reads = True
        faiss.omp_set_num_threads(1)
    out = {name: round(statistics.median(v), 1) for name, v in steps.items()}
    out["encoder"] = type(searcher.embedder).__name__
    out["units"] = store.count_units()
    searcher.close()
    return out


def delta_cost(base: Path, rounds: int = 5) -> dict[str, Any]:
    """Median ms of bringing a reader's FAISS index to a generation (``index.apply_delta``, nothing changed)
    on ``base``'s index, against reading the unit ids a Python row each, as it did before ``unit_ids``."""
    import faiss
    import numpy as np

    from codesearch.index import DB_NAME, apply_delta, connect, snapshots

    idir = base / ".codesearch"
    conn = connect(idir / DB_NAME, readonly=True)
    snap = faiss.read_index(str(snapshots(idir)[0][1]))
    now, before = [], []
    for _ in range(rounds):
        index = faiss.clone_index(snap)
        t0 = time.perf_counter()
        assert apply_delta(conn, index, index.d)
        t1 = time.perf_counter()
        ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM units")), dtype=np.int64)
        have = faiss.vector_to_array(index.id_map).astype(np.int64)
        np.setdiff1d(have, ids, assume_unique=True), np.setdiff1d(ids, have, assume_unique=True)
        t2 = time.perf_counter()
        now.append(1000 * (t1 - t0))
        before.append(1000 * (t2 - t1))
    conn.close()
    return {"units": int(snap.ntotal), "apply_delta_ms": round(statistics.median(now), 1),
            "row_per_id_ms": round(statistics.median(before), 1)}


def precision(base: Path) -> dict[str, Any]:
    """float16 against float32 vectors on ``base``'s index: the 30 queries' semantic top 10 by brute force."""
    import numpy as np

    from codesearch.embed import load_embedder
    from codesearch.index import DB_NAME, connect

    conn = connect(base / ".codesearch" / DB_NAME, readonly=True)
    rows = conn.execute("SELECT u.id, v.vector FROM units u JOIN vectors v ON u.text_hash = v.text_hash").fetchall()
    conn.close()
    vecs = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
    half = vecs.astype(np.float16).astype(np.float32)
    emb = load_embedder(None, max_length=128, threads=1)
    qs = emb.encode(QUERIES, kind="query")
    same_order = same_set = 0
    diff = 0.0
    for q in qs:
        a, b = vecs @ q, half @ q
        ta, tb = np.argsort(-a)[:10], np.argsort(-b)[:10]
        same_order += int(list(ta) == list(tb))
        same_set += int(set(ta) == set(tb))
        diff = max(diff, float(np.abs(a - b).max()))
    return {"units": len(rows), "queries": len(QUERIES), "top10_same_order": same_order, "top10_same_set": same_set,
            "max_abs_score_difference": round(diff, 6)}


def render(report: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    lines = ["## Daemon memory and warm queries by runtime (issue 12)", "",
             f"Measured {report['date']} on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
             f"load average {report['load_start']} at the start and {report['load_end']} at the end "
             "(other jobs were running: compare the columns, which alternated, not the absolute times). All "
             "columns run this version (`CODESEARCH_RUNTIME` set to `torch`, `numpy` and `auto`), with float16 "
             "FAISS vectors; before those the daemon also held float32 ones (1.5 KB instead of 0.77 KB per "
             "unit: 8 MB more at 10k units, 77 MB more at 100k).", "",
             "```sh", ".venv/bin/python bench/freshness.py build   # once", report["command"], "```", "",
             "| | " + " | ".join(f"{RUNTIMES[r]}, {size}" for size in report["sizes"] for r in RUNTIMES) + " |",
             "|---|" + "---:|" * (len(RUNTIMES) * len(report["sizes"]))]
    def pooled(rounds: list[dict[str, Any]]) -> str:
        s = summary([t for d in rounds for t in d["socket_s"]])
        return f"{s['median']} / {s['p95']}"

    rows = (("daemon RSS, idle after the queries (MB)", lambda ds: min(d["rss_idle_mb"] for d in ds)),
            ("daemon peak RSS (MB)", lambda ds: min(d["rss_peak_mb"] for d in ds)),
            ("warm query through the socket, median / p95 (ms)", pooled),
            ("daemon start, to idle (s)", lambda ds: min(d["start_seconds"] for d in ds)))
    for label, get in rows:
        cells = [str(get(report["daemon"][size][r])) for size in report["sizes"] for r in RUNTIMES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    b = report["breakdown_100k"]
    lines += ["", "RSS and start figures are the lowest of the rounds (they vary by a few MB); latency is over the "
              "queries of all rounds. "
              f"Steps of one warm in-process query at {b['units']} units with the daemon's encoder ({b['encoder']}), "
              "median ms: " + ", ".join(f"{k} {b[k]}" for k in ("encode", "vector search", "lexical search",
                                                                 "whole search") if k in b) + "."]
    if SEQUENTIAL in b:
        lines += ["", "The whole search runs its lexical side (SQLite FTS5) in a worker thread while it encodes the "
                  "query and searches FAISS (on one OpenMP thread). Measured in the same process, alternating query "
                  f"by query: {b['whole search']} ms median against {b[SEQUENTIAL]} ms with the two sides one after "
                  "the other and FAISS on its default threads, as before "
                  f"({b[SEQUENTIAL] / b['whole search']:.2f}x)."]
    if NUMPY_ENCODE in b:
        lines += ["", f"The daemon encodes a query with the fused fp32 graph on ONNX Runtime ({b['encoder']}, the same "
                  f"vectors as numpy and torch): {b['encode']} ms median against {b[NUMPY_ENCODE]} ms on numpy, "
                  f"the daemon's encoder before, alternating query by query ({b[NUMPY_ENCODE] / b['encode']:.2f}x)."]
    if "delta_100k" in report:
        d = report["delta_100k"]
        lines += ["", f"A reader brings its FAISS index to a new generation (every save the daemon indexes) by the id "
                  f"delta; at {d['units']} units that took {d['apply_delta_ms']} ms (median, nothing changed) against "
                  f"{d['row_per_id_ms']} ms for reading the unit ids a Python row each and diffing them, as before "
                  "they were read as one string (`index.unit_ids`)."]
    p = report["precision"]
    lines += ["", f"float16 vectors in FAISS against float32 (brute force over the {p['units']} units of the 10k "
              f"index, the {p['queries']} queries): the semantic top 10 is the same set for {p['top10_same_set']} "
              f"and in the same order for {p['top10_same_order']} of them; the largest score difference of any unit "
              f"is {p['max_abs_score_difference']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args(argv)
    sizes = {"10k": BASE, "100k": BASE100K}
    for base in sizes.values():
        if not (base / ".codesearch").is_dir():
            print(f"no index in {base}: run bench/freshness.py build first", file=sys.stderr)
            return 1
    report: dict[str, Any] = {"benchmark": "memory", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                              "command": "python bench/memory.py " + " ".join(argv or sys.argv[1:]),
                              "load_start": round(os.getloadavg()[0], 1), "sizes": list(sizes),
                              "daemon": {s: {r: [] for r in RUNTIMES} for s in sizes}}
    for rnd in range(args.rounds):
        for size, base in sizes.items():
            for r in (list(RUNTIMES) if rnd % 2 == 0 else list(RUNTIMES)[::-1]):
                log(f"round {rnd + 1}: {size}, runtime {r}")
                report["daemon"][size][r].append(daemon_round(base, r, args.queries))
    report["breakdown_100k"] = query_breakdown(BASE100K, args.queries)
    report["delta_100k"] = delta_cost(BASE100K)
    report["precision"] = precision(BASE)
    report["load_end"] = round(os.getloadavg()[0], 1)
    write_json(OUT / "memory.json", report)
    text = render(report)
    print(text)
    if args.write_doc:
        write_doc_section("memory", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
