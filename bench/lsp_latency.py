"""Latency of ``codesearch/search`` measured through a real LSP client on a ~10k-unit repository.

Usage::

    python bench/lsp_latency.py [--repo PATH | --seed DIR] [--units 10000] [--queries 200] [--k 10]

The repository (``bench/out/lsp/repo`` unless ``--repo``) is, by default, built once from the Python
standard library of this interpreter: top-level modules in path order until ``--units`` units, indexed
with ``codesearch index`` (every unit embedded: about 20 minutes on 2 CPU cores). ``--seed DIR`` copies
an already indexed tree instead (e.g. ``bench/out/freshness/base``, the same files indexed by
``bench/freshness.py``).

Then ``codesearch lsp`` is started in the repository and driven by pygls' ``LanguageClient`` over
stdio, as an editor would:

* **ready**: process start -> ``initialize`` -> ``codesearch/status`` says ready (index opened and
  checked against the tree, model loaded);
* **search**: ``--queries`` sequential ``codesearch/search`` requests (k=``--k``) per mode, each
  query a docstring summary of a unit sampled from the index (seeded), after 5 warm-up queries;
  latency is the client's round trip (request sent -> answer parsed); the server's own ``elapsedMs``
  is reported next to it;
* **with an unsaved buffer**: the same in hybrid mode while the largest file is open with an
  unsaved edit (the overlay path, docs/lsp.md);
* **edit to result**: ``didChange`` that adds a function, then a search that finds it (the search
  waits for the buffer's units to be embedded);
* **workspace/symbol**: the same queries through ``workspace/symbol``.

Prints a markdown table, writes ``bench/out/lsp_latency.json`` and replaces the LSP section of
docs/benchmarks.md (between its markers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import OUT, codesearch_cmd, log, machine, run_measured, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- lsp-latency:start -->", "<!-- lsp-latency:end -->"
NEW_FUNCTION = '''

def rotate_log_files_by_age(directory, keep_days):
    """Delete rotated log files in a directory that are older than the given number of days."""
    return [p for p in directory.iterdir() if p.suffix == ".log" and p.stat().st_mtime < keep_days]
'''


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    """median, p95, p99, max and mean of latencies in ms."""
    return {"n": len(values), "median": round(statistics.median(values), 1), "p95": round(percentile(values, 0.95), 1),
            "p99": round(percentile(values, 0.99), 1), "max": round(max(values), 1),
            "mean": round(statistics.fmean(values), 1)}


def build_repo(repo: Path, units: int) -> None:
    """Copy top-level stdlib modules (path order) until they hold ``units`` units, then index them."""
    import parsers

    src = Path(sysconfig.get_paths()["stdlib"])
    repo.mkdir(parents=True)
    total = 0
    for path in sorted(src.glob("*.py")):
        data = path.read_bytes()
        try:
            n = len(parsers.extract(data, "python", path.name))
        except Exception:  # noqa: BLE001 - an odd module is skipped
            continue
        shutil.copy2(path, repo / path.name)
        total += n
        if total >= units:
            break
    log(f"copied {len(list(repo.glob('*.py')))} modules ({total} units) from {src}; indexing (all units embedded)")
    res = run_measured([*codesearch_cmd(), "index", str(repo), "--json"], env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if res.returncode != 0:
        raise SystemExit(f"codesearch index failed: {res.stdout[-2000:]}")
    log(f"indexed in {res.seconds:.0f}s")


def sample_queries(repo: Path, n: int, seed: int) -> list[str]:
    """Docstring summaries (4-30 words) of units sampled from the index."""
    db = next((repo / ".codesearch").glob("index.v*.db"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = [r[0] for r in conn.execute("SELECT DISTINCT summary FROM units WHERE summary != ''")]
    conn.close()
    rows = sorted(s for s in rows if 4 <= len(s.split()) <= 30)
    random.Random(seed).shuffle(rows)
    return [" ".join(s.split()) for s in rows[:n]]


def plain(obj: Any) -> Any:
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


async def measure(repo: Path, queries: list[str], k: int) -> dict[str, Any]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("lsp-latency", "1")
    ready = asyncio.Event()
    statuses: list[dict[str, Any]] = []

    @client.feature("codesearch/status")
    def on_status(params: Any) -> None:
        s = plain(params)
        statuses.append(s)
        if s.get("state") == "ready":
            ready.set()

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(params: Any) -> None:
        return None

    cmd = codesearch_cmd()
    t0 = time.perf_counter()
    await client.start_io(cmd[0], *cmd[1:], "lsp", cwd=str(repo), env=dict(os.environ, HF_HUB_OFFLINE="1"))
    await client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True)),
        root_uri=repo.as_uri(), workspace_folders=[types.WorkspaceFolder(uri=repo.as_uri(), name=repo.name)]))
    client.initialized(types.InitializedParams())
    await asyncio.wait_for(ready.wait(), 3600)
    ready_s = time.perf_counter() - t0
    units = statuses[-1]["units"]
    # Units embedded before ready: 0 when the index was current, all of them after a rebuild.
    embedded = max((r["progress"][1] for s in statuses for r in s.get("roots", [])
                    if r.get("progress") and str(r.get("message", "")).startswith("embedding")), default=0)
    log(f"ready after {ready_s:.1f}s: {units} units ({embedded} embedded on the way)")

    async def search(query: str, mode: str | None = None) -> tuple[float, float, dict[str, Any]]:
        params: dict[str, Any] = {"query": query, "k": k}
        if mode:
            params["mode"] = mode
        t = time.perf_counter()
        res = plain(await client.protocol.send_request_async("codesearch/search", params))
        return 1000 * (time.perf_counter() - t), res["elapsedMs"], res

    out: dict[str, Any] = {"ready_seconds": round(ready_s, 1), "startup_embedded": embedded, "units": units, "k": k,
                           "runtime": os.environ.get("CODESEARCH_RUNTIME", "auto"), "modes": {}}
    for q in queries[:5]:
        await search(q)
    for mode in ("hybrid", "semantic", "lexical"):
        rtt, server = [], []
        for q in queries:
            a, b, _ = await search(q, mode)
            rtt.append(a)
            server.append(b)
        out["modes"][mode] = {"client": summary(rtt), "server": summary(server)}
        log(f"{mode}: median {out['modes'][mode]['client']['median']} ms, p95 {out['modes'][mode]['client']['p95']} ms")

    # An unsaved buffer: the largest file, with one function added.
    big = max(repo.glob("*.py"), key=lambda p: p.stat().st_size)
    uri = big.as_uri()
    text = big.read_text(encoding="utf-8")
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    end = types.Position(line=text.count("\n"), character=0)
    t = time.perf_counter()
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=end, end=end),
                                                               text=NEW_FUNCTION)]))
    _, _, res = await search("delete old rotated log files")
    edit_ms = 1000 * (time.perf_counter() - t)
    found = res["results"][0]["name"] == "rotate_log_files_by_age" if res["results"] else False
    out["edit_to_result_ms"] = round(edit_ms, 1)
    out["edit_found_first"] = found
    out["overlay_file"] = {"path": big.name, "bytes": big.stat().st_size}
    rtt, server = [], []
    for q in queries:
        a, b, _ = await search(q)
        rtt.append(a)
        server.append(b)
    out["hybrid_with_unsaved_buffer"] = {"client": summary(rtt), "server": summary(server)}
    log(f"with an unsaved buffer: median {out['hybrid_with_unsaved_buffer']['client']['median']} ms")

    rtt = []
    for q in queries[:100]:
        t = time.perf_counter()
        await client.workspace_symbol_async(types.WorkspaceSymbolParams(query=q))
        rtt.append(1000 * (time.perf_counter() - t))
    out["workspace_symbol"] = {"client": summary(rtt)}

    await client.shutdown_async(None)
    client.exit(None)
    await asyncio.wait_for(client.stop(), 30)
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    rows = ["| path | mode | client median | client p95 | client p99 | server median | server p95 |",
            "|---|---|---|---|---|---|---|"]
    for mode, v in res["modes"].items():
        rows.append(f"| `codesearch/search` | {mode} | {v['client']['median']} ms | {v['client']['p95']} ms | "
                    f"{v['client']['p99']} ms | {v['server']['median']} ms | {v['server']['p95']} ms |")
    v = res["hybrid_with_unsaved_buffer"]
    rows.append(f"| `codesearch/search`, one unsaved buffer | hybrid | {v['client']['median']} ms | "
                f"{v['client']['p95']} ms | {v['client']['p99']} ms | {v['server']['median']} ms | "
                f"{v['server']['p95']} ms |")
    v = res["workspace_symbol"]["client"]
    rows.append(f"| `workspace/symbol` | hybrid | {v['median']} ms | {v['p95']} ms | {v['p99']} ms | | |")
    return "\n".join([
        START,
        "## Editor search latency (LSP)",
        "",
        f"`{('python bench/lsp_latency.py ' + res['args']).strip()}` on {res['units']} units "
        f"({res['repo_note']}), k={res['k']}, hybrid = {res['settings']['fusion']} fusion with oversample "
        f"{res['settings']['oversample']}, {res['queries']} queries per row (docstring summaries of "
        "sampled units), sent one at a time through pygls' `LanguageClient` over stdio to `codesearch lsp`. "
        "*client* is the editor-side round trip, *server* the server's own `elapsedMs`.",
        "",
        *rows,
        "",
        (f"* Ready after start (model loaded, index opened and checked against the tree): {res['ready_seconds']} s."
         if not res["startup_embedded"] else
         f"* Ready after start: {res['ready_seconds']} s, including a rebuild of the index through the server "
         f"({res['startup_embedded']} units embedded, with `$/progress`), as after a change of model settings."),
        f"* Edit to result: `didChange` adding one function to an unsaved {res['overlay_file']['bytes'] // 1000} kB "
        f"buffer, then a search that {'finds it first' if res['edit_found_first'] else 'runs'}: "
        f"{res['edit_to_result_ms']} ms (the search waits for the buffer's new unit to be embedded).",
        f"* Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average {res['load_before']} before "
        "the run (other jobs were running); the server encodes queries on one thread (runtime "
        f"`{res['runtime']}`" + (": ONNX Runtime fp32 graph, the default for servers" if res["runtime"] == "auto"
                                 else "") + ").",
        "",
        END,
    ])


def update_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, help="An indexed repository to use as is.")
    ap.add_argument("--seed", type=Path, help="Copy this indexed tree (with its .codesearch) to bench/out/lsp/repo.")
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed-queries", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT / "lsp_latency.json")
    ap.add_argument("--no-doc", action="store_true", help="Do not update docs/benchmarks.md.")
    args = ap.parse_args(argv)
    repo = args.repo
    note = "the given repository"
    if repo is None:
        repo = OUT / "lsp" / "repo"
        if args.seed is not None:
            if repo.exists():
                shutil.rmtree(repo)
            log(f"copying {args.seed} to {repo}")
            shutil.copytree(args.seed, repo, symlinks=True)
            note = f"Python standard library modules, indexed tree copied from {args.seed}"
        elif not (repo / ".codesearch").is_dir():
            if repo.exists():
                shutil.rmtree(repo)
            build_repo(repo, args.units)
            note = "Python standard library modules"
        else:
            note = "Python standard library modules"
    repo = repo.resolve()
    queries = sample_queries(repo, args.queries, args.seed_queries)
    load = os.getloadavg()[0]
    res = asyncio.run(measure(repo, queries, args.k))
    shown = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    from codesearch.config import load_settings

    settings = load_settings(repo)
    res.update(queries=len(queries), machine=machine(), load_before=round(load, 2), repo_note=note, args=shown,
               settings={"fusion": settings.fusion, "oversample": settings.oversample,
                         "semantic_weight": settings.semantic_weight})
    write_json(args.out, res)
    section = markdown(res)
    print(section)
    if not args.no_doc:
        update_doc(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
