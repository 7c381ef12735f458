"""Search quality on real code, CodeSearchNet style: find a function from its docstring summary.

Usage::

    python bench/quality.py [--langs python go ...] [--max-units 3000] [--max-queries 400] [--seed 0]
                            [--model DIR] [--doc-text-format FMT] [--modes semantic lexical hybrid]
                            [--runtime auto|onnx|torch]

For each language:

1. **Select** a fixed, seeded set of directories of that language's corpus (``bench/corpora``, installed
   by ``bench/corpora.py``) whose extracted units total about ``--max-units`` (between 90 % and 100 %).
   Directories are taken whole when they fit, else a seeded run of their files that fits; no directory
   gives more than half of the units.
2. **Copy** them to ``bench/out/quality/<lang>/repo/<source>/...`` and **blank the docstrings** there while
   keeping every line number (see ``docstrip.py``), so a target stays ``path:start_line``. A copy is
   redone when the parameters, ``PREP_VERSION`` or the parsers' code change; files whose content is
   unchanged are not rewritten.
3. **Pick queries**: documented functions and methods whose summary is a usable English sentence (the
   CodeSearchNet filters: at least 3 words, no ``{@inheritDoc}``/tag-only docs, not mostly non-ASCII, no
   constructors or standard methods such as ``__str__``/``toString``, no names containing "test", bodies of
   3+ lines, no duplicate summaries or duplicate code), then a seeded sample of ``--max-queries``. The query
   is the first sentence of the summary; its one relevant document is the unit's ``path:start_line``.
   Each target is checked to still exist in the blanked copy, with its docstring gone.
4. **Index** the copy with ``codesearch index REPO --json`` and run all queries through one
   ``codesearch query --json -k 10`` process per ranking mode (stdin batch), then score MRR@10, Recall@1,
   Recall@10 (and Recall@5, nDCG@10 in the JSON) with ``codesearch.eval``.

Prints one markdown table per mode and writes ``bench/out/quality.json`` (override with ``--out``); the
ranked results per query go to ``bench/out/quality/<lang>/results-<mode>.jsonl``.

**With tests** (``--with-tests``): the same queries (implementation targets only) against a second copy,
``bench/out/quality/<lang>/repo-tests/``, that also holds the tests shipped with the selected code,
docstrings blanked as everywhere. Only sources that ship tests have this variant (see
:data:`TEST_LANGS`): Python (the standard library's ``test/test_<module>.py`` and ``test/test_<module>/``
for each selected top-level module, placed at ``stdlib/test/...``) and Go (golang-src's ``*_test.go``
files of each selected package directory, placed beside the code). The test files are taken in a seeded
order up to as many units as the implementation copy holds (about half of the repository, as in a
typical checkout). That index starts from a copy of the tests-out index, so only the test units are
embedded. Results go to ``results-tests-<mode>.jsonl`` and the report's ``with_tests`` entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    OUT,
    codesearch_cmd,
    last_json_object,
    log,
    machine,
    query_modes,
    run_measured,
    write_json,
)
from corpora import CORPORA, PY_STDLIB, load_manifest  # noqa: E402
from docstrip import (  # noqa: E402
    blank_comment_docs,
    blank_python_docstrings,
    line_count,
)

from codesearch.eval import evaluate, per_query_metrics  # noqa: E402
from parsers import Symbol, extract, language_for_path  # noqa: E402
from parsers.docstrings import clean_summary, first_sentence  # noqa: E402

try:
    from codesearch.walk import SKIP_DIRS
except ImportError:  # the indexer's walk is not importable: use its documented list
    SKIP_DIRS = frozenset({
        ".git", ".hg", ".svn", ".codesearch", "node_modules", "vendor", "bower_components", "__pycache__",
        ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "build", "dist",
        "target", "out", ".gradle", ".idea", ".next", ".nuxt", "coverage", "site-packages", ".eggs",
    })

LANGS = ("python", "go", "java", "javascript", "php", "ruby")
QUALITY_OUT = OUT / "quality"
#: Files above the indexer's default size cap (Settings.max_file_bytes) are not indexed: skip them.
MAX_FILE_BYTES = 1_000_000
#: A selection is complete once it holds this fraction of --max-units.
FILL = 0.9
#: No directory contributes more than this fraction of --max-units (keeps the repo varied).
DIR_SHARE = 0.5
QUERY_KINDS = ("function", "method")
#: Bump when selection, blanking or query picking changes: prepared copies of another version are redone.
PREP_VERSION = 1
#: Bump when the with-tests copy changes.
TESTS_PREP_VERSION = 1
#: Languages whose benchmark sources ship tests (Debian's Java, PHP and Ruby library packages and the npm
#: packages of the JavaScript corpus ship none).
TEST_LANGS = ("python", "go")
#: Standard / extension methods CodeSearchNet removes (besides Python dunders and PHP magic methods).
STANDARD_METHODS = frozenset({
    "toString", "hashCode", "equals", "clone", "finalize", "compareTo", "__construct", "initialize",
    "constructor", "to_s", "to_str", "inspect", "hash", "eql?", "==", "<=>", "String", "Error", "GoString",
    "Len", "Less", "Swap",
})


# ---------------------------------------------------------------------------------------------- summaries

def query_text(summary: str, name: str = "") -> str | None:
    """The query for a summary, or None when CodeSearchNet-style filters reject it.

    Args:
        summary: ``Symbol.summary`` (the docstring up to its first blank line or ``@tag``).
        name: The unit's name: a leading ``name`` (Go's "Size returns ..." convention) is dropped, since
            someone searching for the function would not know it.

    Returns:
        The cleaned first sentence, or None if it has fewer than 3 words, is mostly non-ASCII, is an
        ``{@inheritDoc}``/tag-only/``:call-seq:``/boilerplate doc, or is over 300 characters.
    """
    if not summary.strip() or "inheritdoc" in summary.lower():
        return None
    text = first_sentence(clean_summary(summary))
    if not text or text.startswith(("@", "{@", ":")):
        return None
    first, _, rest = text.partition(" ")
    if name and first.rstrip(",:") == name and rest:
        text = rest[0].upper() + rest[1:]
    low = text.lower()
    if low.startswith(("todo", "fixme", "xxx", "deprecated", "copyright", "see ", "overrides ",
                       "override ", "implements ", "inherited", "-*-", "nolint", "go:")):
        return None
    if sum(1 for c in text if ord(c) > 127) > 0.1 * len(text):
        return None
    if len(re.findall(r"[A-Za-z][A-Za-z0-9_'-]*", text)) < 3 or len(text) > 300:
        return None
    return plain_query(text)


def plain_query(text: str) -> str:
    """Make ``text`` plain free text for ``codesearch query``.

    The query language reads ``"..."`` as a required phrase and ``lang:``/``path:``/``kind:``/``role:``
    words as filters; a benchmark query must be neither, so double quotes go and such words get a space.
    """
    text = text.replace('"', " ")
    text = re.sub(r"\b(lang|path|kind|role):(?=\S)", r"\1: ", text)
    return " ".join(text.split())


def standard_method(sym: Symbol) -> bool:
    """Constructors, dunder/magic methods and the usual standard overrides."""
    name = sym.name
    return (sym.kind == "constructor" or name in STANDARD_METHODS
            or (name.startswith("__") and (sym.language in ("python", "php"))))


# ---------------------------------------------------------------------------------------------- selection

@dataclass
class Candidate:
    """One source file of the corpus."""

    rel: str  # path relative to bench/corpora/<lang>/, i.e. <source>/...
    full: Path


def corpus_files(lang: str) -> list[Candidate]:
    """The indexable files of a language's installed corpus, sorted."""
    entries = [e for e in load_manifest().values() if e.language == lang]
    if not entries:
        raise SystemExit(f"no {lang} corpus: run `python bench/corpora.py install` first")
    base = CORPORA / lang
    out: list[Candidate] = []
    for entry in sorted(entries, key=lambda e: e.source):
        root = CORPORA / entry.path
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for fn in sorted(filenames):
                full = Path(dirpath) / fn
                if language_for_path(fn) != lang or full.is_symlink():
                    continue
                if full.stat().st_size > MAX_FILE_BYTES:
                    continue
                out.append(Candidate(full.relative_to(base).as_posix(), full))
    return out


