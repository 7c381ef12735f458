"""The six supported languages: extensions, grammar loaders, query files and doc styles.

Grammars, compiled queries and parsers are created lazily and reused: a ``Language`` and a ``Query``
per language for the process, a ``Parser`` per language per thread (parsers are not thread-safe).
"""

from __future__ import annotations

import importlib
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from tree_sitter import Language, Parser, Query

#: How a language writes documentation:
#: ``py_string``: the first string statement of the body (Python);
#: ``doc_block``: one ``/** ... */`` block right above the definition (Java, PHP);
#: ``js_comments``: the run of ``//``, ``/* */`` and ``/** */`` full-line comments right above (JavaScript);
#: ``line_comment``: the run of ``//`` full-line comments right above (Go);
#: ``hash_comment``: the run of ``#`` full-line comments right above (Ruby).
DocStyle = Literal["py_string", "doc_block", "js_comments", "line_comment", "hash_comment"]

QUERY_DIR = Path(__file__).with_name("queries")


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    """Everything the extractor needs to know about one language.

    Attributes:
        name: Registry name (``python``, ``java``, ...).
        extensions: File extensions, lower case with the dot (``.py``).
        grammar_module: Import name of the grammar wheel (``tree_sitter_python``).
        grammar_function: Function of that module returning the language pointer.
        doc_style: Where and how documentation is written; see :data:`DocStyle`.
        comment_types: Node types of comments in this grammar.
    """

    name: str
    extensions: tuple[str, ...]
    grammar_module: str
    grammar_function: str
    doc_style: DocStyle
    comment_types: frozenset[str]

    @property
    def query_path(self) -> Path:
        """The ``queries/<name>.scm`` file holding this language's definition query."""
        return QUERY_DIR / f"{self.name}.scm"


LANGUAGES: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec("go", (".go",), "tree_sitter_go", "language", "line_comment",
                     frozenset({"comment"})),
        LanguageSpec("java", (".java",), "tree_sitter_java", "language", "doc_block",
                     frozenset({"block_comment", "line_comment"})),
        LanguageSpec("javascript", (".js", ".mjs", ".cjs", ".jsx"), "tree_sitter_javascript", "language",
                     "js_comments", frozenset({"comment"})),
        LanguageSpec("php", (".php",), "tree_sitter_php", "language_php", "doc_block",
                     frozenset({"comment"})),
        LanguageSpec("python", (".py",), "tree_sitter_python", "language", "py_string",
                     frozenset({"comment"})),
        LanguageSpec("ruby", (".rb",), "tree_sitter_ruby", "language", "hash_comment",
                     frozenset({"comment"})),
    )
}

_BY_EXTENSION: dict[str, str] = {ext: spec.name for spec in LANGUAGES.values() for ext in spec.extensions}


def languages() -> list[str]:
    """Return the names of all supported languages, sorted.

    Returns:
        ``["go", "java", "javascript", "php", "python", "ruby"]``.
    """
    return sorted(LANGUAGES)


def language_for_path(path: str) -> str | None:
    """Return the language of a file judged by its extension (case-insensitive).

    Args:
        path: A file path, with forward or backward slashes.

    Returns:
        The registry name, or ``None`` when the extension is not one we parse.
    """
    _, ext = posixpath.splitext(path.replace("\\", "/"))
    return _BY_EXTENSION.get(ext.lower())


def get_spec(lang: str) -> LanguageSpec:
    """Return the spec of a language.

    Args:
        lang: A registry name.

    Returns:
        Its :class:`LanguageSpec`.

    Raises:
        ValueError: ``lang`` is not a supported language.
    """
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise ValueError(f"unsupported language {lang!r}; expected one of {languages()}") from None


@cache
def get_language(lang: str) -> Language:
    """Return the (cached) tree-sitter ``Language`` of a registry name."""
    spec = get_spec(lang)
    loader: Callable[[], object] = getattr(importlib.import_module(spec.grammar_module), spec.grammar_function)
    return Language(loader())


@cache
def get_query(lang: str) -> Query:
    """Return the (cached) compiled definition query of a language."""
    spec = get_spec(lang)
    return Query(get_language(lang), spec.query_path.read_text(encoding="utf-8"))


_local = threading.local()


def get_parser(lang: str) -> Parser:
    """Return this thread's parser for a language, creating it on first use."""
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(lang)
    if parser is None:
        parser = parsers[lang] = Parser(get_language(lang))
    return parser
