"""Parse time budget: a generated pathological file is cut off at its budget, skipped, counted and named.

The generator makes the kind of input mutation fuzzing of real JavaScript turns up: a long run of
unclosed conditional and parenthesised expressions (``f(a ? (b, c ? (d, ...``), on which tree-sitter's
error recovery runs at about 0.25 MB/s here (2 s for half a megabyte), some 50 times slower than real
code of that size.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from codesearch.cli import main
from codesearch.config import Settings
from codesearch.indexer import index_repository
from parsers import ParseTimeout, extract

GOOD_JS = """// Sum the numbers of an array.
function sumAll(xs) {
  return xs.reduce((a, b) => a + b, 0);
}
"""
GOOD_PY = '''def parse_cookie(header):
    """Parse a Cookie header into a dict."""
    return dict(p.split("=", 1) for p in header.split("; "))
'''


def pathological_js(n: int, seed: int = 0) -> bytes:
    """A little valid code, then ``n`` unclosed ``a ? (b, `` groups with seeded identifiers, in
    lines of ordinary length (so the file does not count as minified)."""
    rng = random.Random(seed)
    names = ["a", "b", "c", "d"]
    body = "".join(f"{rng.choice(names)} ? ({rng.choice(names)}," + ("\n" if i % 8 == 7 else " ")
                   for i in range(n))
    return (GOOD_JS + "f(" + body + "\n").encode()


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        fn(*args, **kwargs)
        raised = None
    except ParseTimeout as exc:
        raised = exc
    return time.perf_counter() - t0, raised


def test_pathological_parse_is_cut_at_the_budget():
    src = pathological_js(64_000)
    full, raised = _timed(extract, src, "javascript", "gen/table.js")
    assert raised is None
    budget = 0.1
    # Slow enough that a cut at the budget is told apart from a finished parse, on a quiet machine too.
    assert full > 5 * budget, f"the generated file parsed in {full:.2f} s: not pathological enough for this test"
    cut, raised = _timed(extract, src, "javascript", "gen/table.js", timeout=budget)
    assert isinstance(raised, ParseTimeout) and raised.budget == budget
    assert "gen/table.js" in str(raised)
    # Halted within the budget plus slack (progress callbacks come every few ms, further apart under load).
    assert cut < budget + 1.0 and cut < full / 2, (cut, full)
    # The halted parser is reset: the next file on this thread parses from scratch, as a fresh parser would.
    assert [s.name for s in extract(GOOD_JS.encode(), "javascript", "ok.js", timeout=budget)] == ["sumAll"]


@pytest.mark.parametrize("seed", range(5))
def test_fuzzed_real_files_within_budget_parse_as_without(seed):
    """Seeded byte mutations of a real file: under a generous budget the result equals the unbounded one."""
    rng = random.Random(seed)
    data = bytearray((GOOD_JS * 20).encode())
    for _ in range(30):
        i = rng.randrange(len(data))
        data[i:i + 1] = rng.choice([b"", b"{", b"}", b"(", b"[", b",", b"/*", b"`", b"'"])
    src = bytes(data)
    assert extract(src, "javascript", "f.js", timeout=5.0) == extract(src, "javascript", "f.js")


def test_index_skips_counts_and_names_the_slow_file(make_repo, hash_embedder, capsys):
    root = make_repo({
        "src/sum.js": GOOD_JS,
        "src/cookies.py": GOOD_PY,
        "gen/table.js": pathological_js(64_000),
    })
    budget_ms = 100
    settings = Settings(parse_timeout_ms=budget_ms)
    t0 = time.perf_counter()
    report = index_repository(root, settings, embedder=hash_embedder)
    took = time.perf_counter() - t0
    assert report.skipped == {"parse_timeout": 1}
    assert took < budget_ms / 1000 + 3.0, took
    assert report.units == 2  # the rest of the repository is indexed

    assert main(["status", "--repo", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["files"] == {"indexed": 2, "parse_timeout": 1}
    assert info["not_indexed"] == [{"path": "gen/table.js", "status": "parse_timeout",
                                    "error": f"parsing took more than {budget_ms} ms"}]
    assert main(["status", "--repo", str(root)]) == 0
    human = capsys.readouterr().out
    assert "not indexed: gen/table.js: parse timeout" in human
    assert "roles:   implementation 2" in human

    # Unchanged, the file is not parsed again; with the budget lifted it is indexed.
    again = index_repository(root, settings, embedder=hash_embedder)
    assert again.files_changed == 0 and again.skipped == {"parse_timeout": 1}
    (root / "gen/table.js").write_bytes(pathological_js(200))
    fixed = index_repository(root, settings, embedder=hash_embedder)
    assert fixed.skipped == {} and fixed.units == 3  # its own sumAll now counts too


def test_budget_setting_is_validated(tmp_path):
    (tmp_path / ".codesearch.toml").write_text("parse_timeout_ms = -1\n")
    from codesearch.config import load_settings
    from codesearch.errors import UsageError

    with pytest.raises(UsageError, match="parse_timeout_ms"):
        load_settings(tmp_path, environ={})
    assert load_settings(tmp_path, environ={"CODESEARCH_PARSE_TIMEOUT_MS": "0"}).parse_timeout_ms == 0
