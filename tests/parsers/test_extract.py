"""Tests of parsers.extract: goldens per language, error handling, robustness, doc cleaners."""

from __future__ import annotations

import ast
import json
import os
import sysconfig
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
from parsers import ParseError, Symbol, extract, language_for_path, languages
from parsers.docstrings import (
    clean_hash_comment,
    clean_js_comments,
    clean_line_comment,
    clean_py_string,
    clean_slash_star,
    summary,
)
from parsers.registry import LANGUAGES, get_parser

LANGS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "langs"
REPOS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "repos"
GOLDEN_FIELDS = ("path", "kind", "name", "qualified_name", "start_line", "end_line", "signature", "summary",
                 "doc_start_line", "doc_end_line")
ALL_LANGS = ["go", "java", "javascript", "php", "python", "ruby"]


def _fixture_files(lang: str) -> list[Path]:
    return sorted(p for p in (LANGS_DIR / lang).iterdir() if p.name != "expected.json")


def _golden_rows(lang: str) -> list[dict[str, Any]]:
    rows = []
    for file in _fixture_files(lang):
        for sym in extract(file.read_bytes(), lang, file.name):
            rows.append({field: getattr(sym, field) for field in GOLDEN_FIELDS})
    return rows


# ------------------------------------------------------------------------------------------------ API


def test_languages() -> None:
    assert languages() == ALL_LANGS
    assert sorted(LANGUAGES) == ALL_LANGS


@pytest.mark.parametrize(
    ("path", "lang"),
    [
        ("a/b.py", "python"), ("X.java", "java"), ("m.js", "javascript"), ("m.mjs", "javascript"),
        ("m.cjs", "javascript"), ("App.JSX", "javascript"), ("main.go", "go"), ("index.php", "php"),
        ("lib/x.rb", "ruby"), ("win\\path\\y.py", "python"), ("types.pyi", None), ("README.md", None),
        ("Makefile", None), (".py", None), ("x.ts", None),
    ],
)
def test_language_for_path(path: str, lang: str | None) -> None:
    assert language_for_path(path) == lang


def test_public_reexports() -> None:
    assert parsers.Symbol is Symbol
    assert issubclass(ParseError, ValueError)
    assert set(parsers.__all__) >= {"extract", "languages", "language_for_path", "Symbol", "ParseError"}


@pytest.mark.parametrize("lang", ALL_LANGS)
def test_empty_file(lang: str) -> None:
    assert extract(b"", lang, "empty") == []


@pytest.mark.parametrize("lang", ALL_LANGS)
@pytest.mark.parametrize("data", [b"def f():\x00 pass\n", b"\x00\x01\x02", b"\xff\xfe\x00a"])
def test_nul_bytes_raise_parse_error(lang: str, data: bytes) -> None:
    with pytest.raises(ParseError, match="NUL"):
        extract(data, lang, "bin")


@pytest.mark.parametrize("lang", ALL_LANGS)
@pytest.mark.parametrize("data", [b"def f():\n    '\xe9'\n", b"\xc3\x28", b"ok \xed\xa0\x80 surrogate"])
def test_invalid_utf8_raises_parse_error(lang: str, data: bytes) -> None:
    with pytest.raises(ParseError, match="UTF-8"):
        extract(data, lang, "latin1")


def test_unknown_language() -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        extract(b"x", "cobol", "x.cbl")


def test_path_is_stored_as_given() -> None:
    (sym,) = extract(b"def f():\n    pass\n", "python", "./odd\\path.py")
    assert sym.path == "./odd\\path.py"
    assert sym.id == "./odd\\path.py:f:1"


# ------------------------------------------------------------------------------------------------ goldens


@pytest.mark.parametrize("lang", ALL_LANGS)
def test_fixture_dir_exists(lang: str) -> None:
    assert (LANGS_DIR / lang / "expected.json").is_file()
    assert _fixture_files(lang)


@pytest.mark.parametrize("lang", [lang for lang in ALL_LANGS if (LANGS_DIR / lang).is_dir()])
def test_golden(lang: str) -> None:
    """All symbols of tests/fixtures/langs/<lang>/ match expected.json (UPDATE_GOLDEN=1 rewrites it)."""
    rows = _golden_rows(lang)
    golden = LANGS_DIR / lang / "expected.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert rows == expected