class Extractor:
    """Extract units from corpus files once, caching per path."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.cache: dict[str, list[Symbol]] = {}
        self.failed: list[str] = []

    def units(self, cand: Candidate) -> list[Symbol]:
        """The units of one file ([] if it cannot be read, decoded or parsed)."""
        if cand.rel not in self.cache:
            data = cand.full.read_bytes()
            syms: list[Symbol] = []
            try:
                data.decode("utf-8")
                if self.lang == "python":
                    compile(data, cand.rel, "exec", flags=0x400, dont_inherit=True)  # ast only
                syms = list(extract(data, self.lang, cand.rel))
            except Exception as exc:  # unreadable, undecodable or unparsable: leave the file out
                self.failed.append(f"{cand.rel}: {type(exc).__name__}")
                syms = []
            self.cache[cand.rel] = syms
        return self.cache[cand.rel]


def select_files(lang: str, files: list[Candidate], ext: Extractor, max_units: int,
                 seed: int) -> list[Candidate]:
    """A seeded selection of directories (or runs of their files) holding about ``max_units`` units.

    Args:
        lang: Language (part of the seed, so languages draw independently).
        files: The corpus files.
        ext: Extractor used to count units.
        max_units: Upper bound; selection stops once FILL * max_units is reached.
        seed: Random seed.

    Returns:
        The selected files, sorted by path.
    """
    groups: dict[str, list[Candidate]] = {}
    for cand in files:
        groups.setdefault(cand.rel.rsplit("/", 1)[0], []).append(cand)
    rng = random.Random(f"{seed}:{lang}")
    order = sorted(groups)
    rng.shuffle(order)
    chosen: list[Candidate] = []
    total = 0
    for d in order:
        if total >= FILL * max_units:
            break
        group = groups[d]
        counts = [len(ext.units(c)) for c in group]
        size = sum(counts)
        if size == 0:
            continue
        cap = int(DIR_SHARE * max_units)
        if size <= cap and total + size <= max_units:
            chosen += group
            total += size
            continue
        budget = min(cap, max_units - total)
        start = rng.randrange(len(group))
        for i in range(len(group)):
            j = (start + i) % len(group)
            if 0 < counts[j] <= budget:
                chosen.append(group[j])
                total += counts[j]
                budget -= counts[j]
    return sorted(chosen, key=lambda c: c.rel)


# ------------------------------------------------------------------------------------------ copy + blank

@dataclass
class Query:
    """One benchmark query and its single relevant unit."""

    qid: str
    query: str
    target: str  # path:start_line in the blanked copy
    qualified_name: str
    kind: str


def prepare(lang: str, max_units: int, max_queries: int, seed: int) -> dict[str, Any]:
    """Select, copy, blank and pick queries for one language (reusing an identical earlier preparation).

    Returns:
        The preparation record (also written to ``bench/out/quality/<lang>/selection.json``).
    """
    work = QUALITY_OUT / lang
    repo = work / "repo"
    sel_path = work / "selection.json"
    params = {"lang": lang, "max_units": max_units, "max_queries": max_queries, "seed": seed,
              "prep_version": PREP_VERSION, "parsers": _parsers_hash()}
    if sel_path.exists() and repo.is_dir():
        try:
            old = json.loads(sel_path.read_text())
        except ValueError:
            old = {}
        old_params = {k: v for k, v in old.get("params", {}).items() if k != "script"}
        old_params.setdefault("prep_version", 1)
        if old_params == params and _tree_hash(repo) == old.get("tree_hash"):
            log(f"{lang}: reusing prepared repo ({old['units']} units, {len(old['queries'])} queries)")
            return old

    t0 = time.perf_counter()
    files = corpus_files(lang)
    ext = Extractor(lang)
    chosen = select_files(lang, files, ext, max_units, seed)
    log(f"{lang}: selected {len(chosen)} of {len(files)} files "
        f"({sum(len(ext.units(c)) for c in chosen)} units)")

    eligible_docs: dict[str, set[int]] = {}
    blank_errors: list[str] = []
    for cand in chosen:
        data = cand.full.read_bytes()
        syms = ext.units(cand)
        if lang == "python":
            new, doc_lines = blank_python_docstrings(data)
            eligible_docs[cand.rel] = {s.start_line for s in syms if s.doc_start_line in doc_lines}
        else:
            new, eligible_docs[cand.rel] = blank_comment_docs(data, syms)
        if line_count(new) != line_count(data):
            blank_errors.append(f"{cand.rel}: line count changed")
            new = data
            eligible_docs[cand.rel] = set()
        if lang == "python":
            try:
                compile(new, cand.rel, "exec", flags=0x400, dont_inherit=True)
            except SyntaxError as exc:
                blank_errors.append(f"{cand.rel}: blanked copy does not parse: {exc}")
                new = data
                eligible_docs[cand.rel] = set()
        _write_if_changed(repo / cand.rel, new)
    _remove_others(repo, {c.rel for c in chosen})

    # Re-extract the blanked copy: targets must exist there, at the same line, without documentation.
    blanked: dict[str, Symbol] = {}
    units_in_copy = 0
    for cand in chosen:
        data = (repo / cand.rel).read_bytes()
        try:
            syms = list(extract(data, lang, cand.rel))
        except Exception as exc:
            blank_errors.append(f"{cand.rel}: blanked copy fails extraction: {exc}")
            continue
        units_in_copy += len(syms)
        for s in syms:
            blanked[f"{s.path}:{s.start_line}"] = s

    candidates: list[tuple[Symbol, str, Symbol]] = []
    for cand in chosen:
        for s in ext.units(cand):
            if s.kind not in QUERY_KINDS or standard_method(s) or "test" in s.name.lower():
                continue
            if s.end_line - s.start_line + 1 < 3 or s.start_line not in eligible_docs.get(cand.rel, ()):
                continue
            text = query_text(s.summary, s.name)
            if text is None:
                continue
            after = blanked.get(f"{s.path}:{s.start_line}")
            if after is None or after.qualified_name != s.qualified_name or after.docstring.strip():
                continue
            candidates.append((s, text, after))
    # Duplicates: a summary or a (blanked) body seen twice is ambiguous, so both copies go.
    summary_counts = Counter(_norm(text) for _, text, _ in candidates)
    code_counts = Counter(_norm(after.code) for _, _, after in candidates)
    unique = [(s, text) for s, text, after in candidates
              if summary_counts[_norm(text)] == 1 and code_counts[_norm(after.code)] == 1]
    unique.sort(key=lambda st: (st[0].path, st[0].start_line))
    rng = random.Random(f"{seed}:{lang}:queries")
    picked = rng.sample(unique, min(max_queries, len(unique)))
    picked.sort(key=lambda st: (st[0].path, st[0].start_line))
    queries = [Query(f"{lang}-{i:04d}", text, f"{s.path}:{s.start_line}", s.qualified_name, s.kind)
               for i, (s, text) in enumerate(picked)]

    record = {
        "params": params,
        "language": lang,
        "corpus_files": len(files),
        "files": [c.rel for c in chosen],
        "units": units_in_copy,
        "units_documented": sum(1 for c in chosen for s in ext.units(c) if s.docstring.strip()),
        "eligible_queries": len(unique),
        "rejected_duplicates": len(candidates) - len(unique),
        "queries": [asdict(q) for q in queries],
        "extract_failures": ext.failed,
        "blank_errors": blank_errors,
        "tree_hash": _tree_hash(repo),
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(sel_path, record)
    (work / "queries.jsonl").write_text("".join(json.dumps(asdict(q)) + "\n" for q in queries))
    log(f"{lang}: copy has {units_in_copy} units; {len(unique)} usable queries, {len(queries)} picked; "
        f"{len(blank_errors)} blanking problems, {len(ext.failed)} unparsable files")
    return record


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` unless the file already holds it (an unchanged copy keeps its mtime, so indexes
    built on it, ours or anyone's, stay valid)."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _remove_others(repo: Path, keep: set[str]) -> None:
    """Delete files of ``repo`` not in ``keep`` (relative paths), then empty directories."""
    for dirpath, _, filenames in os.walk(repo, topdown=False):
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.relative_to(repo).as_posix() not in keep:
                p.unlink()
        if dirpath != str(repo) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _parsers_hash() -> str:
    """A hash of the parsers package's code and queries: units (and so targets) depend on it."""
    import parsers

    root = Path(parsers.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted([*root.glob("*.py"), *root.glob("queries/*.scm")]):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _tree_hash(repo: Path) -> str:
    """A hash over the relative paths, sizes and modification times of the files of ``repo``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            st = p.stat()
            h.update(f"{p.relative_to(repo)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ with tests

def shipped_tests(lang: str, rec: dict[str, Any]) -> list[tuple[str, Path]]:
    """The test files that ship with a preparation's selected code: (path in the copy, origin), sorted."""
    entries = {e.source: e for e in load_manifest().values() if e.language == lang}
    out: dict[str, Path] = {}
    if lang == "go":
        for d in sorted({f.rsplit("/", 1)[0] for f in rec["files"]}):
            source, _, pkg = d.partition("/")
            origin = Path(entries[source].origin) / pkg
            for p in sorted(origin.glob("*_test.go")):
                if p.is_file() and not p.is_symlink():
                    out[f"{d}/{p.name}"] = p
    elif lang == "python":
        tests = PY_STDLIB / "test"
        for top in sorted({f.split("/")[1].removesuffix(".py") for f in rec["files"]}):
            one = tests / f"test_{top}.py"
            if one.is_file():
                out[f"stdlib/test/{one.name}"] = one
            pkg = tests / f"test_{top}"
            if pkg.is_dir():
                for p in sorted(pkg.rglob("*.py")):
                    out[f"stdlib/test/{p.relative_to(tests).as_posix()}"] = p
    else:
        raise ValueError(f"no shipped tests for {lang}")
    return sorted(out.items())


def prepare_with_tests(lang: str, rec: dict[str, Any], seed: int) -> dict[str, Any]:
    """Copy the prepared repo plus its shipped tests (blanked, capped at the repo's unit count) to ``repo-tests``.

    Returns:
        The record (also written to ``bench/out/quality/<lang>/with-tests.json``).
    """
    work = QUALITY_OUT / lang
    repo, dest = work / "repo", work / "repo-tests"
    path = work / "with-tests.json"
    params = {"selection": rec["tree_hash"], "seed": seed, "version": TESTS_PREP_VERSION,
              "parsers": _parsers_hash()}
    if path.exists() and dest.is_dir():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        if old.get("params") == params and _tree_hash(dest) == old.get("tree_hash"):
            log(f"{lang}: reusing the with-tests copy ({old['test_units']} test units)")
            return old
    keep = set(rec["files"])
    for rel in rec["files"]:
        _write_if_changed(dest / rel, (repo / rel).read_bytes())
    candidates = shipped_tests(lang, rec)
    random.Random(f"{seed}:{lang}:tests").shuffle(candidates)
    budget = rec["units"]
    taken: list[str] = []
    roles: Counter[str] = Counter()
    units = 0
    for rel, origin in candidates:
        data = origin.read_bytes()
        try:
            data.decode("utf-8")
            syms = list(extract(data, lang, rel))
            if lang == "python":
                compile(data, rel, "exec", flags=0x400, dont_inherit=True)
                new, _ = blank_python_docstrings(data)
            else:
                new, _ = blank_comment_docs(data, syms)
        except Exception:  # an undecodable or unparsable test file (some are there on purpose)
            continue
        if not syms or line_count(new) != line_count(data) or units + len(syms) > budget:
            continue
        _write_if_changed(dest / rel, new)
        keep.add(rel)
        taken.append(rel)
        units += len(syms)
        roles.update(s.role for s in syms)
    _remove_others(dest, keep)
    record = {"params": params, "language": lang, "shipped_test_files": len(candidates),
              "test_files": sorted(taken), "test_units": units, "test_unit_roles": dict(roles),
              "units": rec["units"] + units, "tree_hash": _tree_hash(dest)}
    write_json(path, record)
    log(f"{lang}: with tests: {len(taken)} of {len(candidates)} shipped test files, {units} units "
        f"({dict(roles)}) beside {rec['units']}")
    return record


def seed_index(src: Path, dest: Path) -> None:
    """Start ``dest`` as a copy of the index in ``src`` (SQLite backup), so cached vectors are reused."""
    import sqlite3

    from codesearch.index import DB_NAME

    if (dest / DB_NAME).exists() or not (src / DB_NAME).exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(src / DB_NAME) as a, sqlite3.connect(dest / DB_NAME) as b:
        a.backup(b)


# ------------------------------------------------------------------------------------------ index + query

def index_model(index_dir: Path) -> dict[str, str]:
    """The encoder an index was built with (model id and weights SHA-256, from its meta table)."""
    import sqlite3

    from codesearch.index import DB_NAME

    conn = sqlite3.connect(f"file:{index_dir / DB_NAME}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('model_id', 'model_sha256')"))
    finally:
        conn.close()
    return {"model_id": meta.get("model_id", "?"), "sha256": meta.get("model_sha256", "?")}


