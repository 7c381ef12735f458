"""Records shared by the index, the searcher and the front ends."""

from __future__ import annotations

from dataclasses import dataclass

from parsers.symbol import Symbol

from .lexical import split_words

__all__ = ["Hit", "Symbol", "document_text"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result.

    Attributes:
        symbol: The unit found.
        score: The ranking score (cosine for semantic, bm25 for lexical, fused for hybrid).
        semantic_rank: 1-based rank on the semantic side, or None if it was not a candidate there.
        semantic_score: Cosine similarity, when known.
        lexical_rank: 1-based rank on the lexical side, or None.
        lexical_score: BM25 score (higher is better), when known.
        unit_id: The unit's id in the index generation it was found in (None for an unsaved buffer's
            unit); ids are never reused, so an id names this version of the unit.
        repo: The repository the unit belongs to, in a multi-repository backend (None for the local index).
    """

    symbol: Symbol
    score: float
    semantic_rank: int | None = None
    semantic_score: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None
    unit_id: int | None = None
    repo: str | None = None


def document_text(symbol: Symbol, fmt: str) -> str:
    """The text the encoder embeds for ``symbol``.

    Formats (chosen on the quality benchmark, see docs/benchmarks.md):
        ``code``: the definition's source only.
        ``header_code``: a header line ``<language> <kind> <name split into words>`` then the source.
        ``header_doc_code``: the header, the doc comment when it is not inside the source
            (everything but Python), then the source.

    Args:
        symbol: The unit.
        fmt: One of ``config.DOC_TEXT_FORMATS``.

    Returns:
        The text to encode.
    """
    if fmt == "code":
        return symbol.code
    header = f"{symbol.language} {symbol.kind} {split_words(symbol.qualified_name)}"
    if fmt == "header_code":
        return f"{header}\n{symbol.code}"
    if fmt == "header_doc_code":
        doc = symbol.docstring if symbol.docstring and symbol.docstring not in symbol.code else ""
        return f"{header}\n{doc}\n{symbol.code}" if doc else f"{header}\n{symbol.code}"
    raise ValueError(f"unknown document text format {fmt!r}")