@pytest.mark.parametrize("lang", [lang for lang in ALL_LANGS if (LANGS_DIR / lang).is_dir()])
def test_fixture_symbols_are_consistent(lang: str) -> None:
    for file in _fixture_files(lang):
        source = file.read_bytes()
        symbols = extract(source, lang, file.name)
        assert symbols, file
        _check_spans(source, symbols)
        assert [s.start_byte for s in symbols] == sorted(s.start_byte for s in symbols)
        assert len({s.id for s in symbols}) == len(symbols)
        for sym in symbols:
            assert sym.language == lang
            assert sym.kind in parsers.KINDS
            assert sym.name and sym.qualified_name.endswith(sym.name)
            assert sym.signature == " ".join(sym.signature.split())
            assert (sym.doc_start_line == 0) == (sym.docstring == "") == (sym.doc_end_line == 0)
            if sym.summary:
                assert sym.summary in " ".join(sym.docstring.split())


@pytest.mark.parametrize("lang", [lang for lang in ALL_LANGS if (LANGS_DIR / lang).is_dir()])
def test_syntax_error_file_still_yields_units(lang: str) -> None:
    broken = [p for p in _fixture_files(lang) if p.stem.lower().startswith("broken")]
    assert len(broken) == 1
    source = broken[0].read_bytes()
    assert get_parser(lang).parse(source).root_node.has_error
    names = {s.name for s in extract(source, lang, broken[0].name)}
    assert {"good_before", "method"} <= names


def _check_spans(source: bytes, symbols: list[Symbol]) -> None:
    lines = source.split(b"\n")
    for sym in symbols:
        assert 0 <= sym.start_byte <= sym.end_byte <= len(source)
        assert sym.code == source[sym.start_byte:sym.end_byte].decode("utf-8")
        assert 1 <= sym.start_line <= sym.end_line <= len(lines)
        assert sym.start_line == source.count(b"\n", 0, sym.start_byte) + 1
        assert sym.end_line == source.count(b"\n", 0, sym.end_byte) + 1
        assert 0 <= sym.doc_start_line <= sym.doc_end_line


