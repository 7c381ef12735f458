"""The Ray batch job into Milvus Lite against the local ``codesearch index``, on the same units, in one run.

Usage::

    python bench/scale.py [--repo PATH ...] [--forks N] [--workers 1 2] [--out bench/out/scale.json]
    python bench/scale.py --quality python go java      # after bench/quality.py --langs python go java
    python bench/scale.py --latency python --latency-units 1000000 --queries 50
    python bench/scale.py --render                       # the docs/benchmarks.md section

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
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "scale"


#: prctl option making this process the reaper of its orphaned descendants (linux/prctl.h).
PR_SET_CHILD_SUBREAPER = 36
#: How often the CPU time of a command's processes is sampled (seconds).
SAMPLE_EVERY = 0.2


def become_subreaper() -> None:
    """Adopt orphaned descendants (Ray's raylet, GCS and worker processes outlive the driver), so that every
    process a command starts stays in this process's tree until it is sampled and reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")


class CpuMeter:
    """CPU seconds of every process below this one, sampled from /proc.

    Resource usage of reaped children is not enough: most of Ray's workers' CPU time never reached
    ``RUSAGE_CHILDREN`` in a first try (they are reaped by the raylet), so each process's own user + system
    time is read from ``/proc/PID/stat`` every :data:`SAMPLE_EVERY` seconds and once more as a zombie,
    before it is reaped (``waitid`` with ``WNOWAIT``). A process that starts and ends between two samples is
    missed, and one that ends loses up to one interval when its parent reaps it: a lower bound, close for
    long-lived processes.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> int:
        """Record the CPU time of every descendant now; the number of this process's own children (zombies
        included)."""
        table: dict[int, tuple[int, int, float]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                table[int(entry.name)] = (int(fields[1]), int(fields[19]),
                                          (int(fields[11]) + int(fields[12])) / self.tick)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(children.get(os.getpid(), []))
        while todo:
            pid = todo.pop()
            _, start, cpu = table[pid]
            self.seen[(pid, start)] = max(self.seen.get((pid, start), 0.0), cpu)
            todo += children.get(pid, [])
        return len(children.get(os.getpid(), []))

    def reap(self, keep: int | None) -> bool:
        """Sample and reap one exited descendant other than ``keep``; False when there is none."""
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if info is None or info.si_pid in (0, keep):
            return False
        self.sample()
        os.waitpid(info.si_pid, 0)
        return True

    def run(self, cmd: list[str], env: dict[str, str], timeout: float = 120.0) -> tuple[int, str, str, float]:
        """Run ``cmd`` to completion and then wait for all its descendants (up to ``timeout`` seconds more).

        Returns:
            Exit code, standard output, standard error and the seconds from start to the command's exit.
        """
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
            code: int | None = None
            wall = deadline = 0.0
            while True:
                left = self.sample()
                if code is not None and (not left or time.monotonic() > deadline):
                    break
                while self.reap(proc.pid if code is None else None):
                    pass
                if code is None:
                    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                    if info is not None and info.si_pid == proc.pid:
                        wall = time.perf_counter() - t0
                        self.sample()
                        code = proc.wait()
                        deadline = time.monotonic() + timeout
                        continue
                time.sleep(SAMPLE_EVERY)
            if left:
                print(f"{cmd[3] if len(cmd) > 3 else cmd}: {left} descendant processes still running; "
                      "their CPU time after now is not counted", file=sys.stderr)
            out.seek(0)
            err.seek(0)
            return code, out.read().decode(errors="replace"), err.read().decode(errors="replace"), wall

    @property
    def seconds(self) -> float:
        """CPU seconds seen so far."""
        return sum(self.seen.values())


def _codesearch(args: list[str]) -> tuple[dict[str, Any], float, float]:
    """Run the CLI; its JSON summary, wall seconds and CPU seconds (the process and all its descendants,
    Ray's included, sampled by :class:`CpuMeter`: :func:`become_subreaper` must have been called)."""
    env = dict(os.environ, CODESEARCH_AUTO_DAEMON="0", HF_HUB_OFFLINE="1")
    meter = CpuMeter()
    code, stdout, stderr, wall = meter.run([sys.executable, "-m", "codesearch.cli", *args], env)
    if code != 0:
        sys.exit(f"codesearch {' '.join(args)} failed: {stderr.strip()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), wall, meter.seconds


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
    total: dict[str, Any] = {"units": 0, "embedded": 0, "tokens": 0, "embed_seconds": 0.0, "wall_seconds": 0.0,
                             "cpu_seconds": 0.0}
    for repo in repos:
        idir = OUT / "local" / repo.name
        shutil.rmtree(idir, ignore_errors=True)
        rep, wall, cpu = _codesearch(["index", str(repo), "--index-dir", str(idir), "--json"])
        for key in ("units", "embedded", "tokens", "embed_seconds"):
            total[key] += rep[key]
        total["wall_seconds"] += wall
        total["cpu_seconds"] += cpu
    total["tokens_per_second"] = total["tokens"] / total["embed_seconds"] if total["embed_seconds"] else 0.0
    return total


def run_batch(repos: list[Path], workers: int) -> dict[str, Any]:
    """The batch job into a new backend, then again with nothing changed."""
    db = OUT / f"w{workers}.db"
    shutil.rmtree(db, ignore_errors=True)
    args = ["index", "--backend", str(db), "--workers", str(workers), "--json", *map(str, repos)]
    rep, wall, cpu = _codesearch(args)
    again, wall_again, _ = _codesearch(args)
    return dict(rep, wall_seconds=wall, cpu_seconds=cpu, rerun_embedded=again["embedded"],
                rerun_wall_seconds=wall_again)


def query_latency(db: Path, n: int) -> dict[str, Any]:
    """Warm in-process latency of Searcher.search through MilvusStore (query encoding included), per mode."""

    from codesearch.config import Settings
    from codesearch.milvus_store import MilvusStore
    from codesearch.query import Query
    from codesearch.search import Searcher

    store = MilvusStore(str(db))
    searcher = Searcher(store, Settings())
    try:
        with store.snapshot():
            rows = store.client.query(store.units, filter="summary != ''", output_fields=["summary"], limit=n)
        queries = [Query(" ".join(r["summary"].split())[:200]) for r in rows] or [Query("parse a url")]
        return {"queries": len(queries), "units": store.count_units(),
                **_latency(searcher, queries, ["semantic", "lexical", "hybrid"])}
    finally:
        searcher.close()


# -- search quality through the backend, and latency up to 1M vectors ------------------------------------------


def _copied_backend(lang: str, db: Path) -> dict[str, Any]:
    """A Milvus Lite backend holding the local index's units of the quality benchmark's copy of ``lang``, with
    their vectors, written by ``MilvusStore.insert_units`` (the batch job's writer; the job makes the same unit
    records and text hashes, tests/test_scale.py). No Ray and no embedding: both backends rank the same units
    and the same vectors."""
    import sqlite3

    import numpy as np
    from quality import QUALITY_OUT

    from codesearch.config import Settings
    from codesearch.embed import read_model_info
    from codesearch.index import DB_NAME, row_to_symbol
    from codesearch.indexer import index_meta
    from codesearch.milvus_store import MilvusStore, lexical_text, unit_row_id

    settings = Settings()
    shutil.rmtree(db, ignore_errors=True)
    meta = index_meta(read_model_info(settings.model, settings.max_length, settings.runtime), settings)
    store = MilvusStore(str(db), create=True, identity=meta)
    t0 = time.perf_counter()
    try:
        store.prepare(meta)
        conn = sqlite3.connect(QUALITY_OUT / lang / "index-default" / DB_NAME)
        conn.row_factory = sqlite3.Row
        vectors = {h: np.frombuffer(b, dtype=np.float32)
                   for h, b in conn.execute("SELECT text_hash, vector FROM vectors")}
        rows = []
        for r in conn.execute("SELECT * FROM units ORDER BY id"):
            sym = row_to_symbol(r)
            rec = {f: getattr(sym, f) for f in ("path", "language", "kind", "name", "qualified_name", "signature",
                                                 "docstring", "summary", "start_line", "end_line", "start_byte",
                                                 "end_byte", "code", "doc_start_line", "doc_end_line", "role")}
            rec.update(id=unit_row_id(lang, sym, r["text_hash"]), repo=lang, text_hash=r["text_hash"],
                       lexical=lexical_text(sym), vector=vectors[r["text_hash"]].tolist())
            rows.append(rec)
        conn.close()
        for start in range(0, len(rows), 500):
            store.insert_units(rows[start:start + 500])
        store.put_texts(list(vectors), np.stack(list(vectors.values())))
        store.record_repositories({lang: {"root": str(QUALITY_OUT / lang / "repo"), "indexed_at": time.time()}})
        store.flush()
    finally:
        store.close()
    return {"units": len(rows), "embedded": 0, "write_seconds": round(time.perf_counter() - t0, 1)}


def quality(langs: list[str], modes: list[str]) -> dict[str, Any]:
    """MRR@10 per language and mode through the Milvus backend next to the local index (bench/quality.py's
    copies, queries and results; run it first with the same languages)."""
    from quality import QUALITY_OUT, score

    from codesearch.config import Settings
    from codesearch.errors import UsageError
    from codesearch.milvus_store import MilvusStore
    from codesearch.search import Searcher

    local = json.loads((BENCH / "out" / "quality.json").read_text())
    out: dict[str, Any] = {"command_local": local.get("command"), "languages": {}}
    for lang in langs:
        db = OUT / f"quality-{lang}.db"
        built = _copied_backend(lang, db)
        queries = json.loads((QUALITY_OUT / lang / "selection.json").read_text())["queries"]
        searcher = Searcher(MilvusStore(str(db)), Settings())
        res: dict[str, Any] = {**built, "queries": len(queries), "modes": {}}
        try:
            for mode in modes:
                ranked: dict[str, list[str]] = {}
                for q in queries:
                    try:
                        hits = searcher.search(q["query"], k=10, mode=mode)
                    except UsageError:  # as `codesearch query` in batch mode: no results for that query
                        hits = []
                    ranked[q["qid"]] = [f"{h.symbol.path}:{h.symbol.start_line}" for h in hits]
                mine = score(ranked, queries)
                theirs = {}
                same = 0
                path = QUALITY_OUT / lang / f"results-{mode}.jsonl"
                if path.is_file():
                    for line in path.read_text().splitlines():
                        row = json.loads(line)
                        theirs[row["qid"]] = [f"{r['path']}:{r['start_line']}" for r in row["results"]]
                    same = sum(1 for q in queries if theirs.get(q["qid"]) == ranked[q["qid"]])
                local_m = local["results"].get(lang, {}).get("modes", {}).get(mode, {})
                res["modes"][mode] = {"milvus_mrr@10": mine["mrr@10"], "local_mrr@10": local_m.get("mrr@10"),
                                      "milvus_recall@10": mine["recall@10"],
                                      "local_recall@10": local_m.get("recall@10"), "same_top10": same}
                print(f"{lang} {mode}: MRR@10 milvus {mine['mrr@10']:.4f} local {local_m.get('mrr@10', 0):.4f} "
                      f"same top-10 {same}/{len(queries)}", file=sys.stderr, flush=True)
        finally:
            searcher.close()
        out["languages"][lang] = res
    return out


def _latency(searcher: Any, queries: list[Any], modes: list[str]) -> dict[str, Any]:
    """Median and p95 ms of a warm ``searcher.search(q, k=10, mode=...)`` per mode over ``queries``."""
    import statistics

    searcher.search(queries[0], k=10)  # loads the model and the collection
    out: dict[str, Any] = {}
    for mode in modes:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[mode] = {"median_ms": round(statistics.median(times), 1),
                     "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1)}
        print(f"  {mode}: {out[mode]}", file=sys.stderr, flush=True)
    return out


def latency_to(lang: str, target: int, n_queries: int, clip: int = 256) -> dict[str, Any]:
    """Warm query latency through Milvus Lite on the ``lang`` quality backend, then with synthetic copies of
    its rows added up to ``target`` units (each copy: the same vector and record, another repository and id,
    code and lexical text clipped to ``clip`` bytes)."""
    import random

    from quality import QUALITY_OUT

    from codesearch.config import Settings
    from codesearch.milvus_store import MilvusStore
    from codesearch.milvus_store import clip as clip_text
    from codesearch.search import Searcher

    db = OUT / f"quality-{lang}.db"
    queries = [q["query"] for q in json.loads((QUALITY_OUT / lang / "selection.json").read_text())["queries"]]
    queries = random.Random(0).sample([q for q in queries if _parses(q)], n_queries)
    modes = ["semantic", "lexical", "hybrid"]
    out: dict[str, Any] = {"language": lang, "queries": len(queries), "clip_bytes": clip, "sizes": {}}
    store = MilvusStore(str(db))
    searcher = Searcher(store, Settings())
    try:
        base = store.count_units()
        print(f"latency at {base} units", file=sys.stderr, flush=True)
        out["sizes"][str(base)] = {"units": base, **_latency(searcher, queries, modes), "rss_mb": _rss_mb()}
        with store.snapshot():
            fields = ["id", "vector", "repo", "text_hash", "lexical", "path", "language", "kind", "role", "name",
                      "qualified_name", "signature", "docstring", "summary", "code", "start_line", "end_line",
                      "start_byte", "end_byte", "doc_start_line", "doc_end_line"]
            rows = store.client.query(store.units, filter="id >= 0", output_fields=fields, limit=16384)
        for r in rows:
            r["code"], r["lexical"], r["docstring"] = (clip_text(r[k], clip) for k in ("code", "lexical", "docstring"))
            r["vector"] = list(r["vector"])
        t0 = time.perf_counter()
        have, copy = base, 0
        next_id = 1 << 62
        while have < target:
            copy += 1
            batch = []
            for r in rows[:target - have]:
                next_id += 1
                batch.append({**r, "id": next_id, "repo": f"{lang}-copy{copy}"})
            for start in range(0, len(batch), 2000):
                store.client.insert(store.units, batch[start:start + 2000])
            have += len(batch)
            if copy % 20 == 0:
                print(f"  {have} units ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        store.flush()
        out["insert_seconds"] = round(time.perf_counter() - t0, 1)
        store._loaded = False
        n = store.count_units()
        print(f"latency at {n} units", file=sys.stderr, flush=True)
        out["sizes"][str(n)] = {"units": n, **_latency(searcher, queries, modes), "rss_mb": _rss_mb()}
    finally:
        searcher.close()
    return out


def _parses(text: str) -> bool:
    from codesearch.errors import UsageError
    from codesearch.query import parse

    try:
        parse(text)
    except UsageError:
        return False
    return True


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def batch_table(r: dict[str, Any]) -> list[str]:
    """The markdown table of a run: the local indexer's row and each batch run's."""
    local = r["local"]

    def cpu(row: dict[str, Any]) -> str:
        if "cpu_seconds" not in row:
            return "| | "
        return f"{row['cpu_seconds']:.1f} | {row['cpu_seconds'] / local['cpu_seconds']:.2f} | "

    lines = ["| run | units | embeddings computed | tokens/s, embedding stage | tokens/s per worker | wall s | "
             "wall vs local | CPU s | CPU vs local | re-run embedded | re-run wall s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| local `codesearch index`, one index per repository | {local['units']:,} | "
             f"{local['embedded']:,} | {local['tokens_per_second']:.0f} | {local['tokens_per_second']:.0f} | "
             f"{local['wall_seconds']:.1f} | 1.00 | {cpu(local)}| |"]
    for w, b in r["batch"].items():
        lines.append(f"| batch on Ray, {w} worker{'s' if int(w) > 1 else ''} | {b['units']:,} | "
                     f"{b['embedded']:,} | {b['tokens_per_second']:.0f} | {b['tokens_per_worker_second']:.0f} | "
                     f"{b['wall_seconds']:.1f} | {b['wall_seconds'] / local['wall_seconds']:.2f} | {cpu(b)}"
                     f"{b['rerun_embedded']} | {b['rerun_wall_seconds']:.1f} |")
    return lines


def _measured_on(result: dict[str, Any], path: Path) -> str:
    """The date a result was measured (its file's modification date for results written without one)."""
    return result.get("date") or time.strftime("%Y-%m-%d", time.localtime(path.stat().st_mtime))


def render() -> str:
    """The docs/benchmarks.md section from bench/out/scale.json, scale-quality.json and scale-latency.json."""
    out_dir = BENCH / "out"
    lines = ["## Organisation-wide batch indexing (Ray + Milvus Lite)", ""]
    path = out_dir / "scale.json"
    if path.is_file():
        r = json.loads(path.read_text())
        local = r["local"]
        names = r["repositories"]
        lines += [f"`{r.get('command', 'python bench/scale.py')}` "
                  f"({_measured_on(r, path)}; 1-minute load average {r['load_average_at_start'][0]:.1f} at the start, "
                  f"{r['load_average_at_end'][0]:.1f} at the end; 2 cores):",
                  f"{len(names) - r['forks']} benchmark-corpus packages as separate repositories "
                  f"({', '.join(n for n in names[:len(names) - r['forks']])}) plus {r['forks']} forks "
                  f"(copies of the first {r['forks']}), {local['units']:,} units: a subset of the ~85k-unit corpora "
                  "(about 14 times as many units: hours for the three rows on two cores). Each row is a subprocess "
                  "(torch import, model load and, for the batch job, Ray start-up included); all rows come from one "
                  "run.", "",
                  *batch_table(r)]
        lines += ["", "- \"tokens/s, embedding stage\" is tokens over the stage's wall time (actor start-up and model "
                  "load included); \"per worker\" is tokens over the seconds the actors spent in `encode` (for the "
                  "local row: the indexer's embedding time, model already loaded).",
                  "- \"CPU s\" is the user + system time of every process of the run: the CLI and, for the batch "
                  "job, Ray's GCS, raylet, Ray Data and actor workers, read from /proc every 0.2 s (`CpuMeter`; the "
                  "benchmark adopts orphaned processes, so the tree stays whole until each is sampled and reaped). "
                  "The reaped children's resource usage (`RUSAGE_CHILDREN`) is not enough: in a first try it "
                  "counted 48.6 CPU-s for a batch run whose actor alone spent 122 s in `encode`, most of the "
                  "Ray workers' time lost (they are reaped by the raylet, whose own usage never reaches us).",
                  "- The robust figures are the embeddings computed (the local indexer dedupes identical texts "
                  "within one repository, the batch job across all of them, forks included), the re-runs that "
                  "embed nothing, and the CPU seconds, which do not depend on the share of the cores a process "
                  "got; wall time and tokens/s do.", ""]
        lat = r.get("query_latency")
        if lat:
            lines += [f"Warm query latency through Milvus Lite on the 1-worker backend ({lat['units']:,} units, "
                      f"{lat['queries']} queries from unit summaries, in-process `Searcher` over `MilvusStore`, "
                      "query encoding included, same run):", "", "| mode | median ms | p95 ms |",
                      "| --- | ---: | ---: |"]
            lines += [f"| {m} | {lat[m]['median_ms']:.1f} | {lat[m]['p95_ms']:.1f} |"
                      for m in ("semantic", "lexical", "hybrid")]
            lines.append("")
    path = out_dir / "scale-quality.json"
    if path.is_file():
        q = json.loads(path.read_text())
        langs = q["languages"]
        embedded = ", ".join(f"{lang}: {v['units']:,} units" for lang, v in langs.items())
        lines += ["### Search quality: the Milvus backend next to the local index", "",
                  f"`{q['command']}` after `{(q.get('command_local') or '').strip()}` "
                  f"({_measured_on(q, path)}; the local figures are that run's; "
                  f"load average {q['load_average_at_start'][0]:.1f} at the start). For each language the local "
                  "index's units of the quality benchmark's copy and their vectors are written into a Milvus Lite "
                  "file by `MilvusStore.insert_units` (the batch job's writer; the job's units and text hashes are "
                  "the local index's, tests/test_scale.py), so both backends rank the same units and the same "
                  f"vectors ({embedded}). "
                  "Same queries, same model, k = 10; \"same top-10\" counts queries whose ten results "
                  "(path:line) are identical in order.", "",
                  "| language | mode | queries | MRR@10 local | MRR@10 Milvus | difference | same top-10 |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for lang, v in langs.items():
            for mode in ("semantic", "lexical", "hybrid"):
                m = v["modes"][mode]
                lm = m["local_mrr@10"] or 0.0
                lines.append(f"| {lang} | {mode} | {v['queries']} | {lm:.4f} | {m['milvus_mrr@10']:.4f} | "
                             f"{m['milvus_mrr@10'] - lm:+.4f} | {m['same_top10']} |")
        if len(langs) < 6:
            lines += ["", f"{len(langs)} of the six languages ({', '.join(langs)}).", ""]
        diffs = {mode: [v["modes"][mode]["milvus_mrr@10"] - (v["modes"][mode]["local_mrr@10"] or 0.0)
                        for v in langs.values()] for mode in ("semantic", "lexical", "hybrid")}
        lines += ["", "Semantic search ranks the same (FLAT, exact inner product on the same vectors; a few top-10 "
                  "lists differ by ties). The lexical side is Milvus' own BM25 over the same code-aware tokens, "
                  "not SQLite FTS5's with its per-column weights: "
                  f"{min(diffs['lexical']):+.3f} to {max(diffs['lexical']):+.3f} MRR@10. Hybrid, which fuses "
                  "without the local index's term statistics (at the weak-match semantic weight), is "
                  f"{min(diffs['hybrid']):+.3f} to {max(diffs['hybrid']):+.3f} from the local figure.", ""]
    path = out_dir / "scale-latency.json"
    if path.is_file():
        t = json.loads(path.read_text())
        lines += ["### Query latency through Milvus Lite up to 1M vectors", "",
                  f"`{t['command']}` ({_measured_on(t, path)}; load average "
                  f"{t['load_average_at_start'][0]:.1f} at the start, "
                  f"{t['load_average_at_end'][0]:.1f} at the end): warm in-process `Searcher` over `MilvusStore` "
                  f"(query encoding included), {t['queries']} of the {t['language']} quality queries, k = 10, first "
                  f"on the {t['language']} quality backend, then after adding synthetic copies of its rows "
                  f"(each copy: the same vector and record under another repository name and id, code, docstring and "
                  f"lexical text clipped to {t['clip_bytes']} bytes; inserting them took {t['insert_seconds']:.0f} s). "
                  "FLAT (exact) vector search and Milvus Lite's own BM25.", "",
                  "| units | mode | median ms | p95 ms | process RSS MB |", "| ---: | --- | ---: | ---: | ---: |"]
        for size in sorted(t["sizes"].values(), key=lambda v: v["units"]):
            for mode in ("semantic", "lexical", "hybrid"):
                lines.append(f"| {size['units']:,} | {mode} | {size[mode]['median_ms']:.1f} | "
                             f"{size[mode]['p95_ms']:.1f} | {size['rss_mb']:,.0f} |")
        lines += ["", "Milvus Lite 3.2 is a pure-Python engine (NumPy brute force for FLAT, its own BM25 inverted "
                  "index); at 1M units a query takes seconds and the process holds "
                  f"{max(v['rss_mb'] for v in t['sizes'].values()) / 1024:.1f} GB. That is the "
                  "single-machine mode's limit, not a Milvus server's (not measured here: no server on this "
                  "machine; PyPI's embedded server `milvus` stops at 2.3.5, before Milvus 2.5's BM25 full-text "
                  "search that the collection schema uses); the copies also make every query's top hits exact "
                  "ties.", ""]
    lines += ["GPU tokens/s: not measured (no GPU in this session; the encoder runs on CPU only)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", type=Path, help="a repository (repeatable; default: bench/corpora)")
    ap.add_argument("--forks", type=int, default=2, help="copies of the first repositories, as forks (default 2)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="encoder workers to measure")
    ap.add_argument("--out", type=Path, default=BENCH / "out" / "scale.json")
    ap.add_argument("--queries", type=int, default=50, help="queries for the latency through Milvus Lite (0: skip)")
    ap.add_argument("--quality", nargs="+", metavar="LANG",
                    help="instead: MRR@10 through the Milvus backend next to the local index for these languages "
                         "(bench/quality.py's copies; run it first)")
    ap.add_argument("--latency", metavar="LANG", help="instead: query latency through Milvus Lite on LANG's quality "
                    "backend (made by --quality), then with synthetic copies up to --latency-units")
    ap.add_argument("--latency-units", type=int, default=1_000_000)
    ap.add_argument("--render", action="store_true", help="instead: write the docs/benchmarks.md section from the "
                    "JSON files in bench/out")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    if args.render:
        from benchlib import write_doc_section

        write_doc_section("scale", render())
        return 0
    if args.quality or args.latency:
        result: dict[str, Any] = {"command": "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None
                                                                                else argv),
                                  "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d")}
        if args.quality:
            result.update(quality(args.quality, ["semantic", "lexical", "hybrid"]))
        else:
            result.update(latency_to(args.latency, args.latency_units, args.queries))
        result["load_average_at_end"] = os.getloadavg()
        out = args.out if args.out != BENCH / "out" / "scale.json" else \
            BENCH / "out" / ("scale-quality.json" if args.quality else "scale-latency.json")
        out.write_text(json.dumps(result, indent=2, sort_keys=True))
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    sources = args.repo or _default_repos()
    if not sources:
        ap.error("no repositories: pass --repo PATH or run bench/corpora.py install")
    repos = prepare(sources, args.forks)
    become_subreaper()
    load_start = os.getloadavg()
    local = run_local(repos)
    batches = {w: run_batch(repos, w) for w in args.workers}
    latency = query_latency(OUT / f"w{args.workers[0]}.db", args.queries) if args.queries else None
    result = {"repositories": [r.name for r in repos], "forks": args.forks, "local": local,
              "batch": {str(w): b for w, b in batches.items()}, "query_latency": latency,
              "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d"),
              "command": "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True))
    print(f"{len(repos)} repositories ({args.forks} of them forks), {local['units']} units\n")
    print("\n".join(batch_table(result)))
    if latency:
        print(f"\nWarm query latency through Milvus Lite ({latency['units']} units, {latency['queries']} queries, "
              "query encoding included):\n")
        print("| mode | median ms | p95 ms |\n| --- | ---: | ---: |")
        for mode in ("semantic", "lexical", "hybrid"):
            print(f"| {mode} | {latency[mode]['median_ms']:.1f} | {latency[mode]['p95_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
