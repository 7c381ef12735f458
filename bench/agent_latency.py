"""Agent and shell latency: MCP ``search_code`` round trips and answer size; first vs second ``codesearch query``.

Usage::

    .venv/bin/python bench/freshness.py build        # once: the ~10k-unit repo and the 100k-unit tree
    .venv/bin/python bench/agent_latency.py run      # writes bench/out/agent/results.json
    .venv/bin/python bench/agent_latency.py report --write   # the "Agents and auto-start" section of docs/benchmarks.md

What it measures, on copies of the freshness benchmark's trees (real standard-library code, the
shipped model):

- ``search_code`` through the MCP SDK's own client over stdio to ``codesearch mcp`` (which starts the
  repository's daemon), warm: 30 queries after 5 warm-up ones, default arguments (8 results, 12 code
  lines each), at 10k and 100k units; and the size of a default answer in bytes and in tokens of the
  shipped model's tokenizer.
- ``codesearch query`` from a fresh process, 10 rounds: with no daemon running and ``auto_daemon`` on
  (the first call: it answers in-process and starts a daemon), then once that daemon is idle (the
  second call), and with ``auto_daemon`` off (today's cold path), interleaved in each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import freshness  # noqa: E402
from benchlib import machine, write_doc_section, write_json  # noqa: E402

OUT = BENCH / "out" / "agent"
RESULTS = OUT / "results.json"


def log(msg: str) -> None:
    """Progress goes to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def copy_tree(base: Path, name: str) -> Path:
    """A private copy of a benchmark tree with its index (so its daemon is ours)."""
    work = OUT / name
    shutil.rmtree(work, ignore_errors=True)
    log(f"copying {base} to {work}")
    shutil.copytree(base, work, symlinks=True)
    for f in ("daemon.sock", "daemon.pid"):
        (work / ".codesearch" / f).unlink(missing_ok=True)
    return work


def stop_daemon(root: Path) -> None:
    from codesearch import client

    client.stop_daemon(root / ".codesearch", timeout=120)


def wait_idle(root: Path, timeout: float = 900) -> dict[str, Any]:
    from codesearch import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.probe(root / ".codesearch")
        if st and st.get("state") == "idle" and not st.get("queue"):
            return st
        time.sleep(0.2)
    raise RuntimeError(f"the daemon of {root} did not become idle")


