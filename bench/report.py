"""Render benchmark results into docs/benchmarks.md.

Usage::

    python bench/report.py [--quality bench/out/quality.json] [--quality-extra NAME=PATH ...]
                           [--speed bench/out/speed.json] [--docs docs/benchmarks.md]

Each benchmark owns one section of the document, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
markers (``corpora``, ``quality``, ``speed``); a section is replaced in place, or appended when its markers
are missing. Sections written by other scripts (other marker names) and text outside markers are kept.
Tables come only from the JSON files the benchmark scripts wrote: nothing here is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import DOCS, OUT, replace_section  # noqa: E402
from corpora import CORPORA, load_manifest  # noqa: E402
from quality import model_ids, quality_table  # noqa: E402

PY = ".venv/bin/python"


def _machine_line(m: dict[str, Any], load_end: float | None = None) -> str:
    load = f"1-minute load average {m.get('load_average_1m_at_start', '?')} at the start"
    if load_end is not None:
        load += f" and {load_end} at the end"
    return (f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB, "
            f"Python {m.get('python', '?')}, no GPU; {load} (the benchmark's own indexing keeps two cores "
            f"busy: a load well above 2 means other jobs shared them). Date {m.get('date', '?')}, "
            f"commit `{m.get('git_commit', '?')}`.")


def corpora_section() -> str:
    """The corpora table: packages and versions per language, files, units and documented units."""
    entries = load_manifest()
    stats_path = CORPORA / "stats.json"
    stats: dict[str, dict[str, int]] = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    langs: dict[str, dict[str, Any]] = {}
    for key in sorted(entries):
        e = entries[key]
        row = langs.setdefault(e.language, {"packages": [], "files": 0, "units": 0, "documented": 0,
                                            "documented_functions": 0, "mb": 0.0})
        row["packages"].append(f"{e.package} {e.version}" if e.registry != "python"
                               else f"CPython {e.version} standard library")
        row["files"] += e.files
        row["mb"] += e.bytes / 1e6
        for k in ("units", "documented", "documented_functions"):
            row[k] += stats.get(key, {}).get(k, 0)
    lines = [
        "## Corpora",
        "",
        "Real, documented library code for the six languages, installed from the registries this machine "
        "reaches (the interpreter's standard library, Debian apt, npm) and copied, filtered to source files "
        "without tests, test data or minified bundles, to `bench/corpora/<language>/<source>/` "
        "(gitignored). `bench/corpora/manifest.json` records package, version, origin and file count "
        "of each source.",
        "",
        "```sh",
        f"{PY} bench/corpora.py install   # apt-get/npm as needed, then copies; quick when up to date",
        f"{PY} bench/corpora.py list      # sources, versions, file counts",
        f"{PY} bench/corpora.py stats     # units per language (extracts everything with parsers)",
        "```",
        "",
        "| language | files | MB | units | documented units | documented functions/methods | packages |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for lang, r in sorted(langs.items()):
        lines.append(f"| {lang} | {r['files']} | {r['mb']:.1f} | {r['units'] or '?'} | {r['documented'] or '?'} "
                     f"| {r['documented_functions'] or '?'} | {'; '.join(r['packages'])} |")
    return "\n".join(lines)


def _model_label(report: dict[str, Any]) -> str:
    """The encoder the indexes were built with (recorded per language), else the ``--model`` argument."""
    ids = model_ids(report)
    named = f"`{'`, `'.join(ids)}`" if ids else "the default model"
    arg = report["params"].get("model")
    return f"{named} (`--model {arg}`)" if arg else named


def quality_section(report: dict[str, Any], extras: dict[str, dict[str, Any]]) -> str:
    """The quality section: method, command, one table per mode, optional comparison runs."""
    p = report["params"]
    results = report["results"]
    cmd = report.get("command", "python bench/quality.py").strip().replace("python bench/", f"{PY} bench/", 1)
    lines = [
        "## Search quality (CodeSearchNet-style)",
        "",
        "Can a natural-language description find the function it describes, when the index never saw "
        "that description? For each language `bench/quality.py`:",
        "",
        f"1. selects a fixed, seeded (`--seed {p['seed']}`) set of directories of the corpus holding about "
        f"{p['max_units']} units (`--max-units`; 90-100 %, no directory more than half);",
        "2. copies them to `bench/out/quality/<lang>/repo` and **blanks every docstring and doc comment** there "
        "while keeping line numbers (Python: the literal becomes `\"\"` plus the same number of newlines; "
        "others: the doc comment lines become empty lines). Copies are checked: same line count, Python still "
        "parses, every target still extracts at the same line with no docstring;",
        "3. takes as queries documented functions and methods whose summary passes the CodeSearchNet filters "
        "(3+ words; no `{@inheritDoc}`, tag-only or `:call-seq:` docs; not mostly non-ASCII; no constructors, "
        "dunder/magic or standard methods such as `toString`; no names containing \"test\"; bodies of 3+ "
        "lines; summaries and bodies that occur twice are dropped), "
        f"up to {p['max_queries']} per language, seeded. The query is the first sentence of the summary, "
        "cleaned of markup, with a leading function name dropped (Go's \"Size returns ...\" style). Its one "
        "relevant result is the unit's `path:start_line`;",
        "4. indexes the copy with `codesearch index --json` and sends all queries through one "
        "`codesearch query --json -k 10` process per ranking mode (stdin batch). `lexical` is the BM25 "
        "(SQLite FTS5) reference over the same units; `hybrid` is the default.",
        "",
        "Because every doc comment is blanked, the `header_doc_code` and `header_code` text formats embed "
        "the same text here: the benchmark compares code-side formats and models, not the value of "
        "documentation (which is the query). To compare a text format or a model, run e.g. "
        "`bench/quality.py --doc-text-format code --out bench/out/quality-code.json` (or `--model DIR`) and "
        "add `--quality-extra code=bench/out/quality-code.json` to `bench/report.py`. Prepared copies, "
        "queries and per-query ranks stay in `bench/out/quality/<lang>/` (`selection.json`, "
        "`queries.jsonl`, `results-<mode>.jsonl`).",
        "",
        "MRR@10 = mean of 1/rank of the target (0 beyond rank 10); R@k = fraction of queries whose target is "
        "in the top k; nDCG@10 with one relevant result = mean of 1/log2(rank+1). Definitions in "
        "`codesearch/eval.py`.",
        "",
        "```sh",
        f"{PY} bench/corpora.py install",
        cmd,
        f"{PY} bench/report.py            # rewrites the tables below from bench/out/*.json",
        "```",
        "",
        _machine_line(report["machine"], report.get("load_average_1m_at_end"))
        + f" Text format: `{p.get('doc_text_format') or 'default'}`; model: "
        + f"{_model_label(report)}; whole run {report['seconds'] / 60:.0f} min.",
        "",
    ]
    macro = report.get("macro", {})
    if macro:
        lines += ["Macro MRR@10 / R@10 over the languages: " + "; ".join(
            f"{mode} {m['mrr@10']:.3f} / {m['recall@10']:.3f}" for mode, m in macro.items()) + ".", ""]
    for mode in p["modes"]:
        lines.append(f"### {mode}" + (" (BM25 reference)" if mode == "lexical" else ""))
        lines.append("")
        lines += quality_table(results, mode)
        lines.append("")
    idx = [(lang, r["index"]) for lang, r in results.items() if r.get("index")]
    if idx:
        lines += ["Index builds during this run (shared machine):", "",
                  "| language | files | units | tokens embedded | index wall (s) | units/s | peak RSS (MB) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for lang, s in idx:
            lines.append(f"| {lang} | {s.get('files', '?')} | {s.get('units', '?')} | {s.get('tokens', '?')} "
                         f"| {s.get('wall_seconds', 0):.0f} | {s.get('units_per_second', 0):.1f} "
                         f"| {s.get('max_rss_mb', 0):.0f} |")
        lines.append("")
    for name, extra in extras.items():
        ep = extra["params"]
        lines += [f"### Comparison: {name}", "",
                  f"`{extra.get('command', '')}`: text format `{ep.get('doc_text_format') or 'default'}`, "
                  f"model {ep.get('model') or 'packaged'}; commit `{extra['machine'].get('git_commit', '?')}`.",
                  ""]
        for mode in ep["modes"]:
            lines.append(f"**{mode}**")
            lines.append("")
            lines += quality_table(extra["results"], mode)
            lines.append("")
    return "\n".join(lines)


def speed_section(report: dict[str, Any]) -> str:
    """The speed section: command and the two tables."""
    results = report["results"]
    cmd = report.get("command", "python bench/speed.py").strip().replace("python bench/", f"{PY} bench/", 1)
    lines = [
        "## Speed, memory and index size",
        "",
        "`bench/speed.py` copies the quality benchmark's blanked repositories (so run `bench/quality.py "
        "--prepare-only` first) and measures: a full `codesearch index --json` from an empty index "
        "directory as a subprocess (wall time, CPU time, units/s = units / wall time, tokens/s = tokens "
        "embedded / embedding time, peak RSS from `wait4`), the same command again with nothing changed, "
        "the index directory's size, the cold CLI query (`codesearch query TEXT --json` as a subprocess, "
        "imports and model load included, median of 5 queries), and warm in-process latency of "
        "`Searcher.search(text, k=10, mode=...)` (median and p95 over the quality queries, after a warm-up).",
        "",
        "```sh",
        f"{PY} bench/quality.py --prepare-only",
        cmd,
        f"{PY} bench/report.py",
        "```",
        "",
        _machine_line(report["machine"], report.get("load_average_1m_at_end")),
        "",
        "| repo | files | units | full index wall (s) | CPU (s) | units/s | tokens/s (embedding) "
        "| peak RSS (MB) | no-change re-index (s) | index size (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        tps = r.get("tokens_per_second_embedding")
        lines.append(
            f"| {name} | {r.get('files')} | {r['units']} | {r['full_index_seconds']:.0f} "
            f"| {r.get('full_index_cpu_seconds', 0):.0f} | {r['units_per_second']:.1f} "
            f"| {f'{tps:.0f}' if tps else 'n/a'} | {r['index_peak_rss_mb']:.0f} "
            f"| {r['noop_reindex_seconds']:.2f} | {r['index_bytes'] / 1e6:.1f} |")
    lines.append("")
    modes = [m for m in next(iter(results.values()))["warm"] if not m.startswith("_")] if results else []
    lines += ["| repo | cold CLI query (s) | CLI query peak RSS (MB) | "
              + " | ".join(f"warm {m} median / p95 (ms)" for m in modes) + " |",
              "|---|---:|---:|" + "---:|" * len(modes)]
    for name, r in results.items():
        warm = " | ".join(f"{r['warm'][m]['median_ms']:.1f} / {r['warm'][m]['p95_ms']:.1f}" for m in modes)
        lines.append(f"| {name} | {r['cold_query_seconds_median']:.2f} | {r['query_peak_rss_mb']:.0f} | {warm} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=Path, default=OUT / "quality.json")
    ap.add_argument("--quality-extra", nargs="*", default=[], metavar="NAME=PATH",
                    help="further quality runs to show as comparisons (e.g. another text format)")
    ap.add_argument("--speed", type=Path, default=OUT / "speed.json")
    ap.add_argument("--docs", type=Path, default=DOCS)
    args = ap.parse_args(argv)

    text = args.docs.read_text() if args.docs.exists() else "# Benchmarks\n"
    if load_manifest():
        text = replace_section(text, "corpora", corpora_section())
    if args.quality.exists():
        extras = {}
        for item in args.quality_extra:
            name, _, path = item.partition("=")
            extras[name] = json.loads(Path(path).read_text())
        text = replace_section(text, "quality", quality_section(json.loads(args.quality.read_text()), extras))
    if args.speed.exists():
        text = replace_section(text, "speed", speed_section(json.loads(args.speed.read_text())))
    args.docs.write_text(text)
    print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
