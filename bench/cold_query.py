"""What a cold ``codesearch query`` (no daemon) spends its time on: fp32 on numpy (the default), int8 on ONNX
Runtime, and fp32 on torch.

Usage::

    python bench/cold_query.py [--runs 5] [--out bench/out/cold_query.json]

Indexes a copy of the six fixture repositories once per runtime (``runtime = numpy``, ``onnx``, ``torch``),
then, alternating the runtimes, runs ``--runs`` times each:

- the **total**: ``codesearch query TEXT`` in a fresh process (``auto_daemon`` off), wall time from outside,
  interpreter start included;
- the **steps**, in another fresh process that does what the CLI does, timed one by one: interpreter start
  (``python -c pass``, measured separately), importing the CLI, numpy, the index (FAISS, SQLite), the
  runtime (safetensors.numpy + threadpoolctl + tokenizers, onnxruntime + tokenizers, or torch +
  safetensors + tokenizers), opening the index, loading the
  model, the first query encode, and the search.

Prints medians in milliseconds and writes the JSON report. The machine is shared: compare the runtimes
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import OUT, machine, write_json  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "repos"
QUERY = "retry with exponential backoff"

STEPS = r"""
import json, sys, time
t = [time.perf_counter()]
c = [time.process_time()]
import codesearch.cli  # noqa: F401
t.append(time.perf_counter()); c.append(time.process_time())
import numpy  # noqa: F401
t.append(time.perf_counter()); c.append(time.process_time())
from codesearch.index import IndexReader, find_index_dir  # FAISS, SQLite
t.append(time.perf_counter()); c.append(time.process_time())
runtime = sys.argv[3]
if runtime == "onnx":
    import onnxruntime, tokenizers  # noqa: F401, E401
elif runtime == "numpy":
    import safetensors.numpy, threadpoolctl, tokenizers  # noqa: F401, E401
else:
    import torch, safetensors.torch, tokenizers  # noqa: F401, E401
t.append(time.perf_counter()); c.append(time.process_time())
from pathlib import Path
from codesearch.config import load_settings
from codesearch.search import Searcher
repo = Path(sys.argv[1])
settings = load_settings(repo).replace(index_dir=sys.argv[2])
searcher = Searcher(IndexReader(find_index_dir(repo, settings.index_dir)), settings)
t.append(time.perf_counter()); c.append(time.process_time())
emb = searcher.embedder
t.append(time.perf_counter()); c.append(time.process_time())
emb.encode([sys.argv[4]], kind="query")
t.append(time.perf_counter()); c.append(time.process_time())
hits = searcher.search(sys.argv[4], k=10)
t.append(time.perf_counter()); c.append(time.process_time())
assert hits and ("torch" in sys.modules) == (runtime == "torch")
names = ["import cli", "import numpy", "import index (faiss, sqlite)", "import runtime", "open index",
         "load model", "first encode", "search"]
print(json.dumps({"wall": {n: 1000 * (b - a) for n, a, b in zip(names, t, t[1:])},
                  "cpu": {n: 1000 * (b - a) for n, a, b in zip(names, c, c[1:])}}))
"""


def _env(runtime: str) -> dict[str, str]:
    return {**os.environ, "CODESEARCH_AUTO_DAEMON": "0", "CODESEARCH_RUNTIME": runtime,
            "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


def _wall(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the child: user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = 1000 * (time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, 1000 * (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT / "cold_query.json")
    args = ap.parse_args(argv)
    exe = Path(sys.executable)
    cli = [str(exe), "-m", "codesearch.cli"]
    runtimes = ("numpy", "onnx", "torch")
    totals: dict[str, list[tuple[float, float]]] = {r: [] for r in runtimes}
    steps: dict[str, list[dict[str, dict[str, float]]]] = {r: [] for r in runtimes}
    start: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="codesearch-cold-") as tmp:
        repo = Path(tmp) / "repo"
        for src in sorted(FIXTURES.glob("mini_*")):
            shutil.copytree(src, repo / src.name)
        index_dirs = {r: str(Path(tmp) / f"index-{r}") for r in runtimes}
        for r in runtimes:
            subprocess.run([*cli, "index", str(repo), "--index-dir", index_dirs[r]], env=_env(r), check=True,
                           capture_output=True)
        for _ in range(args.runs):
            start.append(_wall([str(exe), "-c", "pass"], _env("onnx")))
            for r in runtimes:
                totals[r].append(_wall([*cli, "query", QUERY, "--repo", str(repo), "--index-dir", index_dirs[r]],
                                       _env(r)))
                out = subprocess.run([str(exe), "-c", STEPS, str(repo), index_dirs[r], r, QUERY], env=_env(r),
                                     check=True, capture_output=True, text=True).stdout
                steps[r].append(json.loads(out.strip().splitlines()[-1]))
    report = {"benchmark": "cold_query", "command": "python bench/cold_query.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine(), "runs": args.runs, "load_average_1m_at_end": round(os.getloadavg()[0], 2),
              "interpreter_start_ms": {"wall": round(statistics.median(w for w, _ in start), 1),
                                       "cpu": round(statistics.median(c for _, c in start), 1)},
              "runtimes": {}}
    for r in runtimes:
        med = {kind: {name: round(statistics.median(s[kind][name] for s in steps[r]), 1)
                      for name in steps[r][0][kind]} for kind in ("wall", "cpu")}
        report["runtimes"][r] = {"total_ms_median": {"wall": round(statistics.median(w for w, _ in totals[r]), 1),
                                                     "cpu": round(statistics.median(c for _, c in totals[r]), 1)},
                                 "total_ms_all": [[round(w, 1), round(c, 1)] for w, c in totals[r]],
                                 "steps_ms_median": med}
    write_json(args.out, report)
    rt = report["runtimes"]
    labels = {"numpy": "numpy fp32 (default)", "onnx": "onnx int8", "torch": "torch fp32"}
    print("| step, median ms (wall / CPU) | " + " | ".join(labels[r] for r in runtimes) + " |")
    print("|---|" + "---:|" * len(runtimes))
    start_ms = report["interpreter_start_ms"]
    print("| interpreter start | " + " | ".join(f"{start_ms['wall']} / {start_ms['cpu']}" for _ in runtimes) + " |")
    for n in rt["onnx"]["steps_ms_median"]["wall"]:
        print(f"| {n} | " + " | ".join(f"{rt[r]['steps_ms_median']['wall'][n]} / {rt[r]['steps_ms_median']['cpu'][n]}"
                                      for r in runtimes) + " |")
    print("| **`codesearch query`, total** | " + " | ".join(
        f"**{rt[r]['total_ms_median']['wall']} / {rt[r]['total_ms_median']['cpu']}**" for r in runtimes) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