def tokenizer() -> Any:
    from tokenizers import Tokenizer

    import codesearch

    tok = Tokenizer.from_file(str(Path(codesearch.__file__).parent / "model" / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


async def _mcp_session(root: Path, queries: list[str], warmup: int) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=freshness.codesearch_cmd()[0],
                                   args=[*freshness.codesearch_cmd()[1:], "mcp"], cwd=str(root),
                                   env={**freshness.env(), "CODESEARCH_AUTO_DAEMON": "1"})
    times: list[float] = []
    sizes: list[int] = []
    texts: list[str] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("index_status", {})  # starts the daemon
        await asyncio.get_running_loop().run_in_executor(None, wait_idle, root)
        for i, q in enumerate(queries[:warmup] + queries):
            t0 = time.perf_counter()
            res = await session.call_tool("search_code", {"query": q})
            dt = time.perf_counter() - t0
            assert not res.is_error, res.content
            if i >= warmup:
                times.append(dt)
                sizes.append(len(res.content[0].text.encode()))
                texts.append(res.content[0].text)
        small = await session.call_tool("search_code", {"query": queries[0], "k": 5, "code_lines": 0})
    tok = tokenizer()
    tokens = [len(tok.encode(t, add_special_tokens=False).ids) for t in texts]
    return {"round_trip_ms": freshness.summary(times), "answer_bytes": {
                "median": int(statistics.median(sizes)), "max": max(sizes)},
            "answer_tokens": {"median": int(statistics.median(tokens)), "max": max(tokens)},
            "small_answer_bytes": len(small.content[0].text.encode()), "queries": len(times)}


def measure_mcp(root: Path) -> dict[str, Any]:
    stop_daemon(root)
    out = asyncio.run(_mcp_session(root, freshness.QUERIES, warmup=5))
    stop_daemon(root)
    return out


def timed_query(root: Path, text: str, **env: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([*freshness.codesearch_cmd(), "query", text, "--json"], cwd=root, env={**freshness.env(), **env},
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def measure_cli(root: Path, rounds: int) -> dict[str, Any]:
    first, second, off = [], [], []
    for i in range(rounds):
        q = freshness.QUERIES[i % len(freshness.QUERIES)]
        stop_daemon(root)
        off.append(timed_query(root, q, CODESEARCH_AUTO_DAEMON="0"))
        first.append(timed_query(root, q, CODESEARCH_AUTO_DAEMON="1"))
        wait_idle(root)
        second.append(timed_query(root, freshness.QUERIES[(i + 7) % len(freshness.QUERIES)],
                                  CODESEARCH_AUTO_DAEMON="1"))
        log(f"round {i + 1}: off {off[-1]:.2f}s, first {first[-1]:.2f}s, second {second[-1] * 1000:.0f}ms")
    stop_daemon(root)
    return {"first_call_ms": freshness.summary(first), "second_call_ms": freshness.summary(second),
            "auto_daemon_off_ms": freshness.summary(off), "rounds": rounds}


def run(sizes: list[str], rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["machine"] = machine()
    bases = {"10k": freshness.BASE, "100k": freshness.BASE100K}
    for size in sizes:
        root = copy_tree(bases[size], f"repo{size}")
        log(f"MCP search_code at {size}")
        results[f"mcp_{size}"] = measure_mcp(root)
        log(json.dumps(results[f"mcp_{size}"]))
        if size == "10k":
            log("codesearch query: first and second call")
            results["cli_10k"] = measure_cli(root, rounds)
        write_json(RESULTS, results)
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = ["## Agents and auto-start", "",
             f"`python bench/agent_latency.py run` then `report --write`; {m.get('cpu', '')}, "
             f"{m.get('cores')} cores, {m.get('date', '')}, commit {m.get('git_commit', '')}, "
             f"load {m.get('load_average_1m_at_start')} at start. "
             "Trees of the watch-daemon benchmark (Python standard library, 10,387 units; ten copies for 103,870), "
             "shipped model.", "",
             "**MCP `search_code`** through the MCP SDK's client over stdio to `codesearch mcp` (which started the "
             "repository's daemon), warm, default arguments (8 results, 12 code lines each), 30 queries:", "",
             "| units | round trip median | p95 | answer bytes (median / max) | answer tokens (median / max) |",
             "| --- | --- | --- | --- | --- |"]
    for size in ("10k", "100k"):
        r = results.get(f"mcp_{size}")
        if r:
            lines.append(f"| {size} | {r['round_trip_ms']['median']} ms | {r['round_trip_ms']['p95']} ms | "
                         f"{r['answer_bytes']['median']} / {r['answer_bytes']['max']} | "
                         f"{r['answer_tokens']['median']} / {r['answer_tokens']['max']} |")
    r = results.get("mcp_10k")
    if r:
        lines += ["", f"Tokens are counted with the shipped model's tokenizer (a WordPiece vocabulary; agents' own "
                  f"tokenizers differ by tens of percent). With `k: 5, code_lines: 0` an answer is "
                  f"{r['small_answer_bytes']} bytes."]
    c = results.get("cli_10k")
    if c:
        lines += ["", f"**`codesearch query` from a fresh process** (10k units), {c['rounds']} rounds, each: no daemon "
                  "running and `auto_daemon` off (the cold path as before), then no daemon and `auto_daemon` on (the "
                  "first call: answered in-process while it starts a daemon), then once that daemon is idle (the "
                  "second call):", "",
                  "| call | median | p95 |", "| --- | --- | --- |"]
        for label, key in (("cold, `auto_daemon` off", "auto_daemon_off_ms"),
                           ("first call (starts the daemon)", "first_call_ms"),
                           ("second call (daemon warm)", "second_call_ms")):
            lines.append(f"| {label} | {c[key]['median']} ms | {c[key]['p95']} ms |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", default="10k,100k")
    r.add_argument("--rounds", type=int, default=10)
    w = sub.add_parser("report")
    w.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cmd == "run":
        run(args.sizes.split(","), args.rounds)
        return 0
    text = report(json.loads(RESULTS.read_text()))
    if args.write:
        write_doc_section("agents", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
