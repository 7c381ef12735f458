"""The query language: ``free text lang:go path:src/http/ kind:method role:test -role:generated "exact phrase"``.

This is the only module that parses query strings; everything else takes a :class:`Query`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from parsers.roles import ROLES
from parsers.symbol import KINDS

from .errors import UsageError

#: Accepted spellings of each language.
LANGUAGE_ALIASES = {
    "python": "python", "py": "python",
    "java": "java",
    "javascript": "javascript", "js": "javascript", "jsx": "javascript", "node": "javascript",
    "go": "go", "golang": "go",
    "php": "php",
    "ruby": "ruby", "rb": "ruby",
}
KIND_ALIASES = {k: k for k in KINDS} | {"func": "function", "fn": "function", "def": "function",
                                        "ctor": "constructor", "constructors": "constructor",
                                        "functions": "function", "methods": "method", "classes": "class"}
ROLE_ALIASES = {r: r for r in ROLES} | {"impl": "implementation", "code": "implementation", "src": "implementation",
                                        "tests": "test", "spec": "test", "specs": "test", "bench": "benchmark",
                                        "benchmarks": "benchmark", "examples": "example", "gen": "generated"}
FILTER_KEYS = ("lang", "path", "kind", "role", "-role", "repo")

#: Free text that asks for a role: "test for ...", "tests of ...", "unit tests that ...", "spec for ...",
#: "benchmark of ...", "example of ...", "how is X tested".
_ASKS_FOR = (
    ("test", re.compile(r"\b(?:tests?|specs?)\s+(?:for|of|that|which|covering|checking)\b"
                        r"|\bunit tests?\b|\b(?:is|are)(?:\s+\S+){1,4}\s+tested\b", re.I)),
    ("benchmark", re.compile(r"\bbenchmarks?\s+(?:for|of)\b", re.I)),
    ("example", re.compile(r"\b(?:examples?|usage)\s+(?:for|of)\b", re.I)),
)


def normalize_language(name: str) -> str:
    """Canonical language name for an alias, or UsageError."""
    lang = LANGUAGE_ALIASES.get(name.lower())
    if lang is None:
        raise UsageError(f"unknown language {name!r} (choose from {', '.join(sorted(set(LANGUAGE_ALIASES.values())))})")
    return lang


def normalize_role(name: str) -> str:
    """Canonical unit role for an alias, or UsageError."""
    role = ROLE_ALIASES.get(name.lower())
    if role is None:
        raise UsageError(f"unknown role {name!r} (choose from {', '.join(ROLES)})")
    return role


def asked_roles(text: str) -> tuple[str, ...]:
    """The roles free text asks for: ``("test",)`` for "test for parse cookie", () for most queries."""
    return tuple(role for role, pattern in _ASKS_FOR if pattern.search(text))


def normalize_kind(name: str) -> str:
    """Canonical unit kind for an alias, or UsageError."""
    kind = KIND_ALIASES.get(name.lower())
    if kind is None:
        raise UsageError(f"unknown kind {name!r} (choose from {', '.join(KINDS)})")
    return kind


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query.

    Attributes:
        text: The free text, whitespace-normalised.
        languages: ``lang:`` filters (any of them).
        paths: ``path:`` filters: prefixes, or globs when they contain ``* ? [`` (any of them).
        kinds: ``kind:`` filters (any of them).
        phrases: Quoted phrases that a result must contain (lexically), also used for ranking.
        roles: ``role:`` filters (any of them): only units of these roles.
        not_roles: ``-role:`` filters: no unit of these roles.
        repos: ``repo:`` filters (any of them): repository names in a multi-repository backend.
    """

    text: str
    languages: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    not_roles: tuple[str, ...] = ()
    repos: tuple[str, ...] = ()

    @property
    def ranking_text(self) -> str:
        """What the encoders see: the free text and the phrases."""
        return " ".join([self.text, *self.phrases]).strip()

    def __str__(self) -> str:
        parts = [self.text] if self.text else []
        parts += [f'"{p}"' for p in self.phrases]
        parts += [f"lang:{v}" for v in self.languages]
        parts += [f"path:{_quote(v)}" for v in self.paths]
        parts += [f"kind:{v}" for v in self.kinds]
        parts += [f"role:{v}" for v in self.roles]
        parts += [f"-role:{v}" for v in self.not_roles]
        parts += [f"repo:{_quote(v)}" for v in self.repos]
        return " ".join(parts)


def _quote(value: str) -> str:
    return shlex.quote(value) if any(c.isspace() or c in "\"'" for c in value) else value


def parse(raw: str) -> Query:
    """Parse a query string.

    Args:
        raw: e.g. ``'retry with backoff lang:go path:net/ -role:test "max retries"'``.

    Returns:
        The Query. ``key:value`` words with an unknown key stay in the text.

    Raises:
        UsageError: unknown language, kind or role, or an unbalanced quote.
    """
    words: list[str] = []
    phrases: list[str] = []
    langs: list[str] = []
    paths: list[str] = []
    kinds: list[str] = []
    roles: list[str] = []
    not_roles: list[str] = []
    repos: list[str] = []
    try:
        pieces = _split_keep_quotes(raw)
    except ValueError as exc:
        raise UsageError(f"bad query: {exc}") from None
    for piece, quoted in pieces:
        if quoted:
            phrase = " ".join(piece.split())
            if phrase:
                phrases.append(phrase)
            continue
        key, sep, value = piece.partition(":")
        if sep and key in FILTER_KEYS and value:
            if key == "lang":
                langs.append(normalize_language(value))
            elif key == "kind":
                kinds.append(normalize_kind(value))
            elif key == "role":
                roles.append(normalize_role(value))
            elif key == "-role":
                not_roles.append(normalize_role(value))
            elif key == "repo":
                repos.append(value)
            else:
                paths.append(value)
        else:
            words.append(piece)
    return Query(" ".join(words), tuple(dict.fromkeys(langs)), tuple(dict.fromkeys(paths)),
                 tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(phrases)), tuple(dict.fromkeys(roles)),
                 tuple(dict.fromkeys(not_roles)), tuple(dict.fromkeys(repos)))


def _split_keep_quotes(raw: str) -> list[tuple[str, bool]]:
    """Split on whitespace; ``"..."`` is one quoted piece; ``key:"a b"`` keeps its value whole."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(raw)
    while i < n:
        if raw[i].isspace():
            i += 1
            continue
        if raw[i] == '"':
            end = raw.find('"', i + 1)
            if end < 0:
                raise ValueError("unbalanced quote")
            out.append((raw[i + 1:end], True))
            i = end + 1
            continue
        j = i
        buf = []
        while j < n and not raw[j].isspace():
            if raw[j] in "'\"" and buf and ":" in "".join(buf):
                quote = raw[j]
                end = raw.find(quote, j + 1)
                if end < 0:
                    raise ValueError("unbalanced quote")
                buf.append(raw[j + 1:end])
                j = end + 1
                continue
            buf.append(raw[j])
            j += 1
        out.append(("".join(buf), False))
        i = j
    return out
