"""What one small update costs at 100k units: FAISS snapshots only when due vs a FAISS file per update.

Usage::

    .venv/bin/python bench/freshness.py build          # once: the 100k-unit tree (bench/out/freshness/base100k)
    .venv/bin/python bench/update_cost.py run          # writes bench/out/update_cost/results.json
    .venv/bin/python bench/update_cost.py report --write   # the "Update cost" section of docs/benchmarks.md

On a copy of the freshness benchmark's 100k-unit tree, each round renames one function in a
different Python file and runs the update a watch daemon runs for it (``index_repository`` with
``paths=[that file]``, the warm packaged encoder, in this process), alternating two write policies
edit by edit in one run:

- ``per_update``: the previous behaviour, a FAISS file for every generation (read the previous
  file, remove and add the delta, write, fsync, rename): forced by making every snapshot due.
- ``when_due``: the current behaviour: a snapshot only once the id delta since the last one exceeds
  ``max(1000, units / 20)``; other updates write no FAISS file.

It also times what a cold reader pays to open the index (newest snapshot + delta) against opening
a snapshot of its own generation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import freshness  # noqa: E402
from benchlib import write_doc_section  # noqa: E402

OUT = BENCH / "out" / "update_cost"
POLICIES = ("per_update", "when_due")


def _open_reader_seconds(idir: Path) -> float:
    from codesearch.index import IndexReader

    t0 = time.perf_counter()
    reader = IndexReader(idir)
    with reader.snapshot():
        pass
    reader.close()
    return time.perf_counter() - t0


def run(edits: int) -> dict[str, Any]:
    """Alternate the two policies over ``2 * edits`` one-function edits; returns the results."""
    import codesearch.index as index_mod
    from codesearch.config import load_settings
    from codesearch.embed import load_embedder
    from codesearch.indexer import index_repository

    freshness.build()
    work = freshness.fresh_copy(freshness.BASE100K, "work-update-cost")
    settings = load_settings(work)
    embedder = load_embedder(settings.model, settings.max_length, batch_size=8, threads=1)
    normal_due = index_mod.snapshot_due
    index_repository(work, settings, embedder=embedder)  # settle: writes the first snapshot if none
    times: dict[str, list[float]] = {p: [] for p in POLICIES}
    snapshots = dict.fromkeys(POLICIES, 0)
    picks = freshness.pick_functions(work, 2 * edits, seed=11)
    freshness.log(f"{len(picks)} edits on {freshness.counts(work)['units']} units")
    for i, (path, name) in enumerate(picks):
        policy = POLICIES[i % 2]
        index_mod.snapshot_due = (lambda _d, _u: True) if policy == "per_update" else normal_due
        file = work / path
        new = f"{name}_uc{freshness.alpha(i)}"
        file.write_text(file.read_text(encoding="utf-8", errors="surrogateescape").replace(
            f"def {name}(", f"def {new}(", 1), encoding="utf-8", errors="surrogateescape")
        t0 = time.perf_counter()
        rep = index_repository(work, settings, embedder=embedder, paths=[path])
        times[policy].append(time.perf_counter() - t0)
        snapshots[policy] += int(rep.snapshot_written)
        assert rep.files_changed == 1, rep
    index_mod.snapshot_due = normal_due
    idir = work / ".codesearch"
    delta_open = [_open_reader_seconds(idir) for _ in range(5)]
    rep = index_repository(work, settings, embedder=embedder, paths=[])  # a no-op run
    index_mod.snapshot_due = lambda _d, _u: True
    (work / picks[0][0]).touch()
    index_repository(work, settings, embedder=embedder, paths=[picks[0][0]])
    index_mod.snapshot_due = normal_due
    own_open = [_open_reader_seconds(idir) for _ in range(5)]
    units = freshness.counts(work)["units"]
    shutil.rmtree(work, ignore_errors=True)
    return {"units": units, "edits_per_policy": edits, "machine": freshness.machine(),
            "update_ms": {p: freshness.summary(times[p]) for p in POLICIES},
            "snapshots_written": snapshots,
            "cold_open_ms": {"snapshot_plus_delta": freshness.summary(delta_open),
                             "snapshot_of_own_generation": freshness.summary(own_open)}}


def report(r: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    u = r["update_ms"]
    ratio = statistics.median([u["per_update"]["median"] / u["when_due"]["median"],
                               u["per_update"]["p95"] / u["when_due"]["p95"]])
    co = r["cold_open_ms"]
    m = r["machine"]
    return "\n".join([
        "## Update cost at 100k units",
        "",
        "`python bench/update_cost.py run`, then `python bench/update_cost.py report --write` (needs the 100k tree of "
        "`bench/freshness.py build`). One-function edits, each in another Python file of the "
        f"{r['units']}-unit tree, each followed by the update the watch daemon runs for it (in process, warm "
        "packaged encoder, one thread); the two write policies alternate edit by edit in one run.",
        "",
        "| policy | update median / p95 / max | FAISS snapshots written |",
        "|---|---|---|",
        f"| a FAISS file per update (before) | {u['per_update']['median']:.0f} / {u['per_update']['p95']:.0f} / "
        f"{u['per_update']['max']:.0f} ms (n={u['per_update']['n']}) | {r['snapshots_written']['per_update']} |",
        f"| a snapshot only when the delta is large (now) | {u['when_due']['median']:.0f} / "
        f"{u['when_due']['p95']:.0f} / {u['when_due']['max']:.0f} ms (n={u['when_due']['n']}) | "
        f"{r['snapshots_written']['when_due']} |",
        "",
        f"The update is {ratio:.1f}x cheaper (median of the median and p95 ratios). A snapshot is still written once "
        "the id delta since the last one exceeds max(1000, units / 20): at 100k units about every 5,000 changed "
        "units (an edit replaces the units of its file). Opening the index cold (a fresh reader: newest snapshot plus "
        f"the delta from SQLite) took {co['snapshot_plus_delta']['median']:.0f} ms median, against "
        f"{co['snapshot_of_own_generation']['median']:.0f} ms with a snapshot of its own generation.",
        "",
        f"Machine: {m.get('cpu', 'AMD EPYC')}, {m.get('cores', 2)} cores, shared with other jobs (load average "
        f"{m.get('load', '?')} at the start).",
        ""])


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--edits", type=int, default=20, help="edits per policy (default 20)")
    ap.add_argument("--write", action="store_true", help="report: replace the section in docs/benchmarks.md")
    args = ap.parse_args(argv)
    path = OUT / "results.json"
    if args.what == "run":
        OUT.mkdir(parents=True, exist_ok=True)
        results = run(args.edits)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["update_ms"], indent=2))
        return 0
    text = report(json.loads(path.read_text()))
    if args.write:
        write_doc_section("update-cost", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
