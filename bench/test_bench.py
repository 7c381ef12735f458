"""Tests of the benchmark helpers (run with ``pytest bench/test_bench.py``; not part of the default suite)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docstrip import blank_comment_docs, blank_python_docstrings, comment_only, line_count  # noqa: E402
from quality import first_sentence, plain_query, query_text  # noqa: E402
from speed import percentile  # noqa: E402

from parsers import extract  # noqa: E402

PY = b'''"""Module docstring stays."""


class Cache:
    """A cache.

    With details, and non-ASCII: \xc3\xa9t\xc3\xa9.
    """

    def get(self, key):
        """Return the value for key."""
        return self.data[key]

    def one_liner(self): "Doc on the def line."

    def odd(self):
        """Statement after the literal."""; return 1

    async def fetch(self, url):
        r"""Fetch *url*
        and return bytes."""  # trailing comment
        def inner():
            """Inner doc."""
            return 2
        return inner()
'''


def test_python_blanking_keeps_lines_and_parses() -> None:
    new, blanked = blank_python_docstrings(PY)
    assert line_count(new) == line_count(PY)
    tree = ast.parse(new)
    assert ast.get_docstring(tree) == "Module docstring stays."
    docs = {n.name: ast.get_docstring(n, clean=False) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    assert docs == {"Cache": "", "get": "", "one_liner": "", "odd": "Statement after the literal.",
                    "fetch": "", "inner": ""}
    old_lines, new_lines = PY.split(b"\n"), new.split(b"\n")
    # Code lines are untouched and keep their numbers.
    for i, line in enumerate(old_lines):
        if line.strip().startswith((b"def ", b"async def ", b"return", b"class ")) and b"\"" not in line:
            assert new_lines[i] == line
    assert blanked == {5, 11, 14, 20, 23}


def test_python_blanking_on_targets_keeps_units() -> None:
    new, _ = blank_python_docstrings(PY)
    before = {(s.qualified_name, s.start_line, s.end_line) for s in extract(PY, "python", "m.py")}
    after_syms = extract(new, "python", "m.py")
    assert {(s.qualified_name, s.start_line, s.end_line) for s in after_syms} == before
    assert {s.qualified_name: s.docstring for s in after_syms}["Cache.get"] == ""


@pytest.mark.parametrize("lines, ok", [
    ([b"// a", b"  // b"], True),
    ([b"/**", b" * Doc.", b" */"], True),
    ([b"/** Doc. */"], True),
    ([b"# ruby", b"# doc"], True),
    ([b"=begin", b"doc", b"=end"], True),
    ([b"/** Doc. */ int x;"], False),
    ([b"/**", b" * open"], False),
    ([b"int x; // trailing"], False),
])
def test_comment_only(lines: list[bytes], ok: bool) -> None:
    assert comment_only(lines) is ok


SOURCES = {
    "go": (b"package p\n\n// Add returns the sum of a and b.\n// It never fails.\nfunc Add(a, b int) int {\n"
           b"\treturn a + b\n}\n", "p.go"),
    "java": (b"class A {\n    /**\n     * Returns the size.\n     */\n    int size() {\n        return 1;\n"
             b"    }\n}\n", "A.java"),
    "javascript": (b"/**\n * Adds two numbers.\n * @param {number} a\n */\nfunction add(a, b) {\n"
                   b"  return a + b;\n}\n", "a.js"),
    "php": (b"<?php\nclass A {\n    /**\n     * Returns the name.\n     */\n    public function name() {\n"
            b"        return 'a';\n    }\n}\n", "a.php"),
    "ruby": (b"class A\n  # Returns the name.\n  # Twice.\n  def name\n    'a'\n  end\nend\n", "a.rb"),
}


@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_comment_blanking(lang: str) -> None:
    src, path = SOURCES[lang]
    syms = extract(src, lang, path)
    documented = [s for s in syms if s.docstring]
    assert documented, "fixture should have a documented unit"
    new, blanked = blank_comment_docs(src, syms)
    assert line_count(new) == line_count(src)
    assert {s.start_line for s in documented} <= blanked
    after = extract(new, lang, path)
    assert [(s.qualified_name, s.start_line, s.end_line) for s in after] == \
        [(s.qualified_name, s.start_line, s.end_line) for s in syms]
    assert all(not s.docstring for s in after)


def test_query_text_filters() -> None:
    assert query_text("Size returns the length of a digest. More text.", "Size") == \
        "Returns the length of a digest."
    assert query_text("{@inheritDoc}") is None
    assert query_text("Gets it.") is None  # fewer than 3 words
    assert query_text(":call-seq: a.b -> c") is None
    assert query_text("Returns {@code true} if the <b>set</b> is empty.") == "Returns true if the set is empty."
    assert query_text("Données très spéciales éàü ßø") is None


def test_first_sentence_and_plain_query() -> None:
    assert first_sentence("Parse it, e.g. a list. Then more.") == "Parse it, e.g. a list."
    assert first_sentence("No end") == "No end"
    assert plain_query('Find "x" with lang:go set') == "Find x with lang: go set"
    assert plain_query("Set the role:admin of a user") == "Set the role: admin of a user"


def test_role_prior_split_is_seeded_and_about_half() -> None:
    from tune_role_prior import split_of

    ids = [f"go-{i:04d}" for i in range(400)]
    first = [split_of(q, 0) for q in ids]
    assert first == [split_of(q, 0) for q in ids] and first != [split_of(q, 1) for q in ids]
    assert 170 < first.count("tuning") < 230


def test_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([1.0, 2.0], 0.95) == pytest.approx(1.95)


def test_paraphrase_model_dirs(tmp_path: Path) -> None:
    import paraphrase

    (tmp_path / "model.safetensors").write_bytes(b"")
    assert paraphrase.parse_model_dir(f"stage2={tmp_path}") == ("stage2", str(tmp_path.resolve()))
    for bad in (str(tmp_path), f"base={tmp_path}", f"x={tmp_path / 'missing'}", f"={tmp_path}"):
        with pytest.raises(SystemExit, match="bad --model-dir"):
            paraphrase.parse_model_dir(bad)
    paraphrase.MODEL_DIRS["stage2"] = str(tmp_path)
    try:
        assert paraphrase.model_arg("stage2") == str(tmp_path)  # what `codesearch index --model` gets
        assert paraphrase.model_arg("default") is None and paraphrase.model_arg("base") == "base"
    finally:
        paraphrase.MODEL_DIRS.clear()