def model_ids(report: dict[str, Any]) -> list[str]:
    """The encoders a report's indexes were built with (``index_model`` per language), sorted."""
    return sorted({r["model"]["model_id"] for r in report["results"].values() if "model" in r})


def index_dir_for(lang: str, doc_text_format: str | None, model: str | None, runtime: str | None = None) -> Path:
    """Where the index of a language's copy lives, one per text format, model and runtime."""
    tag = doc_text_format or "default"
    if model:
        tag += "-" + hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:8]
    if runtime:
        tag += "-" + runtime
    return QUALITY_OUT / lang / f"index-{tag}"


def build_index(repo: Path, index_dir: Path, model: str | None, env: dict[str, str],
                reuse: bool) -> dict[str, Any]:
    """Run ``codesearch index`` on the copy (from scratch unless ``reuse``) and return its summary."""
    if index_dir.exists() and not reuse:
        shutil.rmtree(index_dir)
    cmd = [*codesearch_cmd(), "index", str(repo), "--index-dir", str(index_dir), "--json"]
    if model:
        cmd += ["--model", model]
    res = run_measured(cmd, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {res.returncode}")
    summary = last_json_object(res.stdout) or {}
    summary["wall_seconds"] = round(res.seconds, 2)
    summary["max_rss_mb"] = round(res.max_rss_mb, 1)
    return summary


def run_queries(repo: Path, index_dir: Path, queries: list[dict[str, Any]], mode: str | None,
                env: dict[str, str], model: str | None = None,
                k: int = 10) -> tuple[dict[str, list[str]], list[dict[str, Any]], float]:
    """All queries through one ``codesearch query --json`` process (stdin batch).

    Returns:
        ``{qid: [path:start_line, ...]}``, the raw result lines, and the wall time in seconds.
    """
    cmd = [*codesearch_cmd(), "query", "--json", "-k", str(k), "--repo", str(repo),
           "--index-dir", str(index_dir)]
    if mode:
        cmd += ["--mode", mode]
    if model:
        cmd += ["--model", model]
    stdin = "".join(q["query"] + "\n" for q in queries)
    res = run_measured(cmd, stdin_text=stdin, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {res.returncode}")
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.strip().startswith("{")]
    if len(lines) != len(queries):
        raise RuntimeError(f"expected {len(queries)} result lines, got {len(lines)}")
    ranked: dict[str, list[str]] = {}
    for q, line in zip(queries, lines, strict=True):
        if line.get("query") not in (None, q["query"]):
            raise RuntimeError(f"result order mismatch: {line.get('query')!r} != {q['query']!r}")
        ranked[q["qid"]] = [f"{r['path']}:{r['start_line']}" for r in line.get("results", [])]
    return ranked, lines, res.seconds


def score(ranked: dict[str, list[str]], queries: list[dict[str, Any]]) -> dict[str, float]:
    """MRR@10, Recall@1/5/10 and nDCG@10 with ``codesearch.eval``."""
    relevant = {q["qid"]: {q["target"]} for q in queries}
    m = evaluate(ranked, relevant, ks=(1, 5, 10))
    return {"mrr@10": m["mrr@10"], "recall@1": m["recall@1"], "recall@5": m["recall@5"],
            "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"]}