@pytest.mark.parametrize(
    ("lang", "source", "expected"),
    [
        # String content that looks like a comment is not a doc.
        ("go", "package p\n\nvar s = `x\n// fake`\nfunc f() {}\n", ""),
        ("go", "package p\n\nvar s = `x\n// fake`\n// real\nfunc f() {}\n", "real"),
        ("ruby", 's = "x\n# fake"\ndef f; end\n', ""),
        ("ruby", 's = "x\n# fake"\n# real\n# two\ndef f; end\n', "real\ntwo"),
        # Magic comments end a run only in the file header.
        ("ruby", "# frozen_string_literal: true\n# Doc.\ndef f; end\n", "Doc."),
        ("ruby", "#!/usr/bin/env ruby\n# encoding: utf-8\ndef f; end\n", ""),
        ("ruby", "x = 1\n\n# Returns x.\n# Encoding: utf-8 is assumed.\ndef f; end\n",
         "Returns x.\nEncoding: utf-8 is assumed."),
        # A trailing comment on the line above belongs to that line's code.
        ("ruby", "x = 1 # trailing\ndef f; end\n", ""),
        ("go", "package p\n\nvar x = 1 // trailing\nfunc f() {}\n", ""),
        ("javascript", "let x = 1; // trailing\nfunction f() {}\n", ""),
        ("java", "class A {\n  int x; /** trailing */\n  void f() {}\n}\n", ""),
        # A doc block on the same line as the definition.
        ("javascript", "/** Same line. */ function f() {}\n", "Same line."),
        ("java", "class A {\n  /** Same line. */ void f() {}\n}\n", "Same line."),
        ("php", "<?php\n/** Same line. */ function f() {}\n", "Same line."),
        # Only `/**` blocks count for Java and PHP; `/**/` is empty.
        ("php", "<?php\n/**/\nfunction f() {}\n", ""),
        ("php", "<?php\n# hash\nfunction f() {}\n", ""),
        # Windows line ends.
        ("ruby", "# One\r\n# two\r\ndef f\r\nend\r\n", "One\ntwo"),
        ("java", "class A {\r\n  /**\r\n   * One.\r\n   */\r\n  void f() {}\r\n}\r\n", "One."),
        ("python", 'def f():\r\n    """One.\r\n\r\n    Two.\r\n    """\r\n', "One.\n\nTwo."),
        # Python: bytes are not docstrings, comments before the docstring are skipped.
        ("python", 'def f():\n    b"bytes"\n', ""),
        ("python", 'def f():\n    # c\n    "doc"\n', "doc"),
        ("python", "def f(): pass\n", ""),
        # Ruby: `private def`, JS: `export default`, look above the whole line.
        ("ruby", "class A\n  # Doc.\n  private def f = 1\nend\n", "Doc."),
        ("javascript", "// Doc.\nexport default function f() {}\n", "Doc."),
        ("javascript", "// Doc.\nexport const f = async () => 1;\n", "Doc."),
        # A UTF-8 byte order mark does not hide a doc comment on the first line.
        ("ruby", "\ufeff# Doc.\ndef f; end\n", "Doc."),
        ("java", "\ufeff/** Doc. */\nclass A { void f() {} }\n", ""),
        ("javascript", "\ufeff/** Doc. */\nfunction f() {}\n", "Doc."),
        ("python", '\ufeffdef f():\n    "Doc."\n', "Doc."),
    ],
)
def test_doc_edge_cases(lang: str, source: str, expected: str) -> None:
    data = source.encode()
    (sym,) = [s for s in extract(data, lang, "x") if s.name == "f"]
    assert sym.docstring == expected
    if expected and lang == "python":  # the docstring lies inside the definition
        assert sym.start_line < sym.doc_start_line <= sym.doc_end_line <= sym.end_line
    elif expected:  # the comments lie right above it (or end on its first line), without blank lines
        doc_lines = data.split(b"\n")[sym.doc_start_line - 1:sym.doc_end_line]
        assert doc_lines and all(line.strip() for line in doc_lines)
        assert sym.start_line - 1 <= sym.doc_end_line <= sym.start_line


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("module.exports = function parse(text) {};", [("function", "parse")]),
        ("module.exports = () => 1;", [("function", "exports")]),
        ("exports.load = function () {};", [("function", "load")]),
        ("Foo.prototype.bar = function () {};", [("method", "Foo.bar")]),
        ("this.handler = () => {};", [("function", "handler")]),
        ("const a = () => 1, b = function () {};", [("function", "a"), ("function", "b")]),
        ("const api = { get() {}, nested: { put: () => 1 } };", [("function", "api.get"),
                                                                ("function", "api.nested.put")]),
        ("call({ onDone() {} });", [("function", "onDone")]),
        ("const Box = class { open() {} };", [("class", "Box"), ("method", "Box.open")]),
        ("class A { static #p() {} get v() { return 1; } }", [("class", "A"), ("method", "A.#p"),
                                                              ("method", "A.v")]),
        ("function* gen() { yield 1; }", [("function", "gen")]),
        ("items.map(function helper(x) { return x; });", []),
    ],
)
def test_javascript_bindings(source: str, expected: list[tuple[str, str]]) -> None:
    symbols = extract(source.encode(), "javascript", "x.js")
    assert [(s.kind, s.qualified_name) for s in symbols] == expected


STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _ast_units(source: bytes) -> dict[tuple[str, int], tuple[int, str]]:
    """Oracle: (qualified name, def line) -> (end line, docstring) from Python's own ``ast``."""
    out: dict[tuple[str, int], tuple[int, str]] = {}
    stack: list[tuple[ast.AST, str]] = [(ast.parse(source), "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualified = f"{prefix}.{child.name}" if prefix else child.name
                out[(qualified, child.lineno)] = (child.end_lineno or 0, ast.get_docstring(child) or "")
                stack.append((child, qualified))
            else:
                stack.append((child, prefix))
    return out


@pytest.mark.parametrize(
    "module", ["argparse.py", "textwrap.py", "dataclasses.py", "json/decoder.py", "shlex.py", "_pyio.py",
               "contextlib.py", "optparse.py"],
)
def test_python_agrees_with_ast(module: str) -> None:
    """Every def/class of real stdlib modules: same qualified names, lines and docstrings as ``ast``."""
    path = STDLIB / module
    if not path.is_file():
        pytest.skip(f"{path} not installed")
    source = path.read_bytes()
    ours = {(s.qualified_name, s.start_line): s for s in extract(source, "python", module)}
    oracle = _ast_units(source)
    assert set(ours) == set(oracle)
    lines = source.split(b"\n")
    for key, (end_line, doc) in oracle.items():
        sym = ours[key]
        # tree-sitter keeps comments indented at body level inside the body; ast stops at the last statement
        assert sym.end_line >= end_line
        assert all(not ln.strip() or ln.strip().startswith(b"#") for ln in lines[end_line:sym.end_line])
        if "\\" not in sym.docstring:  # we keep escapes as written; ast decodes them
            assert sym.docstring == doc, key


# ------------------------------------------------------------------------------------------------ robustness


def _deep_sources() -> dict[str, bytes]:
    depth = 3000
    nest = 1000
    return {
        "python": b"x = " + b"(" * depth + b"1" + b")" * depth + b"\n\ndef after():\n    pass\n",
        "javascript": b"".join(b"function f%d() {\n" % i for i in range(nest)) + b"}\n" * nest,
        "java": b"class A { int f() { return " + b"(" * depth + b"1" + b")" * depth + b"; } }\n",
        "go": b"package p\nfunc f() int { return " + b"(" * depth + b"1" + b")" * depth + b" }\n",
        "php": b"<?php\nfunction f() { return " + b"(" * depth + b"1" + b")" * depth + b"; }\n",
        "ruby": b"".join(b"module M%d\n" % i for i in range(nest)) + b"def f; end\n" + b"end\n" * nest,
    }


@pytest.mark.parametrize("lang", ALL_LANGS)
def test_deep_nesting_does_not_crash(lang: str) -> None:
    source = _deep_sources()[lang]
    symbols = extract(source, lang, "deep")
    _check_spans(source, symbols)
    assert symbols
    if lang == "javascript":
        assert len(symbols) == 1000
        assert symbols[-1].qualified_name.count(".") == 999
    if lang == "ruby":
        assert symbols[-1].name == "f" and symbols[-1].kind == "method"


def test_threads_share_nothing_mutable() -> None:
    source = (LANGS_DIR / "python" / "cookies.py").read_bytes()
    expected = extract(source, "python", "cookies.py")
    results: list[list[Symbol]] = []

    def work() -> None:
        for _ in range(5):
            results.append(extract(source, "python", "cookies.py"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r == expected for r in results)


_CODE_ALPHABET = st.sampled_from(
    list("abcdefxyz_019 \t\n(){}[]<>:;,.=+-*/\\#@$&|!?'\"`")
    + ["def ", "class ", "function ", "func ", "fn ", "end", "module ", "return ", "/**", "*/", "//",
       '"""', "=>", "const ", "package p\n", "<?php ", "public ", "static ", "self.", "éü", "😀", "\r\n"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), lang=st.sampled_from(ALL_LANGS))
def test_random_bytes_raise_only_parse_error(data: bytes, lang: str) -> None:
    try:
        symbols = extract(data, lang, "random")
    except ParseError:
        return
    _check_spans(data, symbols)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(_CODE_ALPHABET, max_size=120), lang=st.sampled_from(ALL_LANGS))
def test_random_code_spans_are_consistent(parts: list[str], lang: str) -> None:
    source = "".join(parts).encode("utf-8")
    symbols = extract(source, lang, "random")
    _check_spans(source, symbols)
    assert [s.start_byte for s in symbols] == sorted(s.start_byte for s in symbols)
    for sym in symbols:
        assert sym.kind in parsers.KINDS
        assert sym.summary == summary(sym.docstring)


# ------------------------------------------------------------------------------------------------ docstrings


def test_clean_py_string() -> None:
    assert clean_py_string('"""Parse a header.\n\n    More.\n    """') == "Parse a header.\n\nMore."
    assert clean_py_string("r'''Raw \\d stays.'''") == "Raw \\d stays."
    assert clean_py_string("u'one line'") == "one line"
    assert clean_py_string("'a ' \"b\"") == "a b"
    assert clean_py_string('"""\n    Indented first line.\n      kept relative\n    """') == (
        "Indented first line.\n  kept relative"
    )
    assert clean_py_string('"say \\"hi\\""') == 'say \\"hi\\"'
    assert clean_py_string('"""a\r\n    b"""') == "a\nb"


def test_clean_slash_star() -> None:
    javadoc = """/**
     * Returns the sum.
     *
     * <pre>
     *   int x = add(1, 2);
     * </pre>
     * @param a first
     */"""
    assert clean_slash_star(javadoc) == "Returns the sum.\n\n<pre>\n  int x = add(1, 2);\n</pre>\n@param a first"
    assert clean_slash_star("/** One line. */") == "One line."
    assert clean_slash_star("/* plain block */") == "plain block"
    assert clean_slash_star("/**\n  no stars\n  here\n*/") == "no stars\nhere"
    assert clean_slash_star("/*****\n * Banner\n *****/") == "Banner"
    assert clean_slash_star("/***/") == ""


def test_clean_line_comment() -> None:
    assert clean_line_comment(["// Serve serves.", "//", "//   indented", "//go:noinline"]) == (
        "Serve serves.\n\n  indented"
    )
    assert clean_line_comment(["/// triple", "//no space"]) == "triple\nno space"


def test_clean_hash_comment() -> None:
    assert clean_hash_comment(["# frozen_string_literal: true", "# Parses x.", "#", "#   code"]) == (
        "Parses x.\n\n  code"
    )
    assert clean_hash_comment(["#!/usr/bin/env ruby", "# -*- coding: utf-8 -*-", "## Two"]) == "Two"
    assert clean_hash_comment(["# Text", "# encoding: kept below text"]) == "Text\nencoding: kept below text"


def test_clean_js_comments() -> None:
    assert clean_js_comments(["/** JSDoc. */", "// then a line", "// and another"]) == (
        "JSDoc.\nthen a line\nand another"
    )
    assert clean_js_comments(["// a", "/* b */"]) == "a\nb"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("", ""),
        ("One line.", "One line."),
        ("First line\ncontinues here.\n\nSecond paragraph.", "First line continues here."),
        ("Returns the sum.\n@param a first", "Returns the sum."),
        ("@return nothing", ""),
        ("\n\n  Leading blanks.\n", "Leading blanks."),
        ("Spaces   and\ttabs\n   collapse", "Spaces and tabs collapse"),
        ("Email me@example.com stays.", "Email me@example.com stays."),
        ("{@inheritDoc}", "{@inheritDoc}"),
        ("Text\n   \nafter whitespace-only line", "Text"),
        ("A hash table.\n<p>Second paragraph.", "A hash table."),
        ("<p>Leading paragraph tag\nstays.", "<p>Leading paragraph tag stays."),
        ("Ends here.\n<P>Upper case too.", "Ends here."),
    ],
)
def test_summary(doc: str, expected: str) -> None:
    assert summary(doc) == expected


