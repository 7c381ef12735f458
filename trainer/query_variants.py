"""Query variants: a docstring query without the words it shares with the function's identifiers.

A docstring sentence repeats its function's name ("Parse a cookie header" over ``parse_cookie_header``),
so docstring -> code pairs teach the encoder to match words it can read off the identifiers. People who
do not know the code type queries without those words ("read the key/value pairs a browser sends").
The variant of a pair's query keeps the sentence minus every word that matches a part of the function's
identifiers: its name, qualified name and the identifiers of its signature (parameters, types), split
into words the way the lexical side splits them (``codesearch.lexical.split_identifier``: camelCase,
snake_case, digits). A query word matches an identifier part when it is the part or a simple inflection
of it (``close`` ~ ``closes``/``closed``/``closing``, ``entry`` ~ ``entries``, ``items`` ~ ``item``). English
stopwords and parts under 3 characters are never dropped (a parameter ``to`` or ``a`` says nothing).

A pair has no variant when nothing is shared, or when fewer than :data:`MIN_CONTENT_WORDS` non-stopwords
would remain (the sentence was little more than the name). During training, ``TrainConfig.query_variants``
is the probability that a pair with a variant shows its variant instead of its docstring query at a step
(:func:`choose_queries`, a pure function of (seed, step) so a resumed run sees the same queries); the
other pairs keep their docstring queries, so docstring queries stay in the mix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from codesearch.lexical import STOPWORDS, split_identifier

from .data import Pair

__all__ = ["MIN_CONTENT_WORDS", "choose_queries", "identifier_parts", "pair_variant", "query_variant"]

#: Non-stopword words a variant must keep.
MIN_CONTENT_WORDS = 2
#: Identifier parts shorter than this are not matched (receivers, loop variables, ``to``, ``of``).
MIN_PART_CHARS = 3
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_EDGE = re.compile(r"^[^A-Za-z0-9_]+|[^A-Za-z0-9_]+$")


def identifier_parts(name: str, qualified_name: str = "", signature: str = "") -> frozenset[str]:
    """The lower-case words of a function's identifiers (name, qualified name, signature).

    Args:
        name: The bare name.
        qualified_name: The qualified name (``Class.method``, ``pkg.Type.Method``).
        signature: The declaration line(s): parameter and type names count too.

    Returns:
        The parts of at least :data:`MIN_PART_CHARS` characters, e.g. ``{"parse", "cookie", "header"}``.
    """
    parts: set[str] = set()
    for text in (name, qualified_name, signature):
        for ident in _IDENT.findall(text):
            parts.update(p for p in split_identifier(ident) if len(p) >= MIN_PART_CHARS)
    return frozenset(parts)


def _forms(part: str) -> set[str]:
    """A part and its simple English inflections (and the singular of a plural part)."""
    forms = {part, part + "s", part + "es", part + "ed", part + "d", part + "ing", part + "er", part + "ers"}
    if part.endswith("e"):
        forms |= {part + "r", part + "rs", part[:-1] + "ing", part[:-1] + "ion", part[:-1] + "ions"}
    if part.endswith("y"):
        forms |= {part[:-1] + "ies", part[:-1] + "ied"}
    if part.endswith("s") and len(part) > MIN_PART_CHARS:
        forms.add(part[:-1])
    if part.endswith("ies"):
        forms.add(part[:-3] + "y")
    return forms


def query_variant(query: str, parts: frozenset[str]) -> str | None:
    """The query without the words that match an identifier part, or None when there is no good variant.

    A whitespace-separated token is dropped when every identifier-like piece of it matches (so
    ``parseCookie`` and ``cookie's`` go when ``parse`` and ``cookie`` are parts); its punctuation goes with it.

    Args:
        query: The docstring query.
        parts: :func:`identifier_parts` of its function.

    Returns:
        The variant, or None when nothing matched or fewer than :data:`MIN_CONTENT_WORDS` non-stopwords remain.
    """
    shared: set[str] = set()
    for part in parts:
        shared |= _forms(part)
    kept: list[str] = []
    dropped = 0
    for token in query.split():
        core = _EDGE.sub("", token)
        pieces = [p for ident in _IDENT.findall(core) for p in split_identifier(ident)]
        lower = core.lower()
        if pieces and lower not in STOPWORDS and (lower in shared or all(p in shared for p in pieces)):
            dropped += 1
            continue
        kept.append(token)
    content = [t for t in kept if (w := _EDGE.sub("", t).lower()) and w not in STOPWORDS and len(w) > 1]
    if not dropped or len(content) < MIN_CONTENT_WORDS:
        return None
    return " ".join(kept)


def pair_variant(pair: Pair) -> str | None:
    """:func:`query_variant` of a pair's query against its own identifiers."""
    return query_variant(pair.query, identifier_parts(pair.name, pair.qualified_name, pair.signature))


def choose_queries(batch: Sequence[Pair], variants: Sequence[str | None], fraction: float, seed: int,
                   step: int) -> list[str]:
    """The query each pair of a step's batch shows: its variant with probability ``fraction``.

    Args:
        batch: The step's pairs.
        variants: Each pair's variant (None: it has none and keeps its query).
        fraction: Probability of the variant for a pair that has one (0: docstring queries only).
        seed: The run's seed.
        step: The step (the draws are a pure function of (seed, step)).

    Returns:
        One query per pair.
    """
    if fraction <= 0:
        return [p.query for p in batch]
    draws = np.random.default_rng([seed, 0x9E7A, step]).random(len(batch))
    return [v if v is not None and d < fraction else p.query
            for p, v, d in zip(batch, variants, draws, strict=True)]