# ------------------------------------------------------------------------------------------------- report

def run_modes(repo: Path, index_dir: Path, queries: list[dict[str, Any]], modes: list[str | None],
              env: dict[str, str], model: str | None,
              per_query: Path) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each mode's metrics and raw result lines over ``queries``; each query's rank and results are written to
    ``per_query`` (a path whose name has ``{name}`` in it, filled with the mode's name)."""
    out = {}
    for mode in modes:
        name = mode or "default"
        ranked, lines, secs = run_queries(repo, index_dir, queries, mode, env, model)
        metrics = score(ranked, queries)
        metrics["queries"] = len(queries)
        metrics["query_seconds"] = round(secs, 2)
        per_q = per_query_metrics(ranked, {q["qid"]: {q["target"]} for q in queries}, k=10)
        with per_query.with_name(per_query.name.format(name=name)).open("w") as fh:
            for q, line in zip(queries, lines, strict=True):
                fh.write(json.dumps({**q, "rank": int(per_q[q["qid"]]["rank"]), "results": line.get("results", [])})
                         + "\n")
        out[name] = (metrics, lines)
    return out


def quality_table(results: dict[str, Any], mode: str) -> list[str]:
    """One mode's markdown table: languages as rows (MRR@10, R@1, R@5, R@10, nDCG@10) plus the macro average."""
    lines = ["| language | units indexed | queries | MRR@10 | R@1 | R@5 | R@10 | nDCG@10 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    for lang, res in results.items():
        m = res.get("modes", {}).get(mode)
        if not m:
            continue
        rows.append(m)
        lines.append(f"| {lang} | {res.get('units_indexed', '?')} | {m['queries']} | {m['mrr@10']:.3f} "
                     f"| {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['ndcg@10']:.3f} |")
    if rows:
        keys = ("mrr@10", "recall@1", "recall@5", "recall@10", "ndcg@10")
        avg = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
        lines.append(f"| **macro average** | | {sum(r['queries'] for r in rows)} | "
                     + " | ".join(f"**{avg[k]:.3f}**" for k in keys) + " |")
    return lines


def tests_table(results: dict[str, Any], modes: list[str]) -> list[str]:
    """MRR@10 with the shipped tests out of and in the indexed copy, per language and mode."""
    head = "| language | units (tests out / in) | queries | " + " | ".join(
        f"{m} out | {m} in | {m} in - out" for m in modes) + " |"
    lines = [head, "|---|---:|---:|" + "---:|---:|---:|" * len(modes)]
    rows = [(lang, r) for lang, r in results.items() if r.get("with_tests", {}).get("modes")]
    for lang, r in rows:
        cells = []
        for m in modes:
            out, inn = r["modes"][m]["mrr@10"], r["with_tests"]["modes"][m]["mrr@10"]
            cells.append(f"{out:.3f} | {inn:.3f} | {inn - out:+.3f}")
        lines.append(f"| {lang} | {r.get('units_indexed', '?')} / {r['with_tests'].get('units_indexed', '?')} "
                     f"| {r['modes'][modes[0]]['queries']} | " + " | ".join(cells) + " |")
    if len(rows) > 1:
        cells = []
        for m in modes:
            out = sum(r["modes"][m]["mrr@10"] for _, r in rows) / len(rows)
            inn = sum(r["with_tests"]["modes"][m]["mrr@10"] for _, r in rows) / len(rows)
            cells.append(f"**{out:.3f}** | **{inn:.3f}** | **{inn - out:+.3f}**")
        lines.append("| **macro average** | | | " + " | ".join(cells) + " |")
    return lines


def markdown_tables(results: dict[str, Any], modes: list[str]) -> str:
    """One markdown table per mode (what bench/report.py writes into docs/benchmarks.md)."""
    out: list[str] = []
    for mode in modes:
        out += [f"**{mode}**", "", *quality_table(results, mode), ""]
    if any(r.get("with_tests") for r in results.values()):
        out += ["**with tests** (MRR@10)", "", *tests_table(results, modes), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--langs", nargs="+", default=list(LANGS), choices=LANGS)
    ap.add_argument("--max-units", type=int, default=3000, help="units per language repo (default 3000)")
    ap.add_argument("--max-queries", type=int, default=400, help="queries per language (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="model directory, passed to `codesearch index --model`")
    ap.add_argument("--doc-text-format", help="sets CODESEARCH_DOC_TEXT_FORMAT for index and query")
    ap.add_argument("--modes", nargs="+", help="ranking modes (default: all that `codesearch query` offers)")
    ap.add_argument("--runtime", choices=("auto", "onnx", "torch"),
                    help="sets CODESEARCH_RUNTIME (the encoder runtime) for index and query")
    ap.add_argument("--reuse-index", action="store_true",
                    help="keep an existing index of the copy (incremental update) instead of rebuilding")
    ap.add_argument("--prepare-only", action="store_true", help="select, copy, blank and pick queries only")
    ap.add_argument("--with-tests", action="store_true",
                    help=f"also run the queries on a copy holding the shipped tests ({', '.join(TEST_LANGS)})")
    ap.add_argument("--role-prior", type=float, help="sets CODESEARCH_ROLE_PRIOR for the queries")
    ap.add_argument("--out", type=Path, default=OUT / "quality.json")
    args = ap.parse_args(argv)

    # No background daemons: each query batch runs in its own process with this run's settings.
    env: dict[str, str] = {"CODESEARCH_AUTO_DAEMON": "0"}
    if args.role_prior is not None:
        env["CODESEARCH_ROLE_PRIOR"] = str(args.role_prior)
    if args.doc_text_format:
        env["CODESEARCH_DOC_TEXT_FORMAT"] = args.doc_text_format
    if args.runtime:
        env["CODESEARCH_RUNTIME"] = args.runtime
    modes: list[str | None]
    if args.prepare_only:
        modes = []
    else:
        offered = query_modes()
        if args.modes:
            bad = [m for m in args.modes if offered and m not in offered]
            if bad:
                raise SystemExit(f"`codesearch query` does not offer mode(s) {bad} (offers {offered})")
            modes = list(args.modes)
        else:
            modes = list(offered) if offered else [None]
        log(f"modes: {[m or 'default' for m in modes]}")

    t_start = time.perf_counter()
    host = machine()
    results: dict[str, Any] = {}
    for lang in args.langs:
        rec = prepare(lang, args.max_units, args.max_queries, args.seed)
        res: dict[str, Any] = {"units_in_copy": rec["units"], "files": len(rec["files"]),
                               "eligible_queries": rec["eligible_queries"], "modes": {}}
        results[lang] = res
        if args.prepare_only:
            continue
        repo = QUALITY_OUT / lang / "repo"
        index_dir = index_dir_for(lang, args.doc_text_format, args.model, args.runtime)
        log(f"{lang}: indexing {rec['units']} units -> {index_dir}")
        summary = build_index(repo, index_dir, args.model, env, args.reuse_index)
        res["index"] = summary
        res["model"] = index_model(index_dir)
        res["units_indexed"] = summary.get("units", rec["units"])
        if res["units_indexed"] != rec["units"]:
            log(f"{lang}: WARNING: the index holds {res['units_indexed']} units, the prepared copy "
                f"{rec['units']} (walk or parser differences)")
        log(f"{lang}: indexed in {summary['wall_seconds']:.0f} s: {summary}")
        suffix = f"-{args.runtime}" if args.runtime else ""
        for name, (metrics, _) in run_modes(repo, index_dir, rec["queries"], modes, env, args.model,
                                            QUALITY_OUT / lang / f"results-{{name}}{suffix}.jsonl").items():
            res["modes"][name] = metrics
            log(f"{lang} [{name}]: MRR@10 {metrics['mrr@10']:.3f}  R@1 {metrics['recall@1']:.3f}  "
                f"R@10 {metrics['recall@10']:.3f}  ({metrics['queries']} queries, {metrics['query_seconds']:.1f} s)")
        if args.with_tests and lang in TEST_LANGS:
            trec = prepare_with_tests(lang, rec, args.seed)
            trepo = QUALITY_OUT / lang / "repo-tests"
            tdir = index_dir.with_name(index_dir.name + "-tests")
            seed_index(index_dir, tdir)
            log(f"{lang}: indexing the copy with tests ({trec['units']} units) -> {tdir}")
            tsummary = build_index(trepo, tdir, args.model, env, True)
            tres: dict[str, Any] = {"test_files": len(trec["test_files"]), "test_units": trec["test_units"],
                                    "test_unit_roles": trec["test_unit_roles"], "index": tsummary,
                                    "units_indexed": tsummary.get("units", trec["units"]), "modes": {}}
            res["with_tests"] = tres
            for name, (metrics, lines) in run_modes(trepo, tdir, rec["queries"], modes, env, args.model,
                                                    QUALITY_OUT / lang / "results-tests-{name}.jsonl").items():
                metrics["test_hits_at_1"] = sum(1 for line in lines if line.get("results")
                                                and line["results"][0].get("role", "implementation")
                                                != "implementation")
                tres["modes"][name] = metrics
                log(f"{lang} with tests [{name}]: MRR@10 {metrics['mrr@10']:.3f} "
                    f"(tests out {res['modes'][name]['mrr@10']:.3f}); a test first for "
                    f"{metrics['test_hits_at_1']} queries")

    mode_names = [m or "default" for m in modes]
    report = {
        "benchmark": "quality",
        "command": "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": host,
        "params": {"langs": args.langs, "max_units": args.max_units, "max_queries": args.max_queries,
                   "seed": args.seed, "model": args.model, "doc_text_format": args.doc_text_format,
                   "runtime": args.runtime, "modes": mode_names, "with_tests": args.with_tests,
                   "role_prior": args.role_prior},
        "seconds": round(time.perf_counter() - t_start, 1),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "results": results,
    }
    if not args.prepare_only:
        for name in mode_names:
            rows = [r["modes"][name] for r in results.values() if name in r["modes"]]
            if rows:
                report.setdefault("macro", {})[name] = {
                    key: sum(r[key] for r in rows) / len(rows)
                    for key in ("mrr@10", "recall@1", "recall@5", "recall@10", "ndcg@10")}
            rows = [r["with_tests"]["modes"][name] for r in results.values()
                    if name in r.get("with_tests", {}).get("modes", {})]
            if rows:
                report.setdefault("macro_with_tests", {})[name] = {
                    key: sum(r[key] for r in rows) / len(rows)
                    for key in ("mrr@10", "recall@1", "recall@5", "recall@10", "ndcg@10")}
        write_json(args.out, report)
        print(markdown_tables(results, mode_names))
    else:
        print("| language | corpus files | files selected | units in copy | usable queries | queries |")
        print("|---|---:|---:|---:|---:|---:|")
        for lang in args.langs:
            rec = json.loads((QUALITY_OUT / lang / "selection.json").read_text())
            print(f"| {lang} | {rec['corpus_files']} | {len(rec['files'])} | {rec['units']} "
                  f"| {rec['eligible_queries']} | {len(rec['queries'])} |")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
