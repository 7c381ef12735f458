"""The CLI end to end with the real packaged model: index, query (text, JSON, stdin batch), status, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codesearch.cli import main
from codesearch.embed import SHIPPED_MODEL

REPO = {
    "http/cookies.py": '''
def parse_cookie_header(header):
    """Parse an HTTP Cookie header into a dictionary of names and values."""
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        out[name] = value
    return out
''',
    "util/retry.py": '''
import time


def call_with_backoff(fn, attempts=5, base=0.1):
    """Call fn until it succeeds, waiting exponentially longer after each failure."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception:
            time.sleep(base * 2 ** attempt)
    raise RuntimeError("gave up")
''',
    "files/Checksum.java": '''
public class Checksum {
    /** Compute the MD5 digest of a file and return it as hex. */
    public static String md5OfFile(String path) throws Exception {
        java.security.MessageDigest md = java.security.MessageDigest.getInstance("MD5");
        byte[] data = java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(path));
        return java.util.HexFormat.of().formatHex(md.digest(data));
    }
}
''',
    "text/slug.go": '''package text

import "strings"

// Slugify lowercases a title and joins its words with dashes for use in URLs.
func Slugify(title string) string {
	return strings.Join(strings.Fields(strings.ToLower(title)), "-")
}
''',
}


@pytest.fixture(scope="module")
def indexed_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "repo"
    for rel, text in REPO.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    assert main(["index", str(root)]) == 0
    return root


def run(capsys, *args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_summary_json(indexed_repo, capsys):
    code, out, _ = run(capsys, "index", str(indexed_repo), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["files"] == 4 and data["units"] == 5 and data["embedded"] == 0 and data["files_changed"] == 0


@pytest.mark.parametrize("query,expected", [
    ("read the cookies sent by the browser", "parse_cookie_header"),
    ("retry a function with exponential delay", "call_with_backoff"),
    ("hash a file with md5", "Checksum.md5OfFile"),
    ("make a url friendly version of a title", "Slugify"),
])
def test_query_finds_intended_function(indexed_repo, capsys, query, expected):
    code, out, _ = run(capsys, "query", query, "--repo", str(indexed_repo), "--json", "-k", "3")
    assert code == 0
    hits = [json.loads(line) for line in out.splitlines()]
    assert hits[0]["qualified_name"] == expected
    assert set(hits[0]) >= {"path", "start_line", "end_line", "name", "qualified_name", "kind", "language", "score"}


def test_human_output_is_path_line(indexed_repo, capsys, monkeypatch):
    monkeypatch.chdir(indexed_repo)
    code, out, _ = run(capsys, "query", "parse cookie header", "-k", "1")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("http/cookies.py:2-8  parse_cookie_header  ")


def test_filters(indexed_repo, capsys):
    code, out, _ = run(capsys, "query", "md5 of a file", "--repo", str(indexed_repo), "--json", "--lang", "go")
    assert code == 0
    assert [json.loads(x)["language"] for x in out.splitlines()] == ["go"]
    code, out, _ = run(capsys, "query", "anything path:http/", "--repo", str(indexed_repo), "--json")
    assert {json.loads(x)["path"] for x in out.splitlines()} == {"http/cookies.py"}


def test_stdin_batch(indexed_repo, capsys, monkeypatch):
    code, out, _ = run(capsys, "query", "--repo", str(indexed_repo), "-k", "2",
                       stdin="slugify a title\n\nmd5 digest lang:java\n", monkeypatch=monkeypatch)
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["query"] for x in lines] == ["slugify a title", "md5 digest lang:java"]
    assert lines[0]["results"][0]["name"] == "Slugify"
    assert [r["language"] for r in lines[1]["results"]] == ["java", "java"]


def test_modes_and_explain(indexed_repo, capsys):
    for mode in ("semantic", "lexical", "hybrid"):
        code, out, _ = run(capsys, "query", "cookie header", "--repo", str(indexed_repo), "--json",
                           "--mode", mode, "--explain", "-k", "1")
        assert code == 0
        hit = json.loads(out)
        assert hit["name"] == "parse_cookie_header"
        ex = hit["explain"]
        assert (ex["semantic_rank"] is not None) == (mode != "lexical")
        assert (ex["lexical_rank"] is not None) == (mode != "semantic")


def test_status(indexed_repo, capsys):
    code, out, _ = run(capsys, "status", "--repo", str(indexed_repo), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["units"] == 5 and info["languages"] == {"go": 1, "java": 2, "python": 2}
    assert info["roles"] == {"implementation": 5}
    assert info["model"] == json.loads((SHIPPED_MODEL / "manifest.json").read_text(encoding="utf-8"))["model_id"]


def test_base_model_alias_rebuilds_and_queries_with_the_index_model(tmp_path, capsys):
    root = tmp_path / "repo"
    for rel, text in REPO.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert run(capsys, "index", str(root), "--model", "base", "--json")[0] == 0
    code, out, _ = run(capsys, "status", "--repo", str(root), "--json")
    assert code == 0 and json.loads(out)["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # No --model: the query uses the model the index was built with, and finds the function.
    code, out, _ = run(capsys, "query", "md5 digest of a file", "--repo", str(root), "--json", "-k", "1")
    assert code == 0 and json.loads(out)["name"] == "md5OfFile"
    # Back to the default model: the next index run rebuilds, and says why.
    code, out, _ = run(capsys, "index", str(root), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["rebuild_reason"] and "model" in summary["rebuild_reason"]
    assert json.loads(run(capsys, "status", "--repo", str(root), "--json")[1])["model"] == \
        json.loads((SHIPPED_MODEL / "manifest.json").read_text(encoding="utf-8"))["model_id"]


@pytest.mark.parametrize("args,code,message", [
    (["query", "x", "--repo", "{empty}"], 1, "no index in"),
    (["index", "{missing}"], 2, "not a directory"),
    (["query", "x", "--repo", "{repo}", "--lang", "cobol"], 2, "unknown language"),
    (["query", "x", "--repo", "{repo}", "-k", "0"], 2, "-k"),
    (["query", "x", "--bogus"], 2, "No such option"),
    (["index", "{repo}", "--model", "{empty}"], 1, "no config.json"),
    (["query", "x", "--repo", "{repo}", "--model", "{empty}"], 1, "no config.json"),
])
def test_errors_are_one_line(indexed_repo, tmp_path, capsys, args, code, message):
    (tmp_path / "empty").mkdir()
    subs = {"{empty}": str(tmp_path / "empty"), "{missing}": str(tmp_path / "missing"), "{repo}": str(indexed_repo)}
    got, out, err = run(capsys, *[subs.get(a, a) for a in args])
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_end_to_end(indexed_repo):
    exe = Path(sys.executable).parent / "codesearch"
    env = dict(os.environ, NO_COLOR="1")
    res = subprocess.run([str(exe), "query", "exponential backoff", "--repo", str(indexed_repo), "-k", "1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "util/retry.py:5-12" in res.stdout and "call_with_backoff" in res.stdout
    res = subprocess.run([str(exe), "query", "x", "--repo", str(indexed_repo / "nope")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and res.stderr.strip() == f"codesearch: error: not a directory: {indexed_repo / 'nope'}"
