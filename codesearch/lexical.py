"""Code-aware tokens for the lexical (BM25) side: identifiers split into parts, the whole kept too."""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z0-9_]+")
# Parts of an identifier: acronyms before a capitalised word (HTTPServer -> HTTP, Server),
# capitalised or lower words, and digit runs.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_MAX_TOKEN = 64
#: English function words dropped from queries (not from documents): they match everything.
STOPWORDS = frozenset("""
a an the of to in on at by for from with without into onto over under and or nor but if then else
is are was were be been being it its this that these those there here as so than too very
i me my we our you your he she they them their his her what which who whom whose when where why how
do does did doing done can could should would may might must shall will all any each every some such
no only own same just also about against between through during before after above below up down out off
again further once more most other both few until while per via using use used given
""".split())


def split_identifier(word: str) -> list[str]:
    """Split one identifier into lower-case parts on camelCase, snake_case and digits.

    Args:
        word: An identifier such as ``parseHTTPHeader_v2``.

    Returns:
        Its parts in order, e.g. ``["parse", "http", "header", "v", "2"]``.
    """
    return [p.lower() for p in _PART.findall(word)]


def tokens(text: str) -> list[str]:
    """Tokens of ``text`` for indexing and querying.

    Each identifier-like word yields its parts, then the whole word (lower-cased) when it has
    more than one part, so both ``cookie`` and ``parse_cookie`` match.

    Args:
        text: Any text: code, a docstring or a query.

    Returns:
        The token list, in order, with repeats (term frequency matters to BM25).
    """
    out: list[str] = []
    for word in _WORD.findall(text):
        parts = split_identifier(word)
        out.extend(p for p in parts if len(p) <= _MAX_TOKEN)
        whole = word.lower().strip("_")
        if len(parts) > 1 and whole and len(whole) <= _MAX_TOKEN:
            out.append(whole)
    return out


def split_words(text: str) -> str:
    """Rewrite identifiers in ``text`` as space-separated lower-case words (for encoder headers)."""
    return " ".join(p for word in _WORD.findall(text) for p in split_identifier(word))


def query_tokens(text: str) -> list[str]:
    """Tokens of a query: as :func:`tokens`, without English stopwords (unless nothing else is left)."""
    toks = tokens(text)
    kept = [t for t in toks if t not in STOPWORDS]
    return kept or toks