# ------------------------------------------------------------------------------------------------ repos


@pytest.mark.parametrize("lang", [lang for lang in ALL_LANGS if (REPOS_DIR / f"mini_{lang}").is_dir()])
def test_mini_repo(lang: str) -> None:
    """Fixture repos parse, have documented functions, and their QUERIES.json targets exist."""
    repo = REPOS_DIR / f"mini_{lang}"
    by_target: dict[str, Symbol] = {}
    total = documented = 0
    files = [p for p in sorted(repo.rglob("*")) if p.is_file() and language_for_path(p.name) == lang]
    assert 3 <= len(files) <= 5
    for file in files:
        rel = file.relative_to(repo).as_posix()
        for sym in extract(file.read_bytes(), lang, rel):
            by_target[f"{rel}:{sym.qualified_name}"] = sym
            if sym.kind != "class":
                total += 1
                documented += bool(sym.summary)
    assert 15 <= total <= 35
    assert documented >= total * 0.8
    queries = json.loads((repo / "QUERIES.json").read_text(encoding="utf-8"))
    assert 10 <= len(queries) <= 30  # grown for the plain-language benchmark (bench/paraphrase.py)
    for q in queries:
        assert q["target"] in by_target, q
        sym = by_target[q["target"]]
        assert q["query"].lower() != sym.summary.lower()
